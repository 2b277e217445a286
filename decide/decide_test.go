package decide

import (
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input"
)

func mustJSON(t *testing.T, s string) engine.Value {
	t.Helper()
	v, err := engine.FromJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFromValue(t *testing.T) {
	full := `{"action":"sanitize","reasons":["params.memo: redacted card"],"rule_ids":["r1"],"shadow_action":"deny",
	  "shadow_reasons":["weekend"],"tool":{"name":"payments.create","kind":"write","risk":"high"},
	  "redactions":[{"path":["memo"],"value":"[card]","detectors":["card"]}],
	  "approval":{"approvers":["leads"],"expires_in_s":900},
	  "obligations":{"cost_micro_usd":50000,"rate":{"key":"billing-agent","per_minute":60}},"fail":"closed","mode":"enforce"}`
	d, err := FromValue(mustJSON(t, full))
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != Sanitize || d.ShadowAction != Deny || d.Tool.Name != "payments.create" || d.Redactions[0].Path[0] != "memo" ||
		d.Approval.ExpiresInS != 900 || d.Obligations.Rate.PerMinute != 60 || d.Obligations.CostMicroUSD != 50000 || d.Fail != "closed" {
		t.Errorf("decoded wrong: %+v", d)
	}
	if d, err := FromValue(mustJSON(t, `{"action":"allow"}`)); err != nil || d.Reasons == nil {
		t.Errorf("minimal decision: %+v %v (reasons must be [] not nil)", d, err)
	}

	bad := []struct{ name, doc, want string }{
		{"not an object", `"allow"`, "want an object, got string"},
		{"no action", `{}`, "action: missing"},
		{"unknown action", `{"action":"permit"}`, `action: unknown action "permit"`},
		{"action not a string", `{"action":1}`, "action: want a string, got number"},
		{"reasons not strings", `{"action":"deny","reasons":[1]}`, "reasons: want strings, got a number"},
		{"unknown shadow", `{"action":"allow","shadow_action":"maybe"}`, "shadow_action: unknown action"},
		{"tool without name", `{"action":"allow","tool":{}}`, "tool.name: missing"},
		{"fractional cost", `{"action":"allow","obligations":{"cost_micro_usd":0.5}}`, "obligations.cost_micro_usd: want an integer"},
		{"redaction without path", `{"action":"sanitize","redactions":[{"value":"x"}]}`, "redactions[0].path: missing or empty"},
		{"redactions not a list", `{"action":"sanitize","redactions":{}}`, "redactions: want an array"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromValue(mustJSON(t, tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestStricter(t *testing.T) {
	order := []Action{"", Allow, Sanitize, ApprovalNeeded, Deny, "garbage"}
	for i, a := range order {
		for j, b := range order {
			want := a
			if j > i {
				want = b
			}
			if got := Stricter(a, b); got != want {
				t.Errorf("Stricter(%q, %q) = %q, want %q", a, b, got, want)
			}
		}
	}
}

func TestCombine(t *testing.T) {
	ds := []Decision{
		{Action: Allow, Reasons: []string{}, RuleIDs: []string{"a"}, Obligations: Obligations{CostMicroUSD: 10}},
		{Action: ApprovalNeeded, Reasons: []string{"params.namespace: production"}, RuleIDs: []string{"b", "a"},
			Approval: &Approval{Approvers: []string{"rm"}}, Obligations: Obligations{CostMicroUSD: 5}},
		{Action: Sanitize, Reasons: []string{"x"}, ShadowAction: Deny, ShadowReasons: []string{"s"}},
	}
	got := Combine([]string{"rpc[0] id=1", "rpc[1] id=2", "rpc[2] id=3"}, ds)
	if got.Action != ApprovalNeeded || got.ShadowAction != Deny || got.Obligations.CostMicroUSD != 15 || got.Approval == nil {
		t.Errorf("combined: %+v", got)
	}
	if strings.Join(got.Reasons, "|") != "rpc[1] id=2: params.namespace: production|rpc[2] id=3: x" {
		t.Errorf("reasons: %q", got.Reasons)
	}
	if strings.Join(got.RuleIDs, ",") != "a,b" {
		t.Errorf("rule ids: %q", got.RuleIDs)
	}
	if one := Combine([]string{"request"}, ds[1:2]); one.Action != ApprovalNeeded || one.Reasons[0] != "params.namespace: production" {
		t.Errorf("a single decision must pass through unchanged: %+v", one)
	}
}

func TestRewrite(t *testing.T) {
	red := func(path ...string) Decision {
		return Decision{Action: Sanitize, Redactions: []Redaction{{Path: path, Value: "[card]"}}}
	}
	tests := []struct {
		name, body string
		batch      bool
		calls      []Call
		want       string
		wantErr    string
	}{
		{"http body", `{"memo":"card 4111","amount":1}`, false, []Call{{Decision: red("memo")}}, `{"amount":1,"memo":"[card]"}`, ""},
		{"nested", `{"a":{"b":"x"}}`, false, []Call{{Decision: red("a", "b")}}, `{"a":{"b":"[card]"}}`, ""},
		{"mcp single", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"m":"x"}}}`, false,
			[]Call{{MCP: &input.MCPCall{}, Decision: red("m")}},
			`{"id":1,"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"m":"[card]"},"name":"t"}}`, ""},
		{"mcp batch", `[{"params":{"arguments":{"m":"keep"}}},{"params":{"arguments":{"m":"x"}}}]`, true,
			[]Call{{MCP: &input.MCPCall{Index: 0}}, {MCP: &input.MCPCall{Index: 1}, Decision: red("m")}},
			`[{"params":{"arguments":{"m":"keep"}}},{"params":{"arguments":{"m":"[card]"}}}]`, ""},
		{"missing field", `{"a":1}`, false, []Call{{Decision: red("b")}}, "", `no field "b"`},
		{"into a string", `{"a":"s"}`, false, []Call{{Decision: red("a", "b")}}, "", "cannot descend into a string"},
		{"bad index", `[{"params":{"arguments":{}}}]`, true, []Call{{MCP: &input.MCPCall{Index: 3}, Decision: red("m")}}, "", `no element "3"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Rewrite(mustJSON(t, tc.body), tc.batch, tc.calls)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error %q, got %v (%s)", tc.wantErr, err, got)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if _, err := Rewrite(nil, false, nil); err == nil {
		t.Error("rewriting without a JSON body must fail")
	}
}
