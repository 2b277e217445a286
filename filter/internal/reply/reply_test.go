package reply

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecisionJSON(t *testing.T) {
	got := Decision{Error: CodePolicyViolation, DecisionID: "d1", PolicyVersion: "p@1"}.JSON()
	want := `{"error":"policy_violation","decision_id":"d1","reasons":[],"policy_version":"p@1"}`
	if string(got) != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	got = Decision{Error: CodeApprovalNeeded, DecisionID: "d", Reasons: []string{"<a>"}, PolicyVersion: "v", ApprovalID: "ap", RetryWith: "x-aegis-override"}.JSON()
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil || m["approval_id"] != "ap" || m["retry_with"] != "x-aegis-override" {
		t.Errorf("approval body %s (%v)", got, err)
	}
	if string(Error(CodeUnauthorized, `bad "token"`)) != `{"error":"unauthorized","message":"bad \"token\""}` {
		t.Errorf("Error = %s", Error(CodeUnauthorized, `bad "token"`))
	}
}

func TestMCP(t *testing.T) {
	meta := Meta{DecisionID: "d", Action: "deny"}
	body, ok := MCP([]RPC{{ID: []byte(`7`), Text: "no"}}, false, meta)
	if !ok {
		t.Fatal("no body")
	}
	var one map[string]any
	if err := json.Unmarshal(body, &one); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"jsonrpc": "2.0", "id": 7.0, "result": map[string]any{
		"isError": true, "content": []any{map[string]any{"type": "text", "text": "no"}},
		"_meta": map[string]any{"decision_id": "d", "action": "deny"}}}
	if !reflect.DeepEqual(one, want) {
		t.Errorf("got %s", body)
	}

	body, ok = MCP([]RPC{{ID: []byte(`"a"`), Text: "x"}, {ID: nil, Text: "notification"}, {ID: []byte(`2`), Text: "y"}}, true, meta)
	var batch []map[string]any
	if err := json.Unmarshal(body, &batch); !ok || err != nil || len(batch) != 2 || batch[0]["id"] != "a" || batch[1]["id"] != 2.0 {
		t.Errorf("batch %s (%v)", body, err)
	}

	if _, ok := MCP([]RPC{{Text: "only a notification"}}, true, meta); ok {
		t.Error("a batch of notifications got a JSON-RPC body")
	}
	if _, ok := MCP([]RPC{{ID: []byte(`{"x"`), Text: "bad id"}}, false, meta); ok {
		t.Error("an invalid id was echoed")
	}
}

func TestReasons(t *testing.T) {
	tests := []struct {
		action  string
		reasons []string
		want    string
	}{
		{"deny", nil, "denied by policy"},
		{"deny", []string{"a", "b"}, "denied by policy: a; b"},
		{"approval_needed", []string{"params.amount"}, "needs approval: params.amount"},
		{CodeRateLimited, []string{"r"}, "rate limited: r"},
	}
	for _, tt := range tests {
		if got := Reasons(tt.action, tt.reasons); got != tt.want {
			t.Errorf("Reasons(%s, %q) = %q", tt.action, tt.reasons, got)
		}
	}
}

// The encoding/json renderings these functions replaced: the bodies must
// stay byte for byte what clients got before.

func legacyDecision(d Decision) []byte {
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	b, _ := json.Marshal(d)
	return b
}

func legacyError(code, message string) []byte {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, message})
	return b
}

func legacyMCP(rpcs []RPC, batch bool, meta Meta) ([]byte, bool) {
	type content struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type result struct {
		IsError bool      `json:"isError"`
		Content []content `json:"content"`
		Meta    Meta      `json:"_meta"`
	}
	type response struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  result          `json:"result"`
	}
	out := make([]response, 0, len(rpcs))
	for _, r := range rpcs {
		if len(r.ID) == 0 || !json.Valid(r.ID) {
			continue
		}
		out = append(out, response{"2.0", json.RawMessage(r.ID), result{true, []content{{"text", r.Text}}, meta}})
	}
	if len(out) == 0 {
		return nil, false
	}
	var b []byte
	if batch {
		b, _ = json.Marshal(out)
	} else {
		b, _ = json.Marshal(out[0])
	}
	return b, true
}

var odd = []string{"", "plain", `q"uote\back`, "<script>&amp;</script>", "tab\tnl\ncr\r\x00\x1f\x7f", "\u2028\u2029", "é✓𝄞", "bad \xff utf-8 \xc3", "\ufffd"}

func TestSameBytesAsEncodingJSON(t *testing.T) {
	for _, s := range odd {
		for _, d := range []Decision{
			{Error: s, DecisionID: s, PolicyVersion: s},
			{Error: CodeApprovalNeeded, DecisionID: "d", Reasons: []string{s, s + "2"}, PolicyVersion: "v", ApprovalID: s, RetryWith: s, Message: s},
			{Error: CodeRateLimited, Reasons: []string{}, Message: s},
		} {
			if got, want := d.JSON(), legacyDecision(d); string(got) != string(want) {
				t.Errorf("Decision %+v:\n got %s\nwant %s", d, got, want)
			}
		}
		if got, want := Error(s, s), legacyError(s, s); string(got) != string(want) {
			t.Errorf("Error(%q):\n got %s\nwant %s", s, got, want)
		}
	}
	ids := []string{`7`, `-1.5e3`, `"a"`, `null`, `"<&>"`, "\"\u2028\"", " { \"b\" : [ 1 , \"x y\" ] }\n", `"\u003c\"\\"`, "\"\xff\"", `"\ud800"`, `{"a":1,"a":2}`, `{"x"`, `01`, `"` + "\x01" + `"`, ``, `1 2`}
	for _, id := range ids {
		for _, meta := range []Meta{{DecisionID: "d", Action: "deny"}, {DecisionID: "<d>", Action: "approval_needed", ApprovalID: "a&b"}} {
			for _, batch := range []bool{false, true} {
				rpcs := []RPC{{ID: []byte(id), Text: "why <not>"}, {Text: "notification"}, {ID: []byte(`3`), Text: "\u2028"}}
				got, ok := MCP(rpcs, batch, meta)
				want, wantOK := legacyMCP(rpcs, batch, meta)
				if ok != wantOK || string(got) != string(want) {
					t.Errorf("MCP id %q batch %v:\n got %s %v\nwant %s %v", id, batch, got, ok, want, wantOK)
				}
				got, ok = MCP(rpcs[:1], batch, meta)
				want, wantOK = legacyMCP(rpcs[:1], batch, meta)
				if ok != wantOK || string(got) != string(want) {
					t.Errorf("MCP lone id %q batch %v:\n got %s %v\nwant %s %v", id, batch, got, ok, want, wantOK)
				}
			}
		}
	}
}

func FuzzMCP(f *testing.F) {
	f.Add([]byte(`7`), "no", "d", true)
	f.Add([]byte(" {\"a\" : [\"<\u2028>\"]}"), "x\xff", "<&>", false)
	f.Add([]byte(`"\ud800"`), "", "", true)
	f.Fuzz(func(t *testing.T, id []byte, text, s string, batch bool) {
		meta := Meta{DecisionID: s, Action: s, ApprovalID: text}
		rpcs := []RPC{{ID: id, Text: text}, {ID: []byte(`1`), Text: s}}
		for _, rs := range [][]RPC{rpcs, rpcs[:1]} {
			got, ok := MCP(rs, batch, meta)
			want, wantOK := legacyMCP(rs, batch, meta)
			if ok != wantOK || string(got) != string(want) {
				t.Fatalf("id %q:\n got %s %v\nwant %s %v", id, got, ok, want, wantOK)
			}
		}
		d := Decision{Error: s, DecisionID: text, Reasons: []string{s, text}, Message: s}
		if got, want := d.JSON(), legacyDecision(d); string(got) != string(want) {
			t.Fatalf("Decision:\n got %s\nwant %s", got, want)
		}
	})
}
