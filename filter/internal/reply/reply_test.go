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
