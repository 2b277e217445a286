package wasmhost_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Modules built once per test binary.
var (
	conformanceWasm []byte // testdata/filters/conformance
	initcallWasm    []byte // testdata/filters/initcall
	aegisWasm       []byte // ../../build/aegis-filter.wasm
)

// aegisWasmPath is where `make filter` writes the Aegis filter.
const aegisWasmPath = "../../build/aegis-filter.wasm"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmhost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "conformance.wasm")
		if err := buildWasm("./testdata/filters/conformance", out); err != nil {
			fmt.Fprintln(os.Stderr, "building the conformance filter:", err)
			return 1
		}
		if conformanceWasm, err = os.ReadFile(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out = filepath.Join(dir, "initcall.wasm")
		if err := buildWasm("./testdata/filters/initcall", out); err != nil {
			fmt.Fprintln(os.Stderr, "building the initcall filter:", err)
			return 1
		}
		if initcallWasm, err = os.ReadFile(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := ensureAegisFilter(); err != nil {
			fmt.Fprintln(os.Stderr, "building the Aegis filter:", err)
			return 1
		}
		if aegisWasm, err = os.ReadFile(aegisWasmPath); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func buildWasm(pkg, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v\n%s", err, b)
	}
	return nil
}

// ensureAegisFilter builds the filter module when it is missing or older
// than a Go file of a package it links (or go.mod), the same rule the
// filter's own tests apply, so these tests never run a stale build.
func ensureAegisFilter() error {
	if info, err := os.Stat(aegisWasmPath); err == nil {
		stale, err := staleSince(info.ModTime())
		if err != nil || !stale {
			return err
		}
	}
	// `make filter` is the one recipe for the shipped module (Go, then
	// wasm-opt), and the filter's size test reads the same file.
	cmd := exec.Command("make", "-C", "../..", "filter")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make filter: %v\n%s", err, out)
	}
	return nil
}

func staleSince(t time.Time) (bool, error) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "../../filter")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.Output()
	if err != nil {
		return false, fmt.Errorf("go list: %w", err)
	}
	paths := []string{"../../go.mod", "../../go.sum"}
	for _, dir := range strings.Fields(string(out)) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		paths = append(paths, files...)
	}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(t) {
			return true, nil
		}
	}
	return false, nil
}
