package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/aegis-mesh/aegis/engine"
)

// The example tables themselves run in policies/policytest, through the real
// input builder, on the engine and on OPA topdown. The helpers here serve the
// decision-semantics table (decision_test.go), which feeds hand-written input
// documents to both evaluators.

// yamlToJSON round-trips through JSON so numbers become json.Number, as the
// input builder produces them.
func yamlToJSON(t *testing.T, v any) ([]byte, any) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return raw, out
}

// evaluator runs one compiled policy on OPA topdown and on the engine.
type evaluator struct {
	pq  rego.PreparedEvalQuery
	pol *engine.Policy
}

func newEvaluator(t *testing.T, c *Compiled) *evaluator {
	t.Helper()
	pq, err := c.Topdown(context.Background(), "aegis/decision")
	if err != nil {
		t.Fatal(err)
	}
	data, err := engine.FromJSON(c.Data)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := engine.Load(c.Plan, data)
	if err != nil {
		t.Fatalf("engine load: %v", err)
	}
	return &evaluator{pq: pq, pol: pol}
}

// evalDecision returns OPA topdown's decision, after checking that the
// engine, running the plan, decides exactly the same.
func (ev *evaluator) evalDecision(t *testing.T, input map[string]any) map[string]any {
	t.Helper()
	raw, in := yamlToJSON(t, input)
	rs, err := ev.pq.Eval(context.Background(), regoInput(in))
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("decision undefined for input %v", input)
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("decision is %T", rs[0].Expressions[0].Value)
	}
	want, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	ein, err := engine.FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	v, defined, err := ev.pol.EvalOne(context.Background(), "aegis/decision", ein)
	if err != nil || !defined {
		t.Fatalf("engine eval: defined=%v err=%v", defined, err)
	}
	got, err := engine.ToJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, got, want) {
		t.Errorf("engine and OPA topdown disagree:\nengine:  %s\ntopdown: %s", got, want)
	}
	return d
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}
