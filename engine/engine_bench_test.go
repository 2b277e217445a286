package engine

import (
	"context"
	"testing"
)

// benchPolicy is a realistic tool-call policy: object lookups into data,
// constant regexes, numeric range checks, set membership and sprintf'd
// reasons.
const benchPolicy = `package bench

tool := data.tools[input.tool.name]

default allow := false

allow if {
	count(deny) == 0
}

deny contains sprintf("agent %s may not call %s", [input.agent.id, input.tool.name]) if {
	not input.tool.name in data.agents[input.agent.id].tools
}

deny contains sprintf("unknown tool %s", [input.tool.name]) if not tool

deny contains sprintf("amount %v outside [%v, %v]", [input.tool.args.amount, tool.min, tool.max]) if {
	amount := input.tool.args.amount
	not amount_in_range(amount)
}

amount_in_range(a) if {
	a >= tool.min
	a <= tool.max
}

deny contains sprintf("parameter %s does not match %s", [k, tool.params[k]]) if {
	some k, v in input.tool.args
	is_string(v)
	tool.params[k] == "currency"
	not regex.match("^[A-Z]{3}$", v)
}

deny contains "memo too long" if {
	not regex.match("^.{0,64}$", input.tool.args.memo)
}

deny contains sprintf("region %s not permitted", [input.agent.region]) if {
	not input.agent.region in {"eu-west-1", "eu-central-1", "us-east-1"}
}

decision := {"allow": allow, "reasons": deny, "risk": tool.risk}
`

const benchData = `{
  "agents": {
    "agent-7": {"tools": ["payments.transfer", "payments.refund", "crm.lookup"], "team": "billing"},
    "agent-9": {"tools": ["crm.lookup"], "team": "support"}
  },
  "tools": {
    "payments.transfer": {"min": 1, "max": 5000, "risk": "high", "params": {"currency": "currency"}},
    "payments.refund": {"min": 1, "max": 500, "risk": "medium", "params": {"currency": "currency"}},
    "crm.lookup": {"min": 0, "max": 0, "risk": "low", "params": {}}
  }
}`

const benchAllowInput = `{"agent": {"id": "agent-7", "region": "eu-west-1"},
  "tool": {"name": "payments.transfer", "args": {"amount": 1250.75, "currency": "EUR", "memo": "invoice 2024-118"}}}`

const benchDenyInput = `{"agent": {"id": "agent-9", "region": "ap-south-1"},
  "tool": {"name": "payments.transfer", "args": {"amount": 9000, "currency": "euro", "memo": "x"}}}`

func loadBench(b *testing.B) (*Policy, Value, Value) {
	b.Helper()
	data, err := FromJSON([]byte(benchData))
	if err != nil {
		b.Fatal(err)
	}
	p, err := Load(mustPlan(b, map[string]string{"bench.rego": benchPolicy}, "bench/decision"), data)
	if err != nil {
		b.Fatal(err)
	}
	allow, _ := FromJSON([]byte(benchAllowInput))
	deny, _ := FromJSON([]byte(benchDenyInput))
	return p, allow, deny
}

func BenchmarkEngine(b *testing.B) {
	p, allow, deny := loadBench(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name  string
		input Value
	}{{"allow", allow}, {"deny", deny}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := p.EvalOne(ctx, "bench/decision", bc.input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOPA runs the same policy and inputs through OPA's prepared
// topdown query, for comparison in the same run.
func BenchmarkOPA(b *testing.B) {
	data := opaGo(mustFromJSON(b, benchData)).(map[string]any)
	oracle := newOPAOracle(b, map[string]string{"bench.rego": benchPolicy}, data, "bench/decision")
	ctx := context.Background()
	for _, bc := range []struct {
		name  string
		input string
	}{{"allow", benchAllowInput}, {"deny", benchDenyInput}} {
		b.Run(bc.name, func(b *testing.B) {
			input := opaGo(mustFromJSON(b, bc.input))
			b.ReportAllocs()
			for b.Loop() {
				if o := oracle.eval(ctx, input); o.errCode != "" {
					b.Fatal(o.errCode)
				}
			}
		})
	}
}

func BenchmarkLoad(b *testing.B) {
	plan := mustPlan(b, map[string]string{"bench.rego": benchPolicy}, "bench/decision")
	data := mustFromJSON(b, benchData)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(plan, data); err != nil {
			b.Fatal(err)
		}
	}
}

func mustFromJSON(t testing.TB, s string) Value {
	t.Helper()
	v, err := FromJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBenchPolicyAgreesWithOPA makes sure the benchmark measures a correct
// evaluation: both inputs give OPA's result.
func TestBenchPolicyAgreesWithOPA(t *testing.T) {
	data := opaGo(mustFromJSON(t, benchData)).(map[string]any)
	modules := map[string]string{"bench.rego": benchPolicy}
	p, err := Load(mustPlan(t, modules, "bench/decision"), mustFromGo(t, data))
	if err != nil {
		t.Fatal(err)
	}
	oracle := newOPAOracle(t, modules, data, "bench/decision")
	ctx := context.Background()
	for _, tc := range []struct {
		name, input, want string
	}{
		{"allow", benchAllowInput, `{"allow":true,"reasons":[],"risk":"high"}`},
		{"deny", benchDenyInput, `{"allow":false,"reasons":["agent agent-9 may not call payments.transfer","amount 9000 outside [1, 5000]","parameter currency does not match currency","region ap-south-1 not permitted"],"risk":"high"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := mustFromJSON(t, tc.input)
			got := engineOutcome(ctx, p, "bench/decision", in)
			want := oracle.eval(ctx, opaGo(in))
			if got != want || got.result != tc.want {
				t.Fatalf("engine %v\nOPA    %v\nwant   %s", got, want, tc.want)
			}
		})
	}
}

// TestAllowPathAllocations pins the allocation count of the allow path
// (testing.AllocsPerRun is deterministic, unlike timing).
func TestAllowPathAllocations(t *testing.T) {
	data := mustFromJSON(t, benchData)
	p, err := Load(mustPlan(t, map[string]string{"bench.rego": benchPolicy}, "bench/decision"), data)
	if err != nil {
		t.Fatal(err)
	}
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	in := mustFromJSON(t, benchAllowInput)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(200, func() {
		if _, _, err := p.EvalOne(ctx, "bench/decision", in); err != nil {
			t.Fatal(err)
		}
	})
	// The result itself needs a few objects (result set, {"result": ...},
	// the decision object and its reasons set); everything else is pooled
	// or precomputed at Load.
	if allocs > 8 {
		t.Fatalf("allow path allocates %.0f times per evaluation, want <= 8", allocs)
	}
}
