package policytest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/aegis-mesh/aegis/decide"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input"
	"github.com/aegis-mesh/aegis/policies"
)

// topdown evaluates compiled policies with OPA's own evaluator, so the same
// tables run against the engine and against OPA.
type topdown map[string]rego.PreparedEvalQuery

func (td topdown) EvalOne(ctx context.Context, entrypoint string, doc engine.Value) (engine.Value, bool, error) {
	rs, err := td[entrypoint].Eval(ctx, rego.EvalInput(engine.ToGoWith(doc, func(lit string) any { return json.Number(lit) })))
	if err != nil || len(rs) == 0 {
		return nil, false, err
	}
	v, err := engine.FromGo(rs[0].Expressions[0].Value)
	return v, err == nil, err
}

func topdownTarget(t *testing.T, f *File) Target {
	t.Helper()
	ctx := context.Background()
	ps, errs := policies.LoadPath(filepath.Join(filepath.Dir(f.Path), f.Policy))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := policies.Compile(ctx, ps, policies.Options{SkipWasm: true})
	if err != nil {
		t.Fatal(err)
	}
	td := topdown{}
	for _, ep := range c.Entrypoints {
		if td[ep], err = c.Topdown(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	opts := input.Options{MaxBodyBytes: int(c.MaxBodyBytes)}
	for _, e := range c.MCPEndpoints {
		opts.MCPEndpoints = append(opts.MCPEndpoints, input.MCPEndpoint{Server: e.Server, Host: e.Host, Path: e.Path})
	}
	return Target{Decider: decide.New(td, opts), Tenant: c.Tenant}
}

// TestExampleTables runs the product-contract tables through the full
// decision path on the plan engine and on OPA topdown.
func TestExampleTables(t *testing.T) {
	for _, file := range []string{"payments_test.yaml", "mcp-devops_test.yaml"} {
		f, errs := LoadFile(filepath.Join("..", "examples", file))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		engineTarget, err := Compile(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for name, target := range map[string]Target{"engine": engineTarget, "opa": topdownTarget(t, f)} {
			t.Run(file+"/"+name, func(t *testing.T) {
				results, err := Run(context.Background(), f, target)
				if err != nil {
					t.Fatal(err)
				}
				if len(results) != len(f.Cases) || len(results) == 0 {
					t.Fatalf("ran %d of %d cases", len(results), len(f.Cases))
				}
				for _, r := range results {
					if !r.Passed() {
						t.Error(r.Summary())
					}
				}
			})
		}
	}
}

// TestRunReportsFailures checks that a wrong expectation fails with the
// expected and actual values named, so a red table explains itself.
func TestRunReportsFailures(t *testing.T) {
	src := `apiVersion: aegis.policy/v1
kind: PolicyTest
policy: ../examples/payments.yaml
defaults: {region: eu-west-1, time: "2026-11-24T10:00:00Z"}
cases:
  - name: wrong on purpose
    agent: billing-agent
    request:
      method: POST
      url: https://payments.acme.internal/v1/payments
      json: {amount: 60000, currency: EUR, beneficiary_iban: DE89370400440532013000}
    expect:
      action: allow
      reasons_include: [no such reason]
      reasons_exclude: [params.amount]
      shadow_action: deny
      forwarded_json: {amount: 1}
`
	f, errs := Load(filepath.Join(".", "inline_test.yaml"), []byte(src))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	target, err := Compile(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	results, err := Run(context.Background(), f, target)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(results[0].Failures, "\n")
	for _, want := range []string{
		"action: want allow, got deny",
		`reasons: want one containing "no such reason"`,
		`reasons: want none containing "params.amount"`,
		`shadow_action: want deny, got ""`,
		`forwarded body: want {"amount":1}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("failures do not mention %q:\n%s", want, got)
		}
	}
	if s := results[0].Summary(); !strings.Contains(s, "FAIL inline_test.yaml:6: wrong on purpose") {
		t.Errorf("summary does not locate the case:\n%s", s)
	}
}

// TestLoadErrors checks that malformed tables are rejected with located,
// specific errors.
func TestLoadErrors(t *testing.T) {
	head := "apiVersion: aegis.policy/v1\nkind: PolicyTest\npolicy: p.yaml\n"
	tests := []struct {
		name, src string
		want      []string
	}{
		{"not yaml", "cases: [", []string{"t.yaml:1:1: did not find expected node content"}},
		{"empty", "", []string{"t.yaml:1:1: the document is empty"}},
		{"wrong kind", "apiVersion: aegis.policy/v1\nkind: PolicySet\npolicy: p.yaml\ncases: []\n",
			[]string{`t.yaml:2:7: kind: kind "PolicySet" is not PolicyTest`}},
		{"missing fields", "kind: PolicyTest\n", []string{
			`t.yaml:1:1: apiVersion: required field "apiVersion" is missing`,
			`t.yaml:1:1: cases: required field "cases" is missing`,
			`t.yaml:1:1: policy: required field "policy" is missing`}},
		{"unknown field", head + "cases:\n  - name: a\n    agnt: x\n    request: {method: GET, url: https://h/}\n    expect: {action: allow}\n",
			[]string{`t.yaml:6:5: cases[0].agnt: unknown field "agnt"`, `t.yaml:5:5: cases[0].agent: required field "agent" is missing`}},
		{"bad action", head + "cases:\n  - {name: a, agent: x, request: {method: GET, url: https://h/}, expect: {action: permit}}\n",
			[]string{`cases[0].expect.action: unknown value "permit"`}},
		{"duplicate names", head + "cases:\n  - {name: a, agent: x, request: {method: GET, url: https://h/}, expect: {action: allow}}\n  - {name: a, agent: x, request: {method: GET, url: https://h/}, expect: {action: allow}}\n",
			[]string{`t.yaml:6:5: cases[1].name: case name "a" is also used by cases[0]`}},
		{"json and body", head + "cases:\n  - {name: a, agent: x, request: {method: POST, url: https://h/, json: {}, body: 'x'}, expect: {action: allow}}\n",
			[]string{"json and body are mutually exclusive"}},
		{"hex number in json", head + "cases:\n  - {name: a, agent: x, request: {method: POST, url: https://h/, json: {n: 0x10}}, expect: {action: allow}}\n",
			[]string{`cases[0].request.json.n: "0x10" is not a JSON number`}},
		{"duplicate json key", head + "cases:\n  - {name: a, agent: x, request: {method: POST, url: https://h/, json: {n: 1, n: 2}}, expect: {action: allow}}\n",
			[]string{`key "n" is given twice`}},
		{"bad spend", head + "cases:\n  - {name: a, agent: x, spent_usd_today: 1e3, request: {method: GET, url: https://h/}, expect: {action: allow}}\n",
			[]string{`cases[0].spent_usd_today: "1e3" is not a decimal amount`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, errs := Load("t.yaml", []byte(tc.src))
			if f != nil || len(errs) == 0 {
				t.Fatalf("want errors, got none")
			}
			got := errs.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("want an error containing %q, got:\n%s", w, got)
				}
			}
		})
	}
}

func TestProxyView(t *testing.T) {
	f := &File{Defaults: Defaults{Region: "eu-west-1", Time: "2026-11-24T10:00:00Z"}}
	c := &Case{Agent: "billing-agent", ActingFor: []string{"support-agent", "root"}, SpentUSDToday: "19.98", Intent: "pay",
		Request: Request{Method: "POST", URL: "https://Pay.example:8443/a/%2e%2e/b?x=1#frag", JSON: []byte(`{}`), HasBody: true}}
	req, id, nctx, err := ProxyView(f, c, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if req.Authority != "Pay.example:8443" || req.Path != "/a/%2e%2e/b?x=1" || req.Scheme != "https" {
		t.Errorf("request split wrong: %+v", req)
	}
	if strings.Join(id.Chain, ",") != "billing-agent,support-agent,root" || id.Region != "eu-west-1" || id.Tenant != "acme" {
		t.Errorf("identity wrong: %+v", id)
	}
	if nctx.SpentMicroUSD != 19_980_000 || nctx.Region != "eu-west-1" || nctx.Time.Weekday().String() != "Tuesday" {
		t.Errorf("context wrong: %+v", nctx)
	}
	act, _ := engine.ToJSON(id.Claims)
	if !strings.Contains(string(act), `"act":{"act":{"sub":"support-agent"},"sub":"billing-agent"}`) || !strings.Contains(string(act), `"sub":"root"`) {
		t.Errorf("claims: %s", act)
	}
	hasCT, hasIntent := false, false
	for _, h := range req.Headers {
		hasCT = hasCT || h == [2]string{"content-type", "application/json"}
		hasIntent = hasIntent || h == [2]string{"x-aegis-intent", "pay"}
	}
	if !hasCT || !hasIntent {
		t.Errorf("headers: %v", req.Headers)
	}
	for _, bad := range []string{"no-scheme.example/x", "https:///nohost"} {
		c.Request.URL = bad
		if _, _, _, err := ProxyView(f, c, "acme"); err == nil {
			t.Errorf("URL %q: want an error", bad)
		}
	}
}

func TestMicroUSD(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "19.98": 19_980_000, "0.000001": 1, "20": 20_000_000} {
		if got, err := microUSD(in); err != nil || got != want {
			t.Errorf("microUSD(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1", "0.0000001", "abc", "1e400"} {
		if _, err := microUSD(bad); err == nil {
			t.Errorf("microUSD(%q): want an error", bad)
		}
	}
}
