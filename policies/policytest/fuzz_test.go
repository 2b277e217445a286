package policytest

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: any bytes either load into a table or give located errors;
// never a panic, and never both a table and errors.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"payments_test.yaml", "mcp-devops_test.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "examples", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: aegis.policy/v1\nkind: PolicyTest\npolicy: p\ncases: [{name: a, agent: b, request: {method: GET, url: 'https://h/'}, expect: {action: allow}}]\n"))
	f.Add([]byte("cases: [&a {}, *a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, errs := Load("f.yaml", data)
		if (file == nil) == (len(errs) == 0) {
			t.Fatalf("file=%v errs=%v: want exactly one", file != nil, errs)
		}
		for _, e := range errs {
			if e.Line < 1 || e.Col < 1 || e.File != "f.yaml" {
				t.Fatalf("unlocated error: %+v", e)
			}
		}
	})
}
