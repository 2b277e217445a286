package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
	"go.yaml.in/yaml/v3"

	"github.com/aegis-mesh/aegis/engine"
)

// The example tables are run here through OPA topdown over the generated
// Rego, with a minimal input builder written for this test (the real one is
// package input; the integrator's policytest runs the same tables through the
// engine). This proves the compiler's semantics; it does not test the engine.

type tableFile struct {
	Policy   string `yaml:"policy"`
	Defaults struct {
		Region string `yaml:"region"`
		Time   string `yaml:"time"`
	} `yaml:"defaults"`
	Cases []tableCase `yaml:"cases"`
}

type tableCase struct {
	Name          string   `yaml:"name"`
	Agent         string   `yaml:"agent"`
	ActingFor     []string `yaml:"acting_for"`
	Region        string   `yaml:"region"`
	Intent        string   `yaml:"intent"`
	Time          string   `yaml:"time"`
	SpentUSDToday *float64 `yaml:"spent_usd_today"`
	Request       struct {
		Method string `yaml:"method"`
		URL    string `yaml:"url"`
		JSON   any    `yaml:"json"`
		Body   string `yaml:"body"`
	} `yaml:"request"`
	Expect struct {
		Action               string   `yaml:"action"`
		ReasonsInclude       []string `yaml:"reasons_include"`
		ShadowAction         string   `yaml:"shadow_action"`
		ShadowReasonsInclude []string `yaml:"shadow_reasons_include"`
		ForwardedJSON        any      `yaml:"forwarded_json"`
	} `yaml:"expect"`
}

// yamlToJSON round-trips through JSON so numbers become json.Number, as the
// input builder produces them.
func yamlToJSON(t *testing.T, v any) ([]byte, any) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return raw, out
}

func buildInputs(t *testing.T, tf *tableFile, c *tableCase, eps []MCPEndpoint) []map[string]any {
	t.Helper()
	region := c.Region
	if region == "" {
		region = tf.Defaults.Region
	}
	now := c.Time
	if now == "" {
		now = tf.Defaults.Time
	}
	ts, err := time.Parse(time.RFC3339, now)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(c.Request.URL)
	if err != nil {
		t.Fatal(err)
	}
	query := map[string]any{}
	for k, v := range u.Query() {
		query[k] = v[0]
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	chain := append([]any{c.Agent}, toAny(c.ActingFor)...)
	ctx := map[string]any{"region": region, "time": now, "time_ns": ts.UnixNano(), "intent": c.Intent, "state_seq": 0}
	if c.SpentUSDToday != nil {
		micro := int64(*c.SpentUSDToday*1e6 + 0.5)
		ctx["budget"] = map[string]any{"spent_micro_usd_today": micro}
	}
	req := map[string]any{"method": c.Request.Method, "scheme": u.Scheme, "host": u.Hostname(), "path": path, "query": query, "headers": map[string]any{}, "body_type": "none"}
	base := map[string]any{
		"version": 1,
		"agent":   map[string]any{"id": c.Agent, "tenant": "t", "chain": chain, "region": region},
		"request": req,
		"context": ctx,
	}
	var body any
	hasBody := false
	if c.Request.JSON != nil {
		_, body = yamlToJSON(t, c.Request.JSON)
		hasBody = true
		req["body_type"] = "json"
	} else if c.Request.Body != "" {
		dec := json.NewDecoder(strings.NewReader(c.Request.Body))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			req["body_type"] = "other"
			body = nil
		} else {
			req["body_type"] = "json"
			hasBody = true
		}
	}
	var server string
	for _, ep := range eps {
		if ep.Host == u.Hostname() && ep.Path == path {
			server = ep.Server
		}
	}
	if server == "" {
		if hasBody {
			base["params"] = body
		}
		return []map[string]any{base}
	}
	elems := []any{body}
	if arr, ok := body.([]any); ok {
		elems = arr
	}
	var out []map[string]any
	for _, el := range elems {
		in := map[string]any{}
		for k, v := range base {
			in[k] = v
		}
		mcp := map[string]any{"server": server, "kind": "invalid"}
		if m, ok := el.(map[string]any); ok && m["jsonrpc"] == "2.0" {
			method, _ := m["method"].(string)
			switch {
			case method != "":
				mcp["kind"], mcp["method"] = "request", method
				if p, ok := m["params"].(map[string]any); ok && method == "tools/call" {
					mcp["tool"] = p["name"]
					if args, ok := p["arguments"]; ok {
						in["params"] = args
					}
				}
			case m["result"] != nil || m["error"] != nil:
				mcp["kind"] = "response"
			}
		}
		in["mcp"] = mcp
		out = append(out, in)
	}
	return out
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

var strictness = map[string]int{"allow": 0, "sanitize": 1, "approval_needed": 2, "deny": 3}

// evaluator runs one compiled policy on OPA topdown and on the engine.
type evaluator struct {
	pq  rego.PreparedEvalQuery
	pol *engine.Policy
}

func newEvaluator(t *testing.T, c *Compiled) *evaluator {
	t.Helper()
	pq, err := c.Topdown(context.Background(), "aegis/decision")
	if err != nil {
		t.Fatal(err)
	}
	data, err := engine.FromJSON(c.Data)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := engine.Load(c.Plan, data)
	if err != nil {
		t.Fatalf("engine load: %v", err)
	}
	return &evaluator{pq: pq, pol: pol}
}

// evalDecision returns OPA topdown's decision, after checking that the
// engine, running the plan, decides exactly the same.
func (ev *evaluator) evalDecision(t *testing.T, input map[string]any) map[string]any {
	t.Helper()
	raw, in := yamlToJSON(t, input)
	rs, err := ev.pq.Eval(context.Background(), regoInput(in))
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("decision undefined for input %v", input)
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("decision is %T", rs[0].Expressions[0].Value)
	}
	want, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	ein, err := engine.FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	v, defined, err := ev.pol.EvalOne(context.Background(), "aegis/decision", ein)
	if err != nil || !defined {
		t.Fatalf("engine eval: defined=%v err=%v", defined, err)
	}
	got, err := engine.ToJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, got, want) {
		t.Errorf("engine and OPA topdown disagree:\nengine:  %s\ntopdown: %s", got, want)
	}
	return d
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func includesAll(t *testing.T, what string, got []string, want []string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.Contains(strings.ToLower(g), strings.ToLower(w)) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %q do not include %q", what, got, w)
		}
	}
}

func applyRedactions(t *testing.T, body any, redactions any) any {
	t.Helper()
	obj, ok := body.(map[string]any)
	if !ok {
		t.Fatalf("redacting a non-object body %T", body)
	}
	for _, r := range redactions.([]any) {
		rm := r.(map[string]any)
		path := strs(rm["path"])
		obj[path[0]] = rm["value"]
	}
	return obj
}

func TestExampleTables(t *testing.T) {
	for _, table := range []string{"payments_test.yaml", "mcp-devops_test.yaml"} {
		t.Run(table, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("examples", table))
			if err != nil {
				t.Fatal(err)
			}
			var tf tableFile
			if err := yaml.Unmarshal(raw, &tf); err != nil {
				t.Fatal(err)
			}
			ps, errs := LoadPath(filepath.Join("examples", tf.Policy))
			if errs != nil {
				t.Fatal(errs)
			}
			comp, err := Compile(context.Background(), ps, Options{SkipWasm: true})
			if err != nil {
				t.Fatal(err)
			}
			ev := newEvaluator(t, comp)
			for i := range tf.Cases {
				c := &tf.Cases[i]
				t.Run(c.Name, func(t *testing.T) {
					inputs := buildInputs(t, &tf, c, comp.MCPEndpoints)
					var final map[string]any
					var reasons, shadowReasons []string
					for _, in := range inputs {
						d := ev.evalDecision(t, in)
						reasons = append(reasons, strs(d["reasons"])...)
						shadowReasons = append(shadowReasons, strs(d["shadow_reasons"])...)
						if final == nil || strictness[d["action"].(string)] > strictness[final["action"].(string)] {
							final = d
						}
					}
					if os.Getenv("AEGIS_DEBUG") != "" {
						t.Logf("%v", final)
					}
					if got := final["action"]; got != c.Expect.Action {
						t.Fatalf("action = %v, want %s; decision %v", got, c.Expect.Action, final)
					}
					includesAll(t, "reasons", reasons, c.Expect.ReasonsInclude)
					if c.Expect.ShadowAction != "" && final["shadow_action"] != c.Expect.ShadowAction {
						t.Errorf("shadow_action = %v, want %s", final["shadow_action"], c.Expect.ShadowAction)
					}
					includesAll(t, "shadow_reasons", shadowReasons, c.Expect.ShadowReasonsInclude)
					if c.Expect.ForwardedJSON != nil {
						_, body := yamlToJSON(t, c.Request.JSON)
						_, want := yamlToJSON(t, c.Expect.ForwardedJSON)
						got := applyRedactions(t, body, final["redactions"])
						if !reflect.DeepEqual(got, want) {
							t.Errorf("forwarded body = %v, want %v", got, want)
						}
					}
				})
			}
		})
	}
}
