package gen

import (
	"context"
	"fmt"
	"testing"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/policies"
)

func TestGeneratedSetsDecide(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{1, 3, 40} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			src, err := PolicySet(n)
			if err != nil {
				t.Fatal(err)
			}
			ps, errs := policies.Load("gen.yaml", src)
			if len(errs) > 0 {
				t.Fatalf("generated set does not load: %v\n%s", errs, src)
			}
			if len(ps.Agents) != n || len(ps.Tools) != n {
				t.Fatalf("%d agents, %d tools, want %d each", len(ps.Agents), len(ps.Tools), n)
			}
			c, err := policies.Compile(ctx, ps, policies.Options{SkipWasm: true})
			if err != nil {
				t.Fatal(err)
			}
			data, err := engine.FromJSON(c.Data)
			if err != nil {
				t.Fatal(err)
			}
			pol, err := engine.Load(c.Plan, data)
			if err != nil {
				t.Fatal(err)
			}
			last := n - 1
			cases := []struct {
				name, agent string
				tool        int
				amount      string
				memo        string
				want        string
			}{
				{"granted", AgentName(last), last, "12.5", "thanks", "allow"},
				{"granted, next tool", AgentName(last), (last + 1) % n, "12.5", "thanks", "allow"},
				{"card in memo", AgentName(last), last, "12.5", "card 4111 1111 1111 1111", "sanitize"},
				{"over threshold", AgentName(last), last, "6000", "x", "approval_needed"},
				{"over max", AgentName(last), last, "60000", "x", "deny"},
				{"unknown agent", "intruder", last, "1", "x", "deny"},
			}
			for _, tc := range cases {
				doc := fmt.Sprintf(`{"version":1,"agent":{"id":%q,"tenant":"acme","chain":[%q],"region":"eu-west-1","scope":[],"claims":{}},
				"request":{"method":"POST","scheme":"https","host":%q,"path":%q,"query":{},"headers":{"content-type":"application/json"},"body_type":"json"},
				"params":{"amount":%s,"currency":"EUR","memo":%q},
				"context":{"region":"eu-west-1","time":"2026-11-24T10:00:00Z","time_ns":1795514400000000000,"intent":"","budget":{"spent_micro_usd_today":0,"spent_usd_today":0},"state_seq":0}}`,
					tc.agent, tc.agent, Host(tc.tool), Path(tc.tool), tc.amount, tc.memo)
				in, err := engine.FromJSON([]byte(doc))
				if err != nil {
					t.Fatal(err)
				}
				v, ok, err := pol.EvalOne(ctx, "aegis/decision", in)
				if err != nil || !ok {
					t.Fatalf("%s: %v %v", tc.name, ok, err)
				}
				a, _ := v.(*engine.Object).Get("action")
				if !engine.Equal(a, engine.String(tc.want)) {
					t.Errorf("%s: action %v, want %s (decision %v)", tc.name, engine.ToGo(a), tc.want, engine.ToGo(v))
				}
			}
		})
	}
}

func TestPolicySetSize(t *testing.T) {
	if _, err := PolicySet(0); err == nil {
		t.Error("size 0 accepted")
	}
}
