package enginebench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/bench/measure"
	"github.com/aegis-mesh/aegis/policies"
)

func payments(t *testing.T) *policies.PolicySet {
	t.Helper()
	ps, errs := policies.LoadPath("../../policies/examples/payments.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return ps
}

// TestRunAgreesAndReports runs a small engine benchmark with scaling and
// checks what it measured: the three evaluators decided the same on every
// input, every path of the policy was exercised, every series has the
// planned sample count, and the report carries the promised fields.
func TestRunAgreesAndReports(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Plan: measure.Plan{Warmup: 10, Requests: 200, Runs: 2}, Inputs: 300, Seed: 1, PolicyName: "payments", Scaling: []int{3}}
	res, err := Run(ctx, payments(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Disagreements != 0 {
		t.Fatalf("%d disagreements: %v", res.Disagreements, res.Report.Notes)
	}
	r := res.Report
	if len(r.Series) != 3 {
		t.Fatalf("series %v", r.Series)
	}
	for _, s := range r.Series {
		if s.Count != 200 || s.Runs != 2 || s.P99US <= 0 || s.P50US > s.P99US {
			t.Errorf("series %s: %+v", s.Name, s)
		}
		if res.Curves[s.Name].Count() != 400 {
			t.Errorf("series %s: merged curve has %d samples, want 400", s.Name, res.Curves[s.Name].Count())
		}
	}
	mix, _ := r.Get("decisions")
	for _, a := range []string{"allow", "deny", "sanitize", "approval_needed"} {
		if mix.(map[string]int)[a] == 0 {
			t.Errorf("no %s decision in the input mix %v", a, mix)
		}
	}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"aegis.p50_us", "aegis.p99_us", "opa.p50_us", "opa.p99_us", "opa_wasm.p50_us", "opa_wasm.p99_us",
		"p99_ratio_vs_opa", "disagreements", "scaling.3.aegis_p99_us", "scaling.3.opa_p99_us"} {
		var v any = got
		for _, k := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		if _, ok := v.(float64); !ok {
			t.Errorf("JSON field %s = %v, want a number", path, v)
		}
	}
	if sc := got["scaling"].(map[string]any)["3"].(map[string]any); sc["disagreements"].(float64) != 0 {
		t.Errorf("scaling disagreements %v", sc["disagreements"])
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no inputs", Config{Plan: measure.Plan{Requests: 1, Runs: 1}}, "input count"},
		{"bad plan", Config{Inputs: 1}, "request count"},
		{"bad size", Config{Plan: measure.Plan{Requests: 1, Runs: 1}, Inputs: 1, Scaling: []int{0}}, "scaling size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want %q", err, c.want)
			}
			if _, err := Run(context.Background(), payments(t), c.cfg); err == nil {
				t.Fatal("Run accepted an invalid config")
			}
		})
	}
}
