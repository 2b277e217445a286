// Host-side check: it runs the go tool. Run under GOOS=wasip1 the
// package's own tests already prove it builds and works there.

//go:build !wasm

package engine

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const modulePath = "github.com/aegis-mesh/aegis"

func goTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	return p
}

// TestDependencies keeps the engine linkable into the wasip1 filter: every
// package it depends on is in the standard library or in this module, and
// no package of this module that the engine links imports net, os, os/exec
// or syscall. (Standard packages such as fmt and time import os and
// syscall themselves; that is the toolchain's business, not ours.)
func TestDependencies(t *testing.T) {
	for _, goos := range []string{"", "wasip1"} {
		t.Run("GOOS="+goos, func(t *testing.T) {
			cmd := exec.Command(goTool(t), "list", "-deps", "-f", "{{.ImportPath}}|{{.Standard}}|{{join .Imports \",\"}}", ".")
			cmd.Env = os.Environ()
			if goos != "" {
				cmd.Env = append(cmd.Env, "GOOS="+goos, "GOARCH=wasm")
			}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			forbidden := map[string]bool{"net": true, "os": true, "os/exec": true, "syscall": true}
			n := 0
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				parts := strings.SplitN(sc.Text(), "|", 3)
				if len(parts) != 3 {
					t.Fatalf("unexpected go list line %q", sc.Text())
				}
				pkg, std, imports := parts[0], parts[1] == "true", parts[2]
				n++
				if pkg == "encoding/json" {
					// With the reflection data it keeps alive, about 700 kB
					// of the filter module (issue 3).
					t.Errorf("engine links encoding/json")
				}
				ours := pkg == modulePath || strings.HasPrefix(pkg, modulePath+"/")
				if !std && !ours {
					t.Errorf("engine depends on %s, which is neither standard nor in %s", pkg, modulePath)
				}
				if !ours {
					continue
				}
				for _, imp := range strings.Split(imports, ",") {
					if forbidden[imp] {
						t.Errorf("%s imports %s", pkg, imp)
					}
				}
			}
			if n < 10 {
				t.Fatalf("go list returned only %d packages; the check would prove nothing", n)
			}
		})
	}
}

// TestCrossBuildWasip1 builds the engine for the filter's target.
func TestCrossBuildWasip1(t *testing.T) {
	cmd := exec.Command(goTool(t), "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=wasip1 GOARCH=wasm go build: %v\n%s", err, out)
	}
}
