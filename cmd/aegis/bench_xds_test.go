package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchXDS(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "publish.prof")
	code, out, errOut := benchCLI(t, "bench", "xds", "--nodes", "8", "--bundle-bytes", "2048", "--json", "--cpuprofile", prof)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line is not one JSON object: %v\n%s", err, out)
	}
	if got["nodes"] != 8.0 || got["acked"] != 8.0 || got["mode"] != "mixed" || got["store"] != "sqlite" {
		t.Errorf("JSON %v", got)
	}
	for _, k := range []string{"p50_ms", "p99_ms", "max_ms", "cores", "go"} {
		if _, ok := got[k]; !ok {
			t.Errorf("%s missing from %v", k, got)
		}
	}
	if !strings.Contains(out, "p99 ms") {
		t.Errorf("table missing:\n%s", out)
	}
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Errorf("profile: %v", err)
	}
}

func TestBenchXDSUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, exitOK, "Usage: aegis bench xds"},
		{"no nodes", []string{"--nodes", "0"}, exitUsage, "nodes: 0"},
		{"bad mode", []string{"--mode", "rest"}, exitUsage, "mode:"},
		{"bad store", []string{"--store", "postgres"}, exitUsage, "store:"},
		{"unknown flag", []string{"--bogus"}, exitUsage, "bogus"},
		{"positional", []string{"extra"}, exitUsage, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := benchCLI(t, append([]string{"bench", "xds"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d, want %d with %q\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}
