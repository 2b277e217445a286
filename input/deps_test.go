package input

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWasmDependencies keeps input fit for the wasip1 filter: it must build
// there and depend on the standard library, engine and its own internal
// packages only, without the network stack, and no package of ours may
// import os or syscall directly (the standard library reaches them below
// fmt and time, which is fine on wasip1).
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
		case path == "net" || strings.HasPrefix(path, "net/"):
			t.Errorf("depends on %s", path)
		case !std && !ours(path):
			t.Errorf("depends on %s (only std, engine and input/... allowed)", path)
		case !std:
			for _, imp := range strings.Split(imports, ",") {
				if imp == "os" || imp == "syscall" || strings.HasPrefix(imp, "os/") {
					t.Errorf("%s imports %s directly", path, imp)
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

func ours(path string) bool {
	const module = "github.com/aegis-mesh/aegis/"
	return path == module+"engine" || path == module+"input" || strings.HasPrefix(path, module+"input/")
}
