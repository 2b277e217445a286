package plugin

import (
	"encoding/json"
	"testing"
)

// TestStateRecordJSON: the hand-written encoding is what encoding/json
// writes for the same record, escapes and omissions included.
func TestStateRecordJSON(t *testing.T) {
	records := []stateRecord{
		{Action: "allow"},
		{ID: "d1", Action: "deny", Reasons: []string{`quote " and \ back`, "ctl \x01\n", "ünï"}, RuleIDs: []string{"a", "b"},
			Tenant: "acme", Agent: "bot", Tool: "t", Policy: "p@1", DecisionNS: 1234},
		{ID: "d2", Action: "allow", ShadowAction: "deny", Tenant: "t", Agent: "a", ApprovalID: "ap", OverrideJTI: "j", Reasons: []string{}},
		{Action: "allow", Tenant: "<&>", Agent: "\u2028"},
	}
	for _, r := range records {
		got := r.appendJSON(nil)
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		want, _ := json.Marshal(r)
		json.Unmarshal(want, &b)
		ga, _ := json.Marshal(a)
		gb, _ := json.Marshal(b)
		if string(ga) != string(gb) {
			t.Errorf("appendJSON %s\n encoding/json %s", got, want)
		}
	}
}
