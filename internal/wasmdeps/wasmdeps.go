// Package wasmdeps is test support for packages linked into the wasip1
// filter: Check proves a package builds for wasip1 and keeps away from the
// network stack, crypto/x509, os/exec and modules outside the standard
// library. The standard library pulls os and syscall in below fmt and time,
// so those are checked one level up: no package of ours may import them
// directly.
package wasmdeps

import (
	"os/exec"
	"strings"
	"testing"
)

var env = []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"}

// List returns `go list -deps -f format pkg` for wasip1, one line per
// package the format leaves non-empty. It runs the go tool; call it from
// host-side tests only.
func List(t testing.TB, pkg, format string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", format, pkg)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	var lines []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// Check runs the go tool; call it from host-side tests only.
func Check(t testing.TB, pkg string) {
	t.Helper()
	const module = "github.com/aegis-mesh/aegis/"
	for _, line := range List(t, pkg, "{{.ImportPath}}|{{.Standard}}|{{join .Imports \",\"}}") {
		parts := strings.SplitN(line, "|", 3)
		if len(parts) != 3 {
			t.Fatalf("unexpected go list line %q", line)
		}
		path, std, imports := parts[0], parts[1] == "true", parts[2]
		switch {
		case path == "net" || strings.HasPrefix(path, "net/") || path == "crypto/x509" || path == "os/exec":
			t.Errorf("%s depends on %s", pkg, path)
		case !std && !strings.HasPrefix(path, module):
			t.Errorf("%s depends on non-standard package %s", pkg, path)
		case strings.HasPrefix(path, module):
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
		t.Fatalf("GOOS=wasip1 build of %s: %v\n%s", pkg, err, out)
	}
}
