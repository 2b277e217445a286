package opawasm

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/tetratelabs/wazero"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/policies"
	"github.com/aegis-mesh/aegis/policies/difftest"
)

// TestAgreesWithTopdown runs generated inputs for the payments example
// (allow, deny, sanitize through aegis.dlp.redact, approval) through the
// wasm module under this host and through OPA's Go evaluator on the same
// Rego: every decision must be identical.
func TestAgreesWithTopdown(t *testing.T) {
	ctx := context.Background()
	ps, errs := policies.LoadPath("../../../policies/examples/payments.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := policies.Compile(ctx, ps, policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := New(ctx, c.Wasm, c.Data)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(ctx)
	ep, ok := inst.Entrypoint("aegis/decision")
	if !ok {
		t.Fatalf("no aegis/decision entrypoint in %v", inst.entrypoints)
	}
	pq, err := c.Topdown(ctx, "aegis/decision")
	if err != nil {
		t.Fatal(err)
	}
	g := difftest.New(ps, 7)
	actions := map[string]int{}
	for i := range 300 {
		doc := engine.ToGo(g.Next())
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := inst.Eval(ctx, ep, raw)
		if err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
		var set []map[string]any
		if err := json.Unmarshal(got, &set); err != nil || len(set) != 1 {
			t.Fatalf("input %d: result set %s (%v)", i, got, err)
		}
		rs, err := pq.Eval(ctx, rego.EvalInput(doc))
		if err != nil || len(rs) != 1 {
			t.Fatalf("input %d: topdown %v %v", i, rs, err)
		}
		want, _ := json.Marshal(rs[0].Expressions[0].Value)
		gotDecision, _ := json.Marshal(set[0]["result"])
		a, errA := engine.FromJSON(gotDecision)
		b, errB := engine.FromJSON(want)
		if errA != nil || errB != nil || !engine.Equal(a, b) {
			t.Fatalf("input %d: wasm %s\ntopdown %s\ninput %s", i, gotDecision, want, raw)
		}
		actions[set[0]["result"].(map[string]any)["action"].(string)]++
	}
	for _, a := range []string{"allow", "deny", "sanitize", "approval_needed"} {
		if actions[a] == 0 {
			t.Errorf("no %s decision among %v: the comparison did not cover that path", a, actions)
		}
	}
}

func TestRefusesBadModules(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		wasm []byte
		want string
	}{
		{"not wasm", []byte("hello"), "compiling"},
		{"empty module", []byte{0, 'a', 's', 'm', 1, 0, 0, 0}, "ABI"},
		// The glue module itself is valid wasm but not an OPA policy.
		{"glue", glueModule(1), "ABI"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(ctx, c.wasm, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

func TestGlueModuleShape(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, glueModule(300)) // 300 pages: a two-byte LEB128
	if err != nil {
		t.Fatal(err)
	}
	exp := cm.ExportedMemories()["memory"]
	if exp == nil || exp.Min() != 300 {
		t.Fatalf("memory export %v", exp)
	}
	fns := cm.ExportedFunctions()
	for _, f := range hostFuncs {
		d := fns[f.name]
		if d == nil || len(d.ParamTypes()) != f.params {
			t.Errorf("export %s: %v", f.name, d)
		}
	}
}
