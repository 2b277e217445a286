package policies

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/version"

	"github.com/aegis-mesh/aegis/bundle"
)

// EngineVersion names what evaluates a runtime bundle: OPA IR plans as
// produced by this OPA release's planner.
func EngineVersion() string { return "opa-ir-plan/" + version.Version }

// BundleOptions control BuildBundles.
type BundleOptions struct {
	Revision  int64     // monotonic per tenant, >= 1
	CreatedAt time.Time // fixed for reproducible bytes
	ExpiresAt time.Time // after CreatedAt
	// SignKey, when set, signs both manifests (pure Ed25519).
	SignKey ed25519.PrivateKey
}

// Validate checks the options before any work, listing what is wrong.
func (o BundleOptions) Validate() error {
	var errs []error
	if o.Revision < 1 {
		errs = append(errs, fmt.Errorf("revision %d: want >= 1", o.Revision))
	}
	if o.CreatedAt.IsZero() {
		errs = append(errs, errors.New("created_at is not set"))
	}
	if !o.ExpiresAt.After(o.CreatedAt) {
		errs = append(errs, errors.New("expires_at must be after created_at"))
	}
	if o.SignKey != nil && len(o.SignKey) != ed25519.PrivateKeySize {
		errs = append(errs, fmt.Errorf("signing key has %d bytes, want %d", len(o.SignKey), ed25519.PrivateKeySize))
	}
	return errors.Join(errs...)
}

// BuildBundles runs the bundle stage. archive holds everything the compiler
// produced (Rego sources, plan.json, policy.wasm when built, data.json), for
// audit and OPA tooling; runtime holds what nodes load (plan.json and
// data.json). Both manifests carry the tenant, revision, builtins,
// entrypoints and the policy facts the data plane needs before evaluating
// (MCP endpoints, max_body_bytes). The same inputs give the same bytes.
func BuildBundles(c *Compiled, opts BundleOptions) (archive, runtime []byte, err error) {
	if c == nil {
		return nil, nil, errors.New("build bundles: nil compiled policy")
	}
	if err := opts.Validate(); err != nil {
		return nil, nil, fmt.Errorf("build bundles: %w", err)
	}
	endpoints := make([]any, 0, len(c.MCPEndpoints))
	for _, e := range c.MCPEndpoints {
		endpoints = append(endpoints, map[string]any{"server": e.Server, "host": e.Host, "path": e.Path})
	}
	manifest := func(kind string) bundle.Manifest {
		return bundle.Manifest{
			Kind:          kind,
			Tenant:        c.Tenant,
			Name:          c.Name,
			Revision:      opts.Revision,
			CreatedAt:     opts.CreatedAt,
			ExpiresAt:     opts.ExpiresAt,
			EngineVersion: EngineVersion(),
			Builtins:      append([]string(nil), c.Builtins...),
			Entrypoints:   append([]string(nil), c.Entrypoints...),
			Policy: map[string]any{
				"mcp_endpoints":  endpoints,
				"max_body_bytes": c.MaxBodyBytes,
			},
		}
	}
	runtimeFiles := []bundle.File{{Path: PlanPath, Data: c.Plan}, {Path: DataPath, Data: c.Data}}
	archiveFiles := append(append([]bundle.File(nil), runtimeFiles...), c.Rego...)
	if len(c.Wasm) > 0 {
		archiveFiles = append(archiveFiles, bundle.File{Path: WasmPath, Data: c.Wasm})
	}
	bo := bundle.BuildOptions{SigningKey: opts.SignKey}
	if archive, err = bundle.Build(manifest(bundle.KindArchive), archiveFiles, bo); err != nil {
		return nil, nil, fmt.Errorf("build archive bundle: %w", err)
	}
	if runtime, err = bundle.Build(manifest(bundle.KindRuntime), runtimeFiles, bo); err != nil {
		return nil, nil, fmt.Errorf("build runtime bundle: %w", err)
	}
	return archive, runtime, nil
}
