package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExamplesLoad(t *testing.T) {
	for _, name := range []string{"payments.yaml", "mcp-devops.yaml"} {
		t.Run(name, func(t *testing.T) {
			ps, errs := LoadPath(filepath.Join("examples", name))
			if errs != nil {
				t.Fatalf("load: %v", errs)
			}
			if ps.Metadata.Tenant == "" || len(ps.Tools) == 0 || len(ps.Agents) == 0 {
				t.Fatalf("model incomplete: %+v", ps)
			}
		})
	}
}

func TestLoadPathDirectory(t *testing.T) {
	write := func(t *testing.T, dir, name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policy := header + "tools: [{name: a, http: {host: h, method: GET, path: /}}]\n"
	t.Run("one policy and a test table", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "p.yaml", policy)
		write(t, dir, "p_test.yaml", "kind: PolicyTest\n")
		ps, errs := LoadPath(dir)
		if errs != nil {
			t.Fatal(errs)
		}
		if ps.File != filepath.Join(dir, "p.yaml") || len(ps.Tools) != 1 {
			t.Fatalf("loaded %s with %d tools", ps.File, len(ps.Tools))
		}
	})
	t.Run("two policies", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "a.yaml", policy)
		write(t, dir, "b.json", "{}")
		_, errs := LoadPath(dir)
		if len(errs) != 1 || errs[0].Code != CodeIO || !strings.Contains(errs[0].Message, "found 2") {
			t.Fatalf("errs = %v", errs)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, errs := LoadPath(filepath.Join(t.TempDir(), "nope.yaml"))
		if len(errs) != 1 || errs[0].Code != CodeIO {
			t.Fatalf("errs = %v", errs)
		}
	})
}

func TestValidateAfterEdit(t *testing.T) {
	ps, errs := LoadPath(filepath.Join("examples", "payments.yaml"))
	if errs != nil {
		t.Fatal(errs)
	}
	ps.Agents[1].MayDelegateTo = append(ps.Agents[1].MayDelegateTo, Ref{Name: "ghost", Src: Source{Line: 1, Col: 1, Path: "agents[1].may_delegate_to[1]"}})
	errs = Validate(ps)
	if len(errs) != 1 || errs[0].Code != CodeReference {
		t.Fatalf("errs = %v", errs)
	}
}
