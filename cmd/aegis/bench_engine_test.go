package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func benchCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

func TestBenchEngine(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join("..", "..", "policies", "examples", "payments.yaml")
	code, out, errOut := benchCLI(t, "bench", "engine", "--policy", policy, "--runs", "1", "--requests", "100", "--warmup", "5",
		"--inputs", "100", "--json", "--plot", "--out", dir)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line is not one JSON object: %v\n%s", err, out)
	}
	if got["scenario"] != "engine" || got["disagreements"].(float64) != 0 {
		t.Errorf("JSON %v", got)
	}
	for _, k := range []string{"aegis", "opa", "opa_wasm"} {
		if _, ok := got[k].(map[string]any)["p99_us"].(float64); !ok {
			t.Errorf("%s.p99_us missing", k)
		}
	}
	if !strings.Contains(out, "p99_ratio_vs_opa") || !strings.Contains(out, "series") {
		t.Errorf("table missing:\n%s", out)
	}
	for _, ext := range []string{"*.json", "*.png"} {
		m, _ := filepath.Glob(filepath.Join(dir, "engine-"+ext))
		if len(m) != 1 {
			t.Errorf("results %s: %v", ext, m)
			continue
		}
		if fi, err := os.Stat(m[0]); err != nil || fi.Size() == 0 {
			t.Errorf("result %s empty: %v", m[0], err)
		}
	}
}

func TestBenchEngineUsage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, exitOK, "OPA's wasm"},
		{"zero runs", []string{"--runs", "0"}, exitUsage, "run count"},
		{"bad scaling", []string{"--scaling", "10,x"}, exitUsage, "--scaling"},
		{"extra argument", []string{"payments"}, exitUsage, "unexpected argument"},
		{"unknown flag", []string{"--nope"}, exitUsage, "nope"},
		{"plot without out", []string{"--policy", "../../policies/examples/payments.yaml", "--runs", "1", "--requests", "1", "--warmup", "0", "--inputs", "1", "--plot", "--out", ""}, exitUsage, "--plot needs --out"},
		{"missing policy", []string{"--policy", "does/not/exist.yaml"}, exitFailure, "exist.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := benchCLI(t, append([]string{"bench", "engine"}, c.args...)...)
			if code != c.code || !strings.Contains(out+errOut, c.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, c.code, c.want, out, errOut)
			}
		})
	}
}

func TestBenchFilterAndEdgeUsage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"filter help", []string{"filter", "--help"}, exitOK, "proxy-wasm"},
		{"filter size", []string{"filter", "--size", "0"}, exitUsage, "policy size"},
		{"filter scaling", []string{"filter", "--scaling", "0"}, exitUsage, "--scaling"},
		{"filter missing module", []string{"filter", "--wasm", "does/not/exist.wasm", "--runs", "1"}, exitFailure, "make filter"},
		{"filter extra", []string{"filter", "x"}, exitUsage, "unexpected argument"},
		{"edge help", []string{"edge", "--help"}, exitOK, "ext_authz"},
		{"edge concurrency", []string{"edge", "--concurrency", "0"}, exitUsage, "concurrency"},
		{"edge missing module", []string{"edge", "--wasm", "does/not/exist.wasm"}, exitFailure, "make filter"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := benchCLI(t, append([]string{"bench"}, c.args...)...)
			if code != c.code || !strings.Contains(out+errOut, c.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, c.code, c.want, out, errOut)
			}
		})
	}
}

// TestBenchFilter runs the filter scenario end to end on the built module
// (make filter builds it first; a missing module fails, never skips).
func TestBenchFilter(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := benchCLI(t, "bench", "filter", "--wasm", filepath.Join("..", "..", "build", "aegis-filter.wasm"),
		"--size", "2", "--runs", "1", "--requests", "20", "--warmup", "2", "--json", "--out", dir)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line is not JSON: %v", err)
	}
	for _, p := range []string{"allow", "deny", "sanitize"} {
		if _, ok := got[p].(map[string]any)["p999_us"].(float64); !ok {
			t.Errorf("%s.p999_us missing: %v", p, got[p])
		}
	}
}
