// Host-side check: it runs the go tool. Run under GOOS=wasip1 the
// package's own tests already prove it builds and works there.

//go:build !wasm

package dlp

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWasmDependencies keeps dlp fit for the wasip1 filter: it must build
// there and depend on the standard library only (and internal/errs, which
// is fmt.Errorf), without the network stack and without importing os or
// syscall itself.
func TestWasmDependencies(t *testing.T) {
	const pkg = "github.com/aegis-mesh/aegis/dlp"
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
		case path == "net" || strings.HasPrefix(path, "net/"):
			t.Errorf("depends on %s", path)
		case !std && path != pkg && path != "github.com/aegis-mesh/aegis/internal/errs":
			t.Errorf("depends on non-standard package %s", path)
		case path == pkg:
			for _, imp := range strings.Split(imports, ",") {
				if imp == "os" || imp == "syscall" || strings.HasPrefix(imp, "os/") {
					t.Errorf("imports %s directly", imp)
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
