package policies

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

// semPolicy exercises decision semantics the example tables do not reach.
const semPolicy = `apiVersion: aegis.policy/v1
kind: PolicySet
metadata: {name: sem, tenant: t}
defaults: {require_intent: false}
dlp:
  - {name: card, builtin: card_number}
mcp_servers:
  - {name: k8s, http: {host: mcp.internal, path: /mcp}}
agents:
  - id: a1
    tools: [shop.*, k8s.get]
    may_delegate_to: [a5]
  - id: a2
    tools: [shop.*, k8s.get]
    may_delegate_to: [a1]
  - id: a3
    tools: [shop.*]
    may_delegate_to: [a2]
  - id: a4
    tools: [shop.*]
    may_delegate_to: [a3]
  - id: a5
    tools: [shop.*]
    may_delegate_to: [a4]
  - id: a6
    tools: [shop.*]
    may_delegate_to: [a5]
tools:
  - name: shop.order
    http: {host: shop.internal, method: POST, path: /orders}
    params:
      qty: {type: integer, min: 1, max: 10}
      note: {type: string, max_length: 3}
      kind: {type: string, enum: [a, b, "100%"]}
      gift: {type: boolean}
    approval:
      - when: {param: qty, gte: 5}
        approvers: [leads]
        expires_in: 10m
      - when: {param: kind, in: [b]}
        approvers: [ops, leads]
        expires_in: 1h
    sanitize: {params: [note], dlp: [card]}
  - name: shop.search
    kind: read
    http: {host: shop.internal, method: GET, path_prefix: /search}
    params:
      page: {type: integer, min: 1}
      exact: {type: boolean}
    additional_params: deny
  - name: shop.observed
    mode: observe
    http: {host: shop.internal, method: POST, path: /observed}
    params:
      n: {type: number, max: 1}
  - name: k8s.get
    kind: read
    mcp: {server: k8s, tool: get}
rego:
  - name: gate
    source: |
      package aegis.custom.gate
      import rego.v1
      approval contains "big notes need a look" if input.params.note == "big"
      deny contains sprintf("tool %s is closed", [input.tool.name]) if input.params.note == "no"
`

func semInput(agent string, chain []string, method, path string, query map[string]any, params any) map[string]any {
	if chain == nil {
		chain = []string{agent}
	}
	ch := make([]any, len(chain))
	for i, c := range chain {
		ch[i] = c
	}
	if query == nil {
		query = map[string]any{}
	}
	bodyType := "none"
	in := map[string]any{
		"agent":   map[string]any{"id": agent, "chain": ch, "region": ""},
		"request": map[string]any{"method": method, "host": "shop.internal", "path": path, "query": query, "body_type": bodyType},
		"context": map[string]any{"region": "eu", "time": "2026-11-24T10:00:00Z", "intent": ""},
	}
	if params != nil {
		in["params"] = params
		in["request"].(map[string]any)["body_type"] = "json"
	}
	return in
}

func compileString(t *testing.T, src string) *Compiled {
	t.Helper()
	ps, errs := Load("sem.yaml", []byte(src))
	if errs != nil {
		t.Fatal(errs)
	}
	c, err := Compile(context.Background(), ps, Options{SkipWasm: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDecisionSemantics(t *testing.T) {
	c := compileString(t, semPolicy)
	obs := compileString(t, strings.Replace(semPolicy, "require_intent: false", "require_intent: true, mode: observe", 1))
	open := compileString(t, strings.Replace(semPolicy, "require_intent: false", "require_intent: true, unknown_agent: allow, unknown_tool: allow", 1))
	withIntent := func(in map[string]any, intent string) map[string]any {
		in["context"].(map[string]any)["intent"] = intent
		return in
	}
	order := func(p map[string]any) map[string]any { return semInput("a1", nil, "POST", "/orders", nil, p) }
	tests := []struct {
		name    string
		c       *Compiled
		input   map[string]any
		action  string
		reasons []string // exact, sorted
		check   func(t *testing.T, d map[string]any)
	}{
		{name: "valid order", input: order(map[string]any{"qty": 2}), action: "allow"},
		{name: "integer written with a fraction is not an integer", input: order(map[string]any{"qty": jsonNum("2.0")}), action: "deny",
			reasons: []string{"params.qty: expected an integer, got number"}},
		{name: "integer with exponent", input: order(map[string]any{"qty": jsonNum("2e0")}), action: "deny",
			reasons: []string{"params.qty: expected an integer, got number"}},
		{name: "max_length counts code points", input: order(map[string]any{"note": "äöü"}), action: "allow"},
		{name: "max_length exceeded", input: order(map[string]any{"note": "äöüß"}), action: "deny",
			reasons: []string{"params.note: 4 characters is longer than the maximum 3"}},
		{name: "enum text with a percent sign", input: order(map[string]any{"kind": "c%d"}), action: "deny",
			reasons: []string{"params.kind: c%d is not one of a, b, 100%"}},
		{name: "boolean type", input: order(map[string]any{"gift": "yes"}), action: "deny",
			reasons: []string{"params.gift: expected a boolean, got string"}},
		{name: "gte approval and in approval combine", input: order(map[string]any{"qty": 5, "kind": "b"}), action: "approval_needed",
			reasons: []string{"params.kind: b requires approval", "params.qty: 5 is at or above the approval threshold 5"},
			check: func(t *testing.T, d map[string]any) {
				want := map[string]any{"approvers": []any{"leads", "ops"}, "expires_in_s": jsonNum("600")}
				if !reflect.DeepEqual(normalize(t, d["approval"]), normalize(t, want)) {
					t.Errorf("approval = %v", d["approval"])
				}
			}},
		{name: "override lifts approval, sanitize still applies", input: withOverride(order(map[string]any{"qty": 5, "note": "4111111111111111"}), "shop.order"), action: "deny",
			reasons: []string{"params.note: 16 characters is longer than the maximum 3", "params.note: redacted card"}},
		{name: "override lifts approval only for its tool", input: withOverride(order(map[string]any{"qty": 5}), "shop.search"), action: "approval_needed",
			reasons: []string{"params.qty: 5 is at or above the approval threshold 5"}},
		{name: "override lifts approval", input: withOverride(order(map[string]any{"qty": 5}), "shop.order"), action: "allow"},
		{name: "custom approval", input: order(map[string]any{"note": "big"}), action: "approval_needed",
			reasons: []string{"rego.gate: big notes need a look"}},
		{name: "custom deny sees input.tool", input: order(map[string]any{"note": "no"}), action: "deny",
			reasons: []string{"rego.gate: tool shop.order is closed"}},
		{name: "no body: nothing required is missing", input: semInput("a1", nil, "POST", "/orders", nil, nil), action: "allow"},
		{name: "array body", input: semInput("a1", nil, "POST", "/orders", nil, []any{1}), action: "deny",
			reasons: []string{"params: the body must be a JSON object"}},
		{name: "non-JSON body", input: func() map[string]any {
			in := semInput("a1", nil, "POST", "/orders", nil, nil)
			in["request"].(map[string]any)["body_type"] = "other"
			return in
		}(), action: "deny", reasons: []string{"params: the body is not JSON, so its parameters cannot be checked"}},
		{name: "query parameter on a body tool", input: semInput("a1", nil, "POST", "/orders", map[string]any{"qty": "1"}, map[string]any{}), action: "deny",
			reasons: []string{"query.qty: shop.order takes its parameters from the JSON body, not the query string"}},
		{name: "query integer parses strictly", input: semInput("a1", nil, "GET", "/search/x", map[string]any{"page": "01"}, nil), action: "deny",
			reasons: []string{`query.page: "01" is not an integer`}},
		{name: "query integer of 256 digits is converted", input: semInput("a1", nil, "GET", "/search/x", map[string]any{"page": "1" + strings.Repeat("0", 255)}, nil), action: "allow"},
		{name: "query integer of 257 digits is refused by length", input: semInput("a1", nil, "GET", "/search/x", map[string]any{"page": "1" + strings.Repeat("0", 256)}, nil), action: "deny",
			reasons: []string{"query.page: 257 characters is too long for an integer (at most 256)"}},
		{name: "query integer of 64 KiB is refused by length, not quoted", input: semInput("a1", nil, "GET", "/search/x", map[string]any{"page": strings.Repeat("9", 64<<10)}, nil), action: "deny",
			reasons: []string{"query.page: 65536 characters is too long for an integer (at most 256)"}},
		{name: "long non-numeric query value is refused by length", input: semInput("a1", nil, "GET", "/search/x", map[string]any{"page": strings.Repeat("x", 300)}, nil), action: "deny",
			reasons: []string{"query.page: 300 characters is too long for an integer (at most 256)"}},
		{name: "query integer range", input: semInput("a1", nil, "GET", "/search/x", map[string]any{"page": "0"}, nil), action: "deny",
			reasons: []string{"query.page: 0 is below the minimum 1"}},
		{name: "query boolean", input: semInput("a1", nil, "GET", "/search", map[string]any{"page": "3", "exact": "false"}, nil), action: "allow"},
		{name: "query boolean invalid", input: semInput("a1", nil, "GET", "/search", map[string]any{"exact": "no"}, nil), action: "deny",
			reasons: []string{`query.exact: "no" is not a boolean`}},
		{name: "undeclared query parameter", input: semInput("a1", nil, "GET", "/search", map[string]any{"q": "x"}, nil), action: "deny",
			reasons: []string{"query.q: parameter is not declared for shop.search"}},
		{name: "tool-level observe goes to shadow", input: semInput("a1", nil, "POST", "/observed", nil, map[string]any{"n": 2}), action: "allow",
			check: func(t *testing.T, d map[string]any) {
				if d["shadow_action"] != "deny" || !reflect.DeepEqual(d["shadow_reasons"], []any{"params.n: 2 is above the maximum 1"}) {
					t.Errorf("shadow = %v %v", d["shadow_action"], d["shadow_reasons"])
				}
			}},
		{name: "delegation chain of five principals is too deep", input: semInput("a1", []string{"a1", "a2", "a3", "a4", "a5", "a6"}, "POST", "/orders", nil, map[string]any{}), action: "deny",
			reasons: []string{"delegation: 5 principals behind the acting agent, at most 4 are allowed"}},
		{name: "delegation chain of four principals", input: semInput("a1", []string{"a1", "a2", "a3", "a4", "a5"}, "POST", "/orders", nil, map[string]any{}), action: "allow"},
		{name: "agent twice in chain", input: semInput("a5", []string{"a5", "a1", "a2", "a3", "a4", "a5"}, "POST", "/orders", nil, map[string]any{}), action: "deny",
			reasons: []string{"delegation: 5 principals behind the acting agent, at most 4 are allowed", `delegation: agent "a5" appears more than once in the chain`}},
		{name: "chain must start with the agent", input: semInput("a2", []string{"a1", "a2"}, "POST", "/orders", nil, map[string]any{}), action: "deny",
			reasons: []string{`agent: agent id "a2" is not the first member of its chain`}},
		{name: "mcp stream allowed for agent with a tool on the server", input: mcpInput("a1", "stream", ""), action: "allow"},
		{name: "mcp session end denied for agent without tools there", input: mcpInput("a3", "session_end", ""), action: "deny",
			reasons: []string{"mcp: a3 is granted no tool of server k8s"}},
		{name: "mcp client response", input: mcpInput("a3", "response", ""), action: "allow"},
		{name: "mcp notification", input: mcpInput("a3", "notification", "notifications/initialized"), action: "allow"},
		{name: "mcp endpoint without a message", input: func() map[string]any {
			in := semInput("a1", nil, "POST", "/mcp", nil, nil)
			in["request"].(map[string]any)["host"] = "mcp.internal"
			return in
		}(), action: "deny", reasons: []string{"mcp: request to the endpoint of MCP server k8s without a JSON-RPC message", "tool: no tool matches POST mcp.internal/mcp"}},
		{name: "unknown_tool allow", c: open, input: withIntent(semInput("a1", nil, "PUT", "/elsewhere", nil, nil), "x"), action: "allow",
			check: func(t *testing.T, d map[string]any) {
				if _, ok := d["tool"]; ok || d["fail"] != "closed" {
					t.Errorf("decision = %v", d)
				}
			}},
		{name: "unknown_agent allow skips agent checks", c: open, input: withIntent(semInput("stranger", nil, "POST", "/orders", nil, map[string]any{}), "x"), action: "allow"},
		{name: "require_intent enforced", c: open, input: semInput("a1", nil, "POST", "/orders", nil, map[string]any{}), action: "deny",
			reasons: []string{"intent: the x-aegis-intent header is required"}},
		{name: "unknown agent denied by default", input: semInput("stranger", nil, "POST", "/orders", nil, map[string]any{}), action: "deny",
			reasons: []string{`agent: unknown agent "stranger"`}},
		{name: "global observe mode", c: obs, input: order(map[string]any{"qty": 50}), action: "allow",
			check: func(t *testing.T, d map[string]any) {
				want := []any{"intent: the x-aegis-intent header is required", "params.qty: 50 is above the maximum 10", "params.qty: 50 is at or above the approval threshold 5"}
				if d["shadow_action"] != "deny" || !reflect.DeepEqual(d["shadow_reasons"], want) || d["mode"] != "observe" {
					t.Errorf("decision = %v", d)
				}
			}},
	}
	evs := map[*Compiled]*evaluator{c: newEvaluator(t, c), obs: newEvaluator(t, obs), open: newEvaluator(t, open)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comp := tt.c
			if comp == nil {
				comp = c
			}
			d := evs[comp].evalDecision(t, tt.input)
			if d["action"] != tt.action {
				t.Fatalf("action = %v, want %s; decision %v", d["action"], tt.action, d)
			}
			if got := strs(d["reasons"]); tt.reasons != nil && !reflect.DeepEqual(got, tt.reasons) {
				t.Errorf("reasons = %q\nwant      %q", got, tt.reasons)
			}
			if tt.reasons == nil && len(strs(d["reasons"])) > 0 && tt.action == "allow" {
				t.Errorf("allow with reasons %q", strs(d["reasons"]))
			}
			if tt.check != nil {
				tt.check(t, d)
			}
		})
	}
}

func TestMCPVisibleTools(t *testing.T) {
	c := compileString(t, semPolicy)
	pq, err := c.Topdown(context.Background(), "aegis/mcp_visible_tools")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		chain []any
		want  []any
	}{
		{[]any{"a1"}, []any{"get"}},
		{[]any{"a1", "a2"}, []any{"get"}},
		{[]any{"a2", "a3"}, []any{}},
		{[]any{"nobody"}, []any{}},
	} {
		in := map[string]any{"agent": map[string]any{"id": tt.chain[0], "chain": tt.chain}, "mcp": map[string]any{"server": "k8s", "kind": "request", "method": "tools/list"}}
		rs, err := pq.Eval(context.Background(), regoInput(in))
		if err != nil || len(rs) != 1 {
			t.Fatalf("eval: %v %v", rs, err)
		}
		if got := rs[0].Expressions[0].Value; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("chain %v: visible %v, want %v", tt.chain, got, tt.want)
		}
	}
}

func mcpInput(agent, kind, method string) map[string]any {
	in := semInput(agent, nil, "GET", "/mcp", nil, nil)
	in["request"].(map[string]any)["host"] = "mcp.internal"
	m := map[string]any{"server": "k8s", "kind": kind}
	if method != "" {
		m["method"] = method
	}
	in["mcp"] = m
	return in
}

func withOverride(in map[string]any, tool string) map[string]any {
	in["context"].(map[string]any)["override"] = map[string]any{"jti": "j", "tool": tool}
	return in
}
