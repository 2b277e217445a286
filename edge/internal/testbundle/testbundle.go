// Package testbundle compiles the reference policies into signed runtime
// bundles for edge tests, with the same compiler the CLI uses.
package testbundle

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/aegis-mesh/aegis/policies"
)

var (
	mu       sync.Mutex
	compiled = map[string]*policies.Compiled{}
)

// Example returns the path of a policy in policies/examples.
func Example(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "policies", "examples", name)
}

// Build compiles the policy at path (once per process) and returns its
// runtime bundle, signed by key, valid from an hour ago for validFor.
func Build(path string, revision int64, key ed25519.PrivateKey, validFor time.Duration) ([]byte, error) {
	mu.Lock()
	c, ok := compiled[path]
	mu.Unlock()
	if !ok {
		ps, errs := policies.LoadPath(path)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: %v", path, errs)
		}
		var err error
		c, err = policies.Compile(context.Background(), ps, policies.Options{SkipWasm: true})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		mu.Lock()
		compiled[path] = c
		mu.Unlock()
	}
	created := time.Now().Add(-time.Hour).Truncate(time.Second)
	_, rt, err := policies.BuildBundles(c, policies.BundleOptions{Revision: revision, CreatedAt: created, ExpiresAt: created.Add(time.Hour + validFor), SignKey: key})
	return rt, err
}
