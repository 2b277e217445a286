// Host-side check: it runs the go tool. Run under GOOS=wasip1 the
// package's own tests already prove it builds and works there.

//go:build !wasm

package input

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWasmDependencies keeps input fit for the wasip1 filter: it must build
// there, depend on the standard library, engine (and what engine links,
// dlp) and its own internal packages only, never link the network stack,
// and no package of ours may import os or syscall directly (the standard
// library reaches them below fmt and time, which is fine on wasip1).
func TestWasmDependencies(t *testing.T) {
	const pkg = "github.com/aegis-mesh/aegis/input"
	env := []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}|{{.Standard}}|{{join .Imports \",\"}}", pkg)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.SplitN(line, "|", 3)
		if len(parts) != 3 {
			t.Fatalf("unexpected go list line %q", line)
		}
		path, std, imports := parts[0], parts[1] == "true", parts[2]
		switch {
		case path == "net" || path == "os/exec" || path == "crypto/x509":
			// The network stack (and what reaches the OS beyond wasip1's
			// few calls) must never be linked into the filter.
			t.Errorf("depends on %s", path)
		case !std && !ours(path):
			t.Errorf("depends on %s (only std, engine, dlp, internal/jsonx, internal/errs and input/... allowed)", path)
		case !std:
			for _, imp := range strings.Split(imports, ",") {
				if imp == "os" || imp == "syscall" || strings.HasPrefix(imp, "os/") {
					t.Errorf("%s imports %s directly", path, imp)
				}
				// input itself parses URLs by hand; pure helpers such as
				// net/url or net/netip used by engine builtins are that
				// package's business.
				if isInput(path) && strings.HasPrefix(imp, "net") {
					t.Errorf("%s imports %s", path, imp)
				}
			}
		}
	}
	build := exec.Command("go", "build", "-o", "/dev/null", pkg)
	build.Env = append(build.Environ(), env...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=wasip1 build: %v\n%s", err, out)
	}
}

const module = "github.com/aegis-mesh/aegis/"

func ours(path string) bool {
	// internal/jsonx is engine's JSON reader since it dropped encoding/json;
	// internal/errs is fmt.Errorf, not inlined (module size).
	return path == module+"engine" || path == module+"dlp" || path == module+"internal/jsonx" || path == module+"internal/errs" || isInput(path)
}

func isInput(path string) bool {
	return path == module+"input" || strings.HasPrefix(path, module+"input/")
}
