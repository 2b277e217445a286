package engine

import (
	"context"
	"encoding/json"
	"testing"
)

// dispatchModule has a partial set whose rules are guarded by the same
// memoised rule, in runs long enough to be dispatched, around unguarded
// rules, with several rules per value, a guard that errors for some
// inputs, and a guarded rule that fails after its guard.
const dispatchModule = `package d

import rego.v1

default kind := "none"

kind := input.kind if input.kind

name := input.name

findings contains "always" if input.x

findings contains "a1" if {
	name == "a"
	input.x > 1
}

findings contains "a2" if {
	name == "a"
	x := input.x
	x < 10
}

findings contains "b1" if {
	name == "b"
}

findings contains sprintf("c:%v", [input.x]) if {
	name == "c"
	input.x
}

findings contains "a3" if {
	name == "a"
	1 / input.zero > 0
}

findings contains "d" if {
	name == "d"
}

findings contains "middle" if kind == "m"

findings contains "k1" if {
	kind == "k"
}

findings contains "k2" if {
	kind == "k"
	input.x == 2
}

findings contains "j" if {
	kind == "j"
}

findings contains "m1" if {
	kind == "m"
}

findings contains "last" if count(input) > 0
`

func TestGuardDispatchMatchesOPA(t *testing.T) {
	modules := map[string]string{"d.rego": dispatchModule}
	plan := mustPlan(t, modules, "d/findings")
	p, err := Load(plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The set's function must have been compiled with dispatches: fewer
	// instructions than planned blocks.
	var raw struct {
		Funcs struct {
			Funcs []struct {
				Name   string            `json:"name"`
				Blocks []json.RawMessage `json:"blocks"`
			} `json:"funcs"`
		} `json:"funcs"`
	}
	if err := json.Unmarshal(plan, &raw); err != nil {
		t.Fatal(err)
	}
	found := false
	for i, f := range raw.Funcs.Funcs {
		if f.Name == "g0.data.d.findings" {
			found = true
			if got := p.funcs[i].nblocks; got >= len(f.Blocks) {
				t.Fatalf("findings: %d instructions for %d blocks: no run was dispatched", got, len(f.Blocks))
			}
		}
	}
	if !found {
		t.Fatal("no function g0.data.d.findings in the plan")
	}
	oracle := newOPAOracle(t, modules, map[string]any{}, "d/findings")
	ctx := context.Background()
	for _, in := range []string{
		`{}`,
		`{"name": "a", "x": 5}`,
		`{"name": "a", "x": 50}`,
		`{"name": "a", "x": 5, "zero": 0}`,
		`{"name": "a", "x": 5, "zero": 1}`,
		`{"name": "b"}`,
		`{"name": "c", "x": 3}`,
		`{"name": "d", "x": 1}`,
		`{"name": "zzz", "x": 1}`,
		`{"name": 7, "x": 1}`,
		`{"name": ["a"], "x": 1}`,
		`{"kind": "k", "x": 2}`,
		`{"kind": "k", "name": "a", "x": 2}`,
		`{"kind": "m"}`,
		`{"kind": "j", "name": "b"}`,
		`{"kind": false, "name": "d"}`,
	} {
		t.Run(in, func(t *testing.T) {
			var doc any
			if err := json.Unmarshal([]byte(in), &doc); err != nil {
				t.Fatal(err)
			}
			want := oracle.eval(ctx, doc)
			if want.defined {
				want.result = normalizeJSON(t, want.result)
			}
			// Twice: nothing may carry over between evaluations.
			for range 2 {
				if got := engineOutcome(ctx, p, "d/findings", mustFromJSON(t, in)); got != want {
					t.Fatalf("engine %v, OPA %v", got, want)
				}
			}
		})
	}
}
