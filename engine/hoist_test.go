package engine

import (
	"context"
	"testing"
)

func TestLiteralHoisting(t *testing.T) {
	plan := mustPlan(t, map[string]string{"a.rego": `package a
p if not input.r in {"eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1"}
q := {"k": "v", "t": true}
r contains "a"
r contains "b" if input.b
s := [x | some x in ["p", "q"]]
`}, "a/p", "a/q", "a/r", "a/s")
	p, err := Load(plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct{ entry, input, want string }{
		{"a/p", `{"r": "sa-east-1"}`, `true`},
		{"a/p", `{"r": "us-west-2"}`, "undefined"},
		{"a/q", `{}`, `{"k":"v","t":true}`},
		{"a/r", `{"b": true}`, `["a","b"]`},
		{"a/r", `{}`, `["a"]`},
		{"a/s", `{}`, `["p","q"]`},
	} {
		t.Run(tc.entry+tc.input, func(t *testing.T) {
			// Evaluate twice: a hoisted literal must not carry state over.
			for range 2 {
				if got := engineOutcome(ctx, p, tc.entry, mustFromJSON(t, tc.input)); got.String() != tc.want {
					t.Fatalf("got %v, want %s", got, tc.want)
				}
			}
		})
	}
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	in := mustFromJSON(t, `{"r": "sa-east-1"}`)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.Eval(ctx, "a/p", in); err != nil {
			t.Fatal(err)
		}
	})
	// Only the result set and the {"result": true} object; the five-element
	// literal set is built once at Load.
	if allocs > 2 {
		t.Fatalf("%.0f allocations per evaluation, want <= 2", allocs)
	}
}
