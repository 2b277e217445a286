package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: Load must never panic, and must return either a policy set or
// errors, each with a location inside the input.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"payments.yaml", "mcp-devops.yaml", "payments_test.yaml"} {
		data, err := os.ReadFile(filepath.Join("examples", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(header + "agents: [{id: a, tools: ['*']}]\ntools: [{name: x, http: {host: h, method: GET, path: /}}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte(header + "rego: [{name: r, source: \"package aegis.custom.r\\ndeny contains 1 if true\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, errs := Load("f.yaml", data)
		if (ps == nil) == (len(errs) == 0) {
			t.Fatalf("Load returned policy set %v with %d errors", ps != nil, len(errs))
		}
		if len(errs) > MaxErrors+1 {
			t.Fatalf("%d errors, cap is %d", len(errs), MaxErrors+1)
		}
		// YAML breaks lines at \n, \r\n and a lone \r.
		lines := strings.Count(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") + strings.Count(string(data), "\r") + 2
		for _, e := range errs {
			if e.Line < 1 || e.Col < 1 || e.Line > lines {
				t.Fatalf("error outside the input (%d lines): %v", lines, e)
			}
			if e.File != "f.yaml" || e.Code == "" || e.Message == "" {
				t.Fatalf("incomplete error: %#v", e)
			}
		}
	})
}
