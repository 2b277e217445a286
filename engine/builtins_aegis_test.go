package engine

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"
)

// dlpCapabilities declares aegis.dlp.redact to OPA's compiler, as policies/
// does for real bundles.
func dlpCapabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = append(caps.Builtins, &ast.Builtin{
		Name: "aegis.dlp.redact",
		Decl: types.NewFunction(
			types.Args(types.S, types.NewArray(nil, types.A)),
			types.NewObject(nil, types.NewDynamicProperty(types.S, types.A)),
		),
	})
	return caps
}

func TestDLPRedact(t *testing.T) {
	plan, err := planModulesWithCaps(dlpCapabilities(), map[string]string{"x.rego": `package x
detectors := [{"name": "card", "builtin": "card_number"}, {"name": "email", "pattern": "[a-z]+@[a-z]+\\.com"}]
p := aegis.dlp.redact(input.text, detectors)
d := aegis.dlp.redact(input.text, data.detectors)
bad := aegis.dlp.redact(input.text, [{"name": "x", "pattern": "("}])
`}, "x/p", "x/d", "x/bad")
	if err != nil {
		t.Fatal(err)
	}
	data, err := FromJSON([]byte(`{"detectors": [{"name": "card", "builtin": "card_number"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(plan, data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name, entry, text, want string
	}{
		{"both detectors", "x/p", "pay 4111 1111 1111 1111 from bob@example.com", `{"hits":["card","email"],"text":"pay [card] from [email]"}`},
		{"nothing found", "x/p", "hello", `{"hits":[],"text":"hello"}`},
		{"invalid detectors are undefined", "x/bad", "hello", "undefined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := NewObject(1)
			in.Set("text", String(tc.text))
			got := engineOutcome(ctx, p, tc.entry, in)
			if got.String() != tc.want {
				t.Fatalf("got %v, want %s", got, tc.want)
			}
		})
	}
	// The compiled detector set is cached per Policy, keyed by the value's
	// text. A list built by the evaluation is not kept by pointer.
	if n, m := len(p.dlp.byText), len(p.dlp.byPtr); n != 1 || m != 0 {
		t.Fatalf("dlp cache holds %d sets by text and %d by pointer, want 1 and 0", n, m)
	}
	// A list from data can never change, so its pointer is a key too, and
	// a second call finds it there.
	for range 2 {
		in := NewObject(1)
		in.Set("text", String("4111 1111 1111 1111"))
		if got, want := engineOutcome(ctx, p, "x/d", in).String(), `{"hits":["card"],"text":"[card]"}`; got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	if n, m := len(p.dlp.byText), len(p.dlp.byPtr); n != 2 || m != 1 {
		t.Fatalf("dlp cache holds %d sets by text and %d by pointer, want 2 and 1", n, m)
	}
}
