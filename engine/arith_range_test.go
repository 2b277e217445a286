package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// arithPolicy loads a policy whose rule r computes one expression over input.x (and input.y).
func arithPolicy(t testing.TB, expr string) (*Policy, map[string]string) {
	t.Helper()
	mods := map[string]string{"p.rego": "package p\nimport rego.v1\nr := " + expr + "\n"}
	p, err := Load(mustPlan(t, mods, "p/r"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, mods
}

// TestArithmeticRange: inside float64's range arithmetic agrees with OPA;
// beyond it the evaluation stops with a builtin error instead of spending
// up to seconds printing the result, and instead of leaving the call
// undefined, which would skip a deny rule.
func TestArithmeticRange(t *testing.T) {
	tests := []struct {
		expr, x string
		refused bool
	}{
		{"input.x * 3", "1e-300", false},
		{"input.x * 3", "1e300", false},
		{"input.x + 1", "1.5e308", false},
		{"input.x / 2", "1e-323", false},
		{"input.x * 2", "1e308", true}, // result beyond
		{"input.x / 10", "4.9e-324", true},
		{"input.x * 3", "1e-30103", true},
		{"input.x + 1", "1e30102", true},
		{"input.x - 1", "-1e400", true},
		{"input.x % 2", "1e400", true},
		{"round(input.x)", "1e30102", true},
		{"abs(input.x)", "-1e400", true},
		{"ceil(input.x)", "1e-400", true},
		{"sum([1, input.x])", "1e400", true},
		{"product([2, input.x])", "1e-400", true},
		{"bits.and(input.x, 1)", "1e400", true},
		{"format_int(input.x, 10)", "1e400", true},
		{"numbers.range(0, input.x)", "1e400", true},
		// Small integers never reach the check.
		{"input.x * 3", "0", false},
		{"input.x + 1", "-0e5", false},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.expr+"/"+tt.x, func(t *testing.T) {
			p, mods := arithPolicy(t, tt.expr)
			in, err := FromJSON([]byte(`{"x":` + tt.x + `}`))
			if err != nil {
				t.Fatal(err)
			}
			v, ok, err := p.EvalOne(ctx, "p/r", in)
			if tt.refused {
				if err == nil || !strings.Contains(err.Error(), "outside the range of a float64") {
					t.Fatalf("got %v, %v, %v; want the range error", v, ok, err)
				}
				var e *Error
				if !errors.As(err, &e) || e.Code != CodeBuiltinError {
					t.Errorf("error %v is not a builtin error", err)
				}
				return
			}
			var x any
			if err := json.Unmarshal([]byte(`{"x":`+tt.x+`}`), &x); err != nil {
				t.Fatal(err)
			}
			want := newOPAOracle(t, mods, map[string]any{}, "p/r").eval(ctx, x)
			if got := engineOutcome(ctx, p, "p/r", in); got.String() != want.String() {
				t.Errorf("engine %v, OPA %v", got, want)
			}
		})
	}
}

// TestArithmeticRangeFailsClosed: a deny rule over an out-of-range product
// ends the evaluation; it does not let allow through.
func TestArithmeticRangeFailsClosed(t *testing.T) {
	mods := map[string]string{"p.rego": "package p\nimport rego.v1\ndefault allow := false\nallow if not deny\ndeny if input.amount * 100 > 5000\n"}
	p, err := Load(mustPlan(t, mods, "p/allow"), nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := FromJSON([]byte(`{"amount":1e-30103}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := p.EvalOne(context.Background(), "p/allow", in); err == nil {
		t.Fatalf("allow = %v, %v; want an error", v, ok)
	}
}

// BenchmarkArithmeticNearRange times arithmetic at the edge of float64's
// range, the most a policy's arithmetic on an agent's number can cost, and
// beyond it, where it is refused.
func BenchmarkArithmeticNearRange(b *testing.B) {
	for _, c := range []struct{ expr, x string }{
		{"input.x * 3", "1e-300"}, {"input.x * 3", "1e300"}, {"round(input.x)", "1e300"},
		{"input.x * 3", "1e-30103"}, {"round(input.x)", "1e30102"},
	} {
		p, _ := arithPolicy(b, c.expr)
		in, err := FromJSON([]byte(`{"x":` + c.x + `}`))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.expr+"/"+c.x, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = p.EvalOne(context.Background(), "p/r", in)
			}
		})
	}
}
