package policies

import (
	"context"
	"testing"
)

// A policy set with no approval rule at all once failed OPA's type check
// (the generated approval summary read fields no finding had).
func TestCompileWithoutApprovalRules(t *testing.T) {
	src := []byte(`apiVersion: aegis.policy/v1
kind: PolicySet
metadata: {name: small, tenant: t1}
agents:
  - id: a1
    tools: [svc.read]
tools:
  - name: svc.read
    kind: read
    http: {host: svc.internal, method: GET, path: /x}
`)
	ps, errs := Load("small.yaml", src)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := Compile(context.Background(), ps, Options{SkipWasm: true})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	ev := newEvaluator(t, c)
	d := ev.evalDecision(t, map[string]any{
		"agent":   map[string]any{"id": "a1", "tenant": "t1", "chain": []any{"a1"}, "region": ""},
		"request": map[string]any{"method": "GET", "host": "svc.internal", "path": "/x", "query": map[string]any{}, "headers": map[string]any{}, "body_type": "none"},
		"context": map[string]any{"region": "r", "time": "2026-11-24T10:00:00Z", "intent": "", "budget": map[string]any{"spent_micro_usd_today": 0}},
	})
	if d["action"] != "allow" {
		t.Errorf("want allow, got %v", d)
	}
}
