package policies

import (
	"context"
	"strings"
	"testing"
)

// TestGeneratedRegoResistsInjection: names and values from the YAML reach
// the generated Rego only as quoted literals or single-line comments.
func TestGeneratedRegoResistsInjection(t *testing.T) {
	src := `apiVersion: aegis.policy/v1
kind: PolicySet
metadata: {name: inj, tenant: t}
tools:
  - name: a.b
    http: {host: h.internal, method: POST, path: /x}
    params:
      p: {type: string, enum: ["\"} else := 1 {", "` + "`" + `"], pattern: "` + "`" + `\ninput.x"}
    approval:
      - when: {param: p, eq: "x\" ; y"}
        approvers: ["a\"b"]
`
	ps, errs := Load("evil\npackage pwned\n.yaml", []byte(src))
	if errs != nil {
		t.Fatal(errs)
	}
	c, err := Compile(context.Background(), ps, Options{SkipWasm: true})
	if err != nil {
		t.Fatalf("generated Rego does not compile: %v", err)
	}
	tools := string(fileData(t, c.Rego, ToolsRegoPath))
	for _, l := range strings.Split(tools, "\n") {
		if strings.HasPrefix(l, "package") && l != "package aegis" {
			t.Fatalf("injected line %q", l)
		}
	}
	if !strings.Contains(tools, "# from evil?package pwned?.yaml:") {
		t.Errorf("file name not neutralised in comments:\n%s", tools)
	}
}
