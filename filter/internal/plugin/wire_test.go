package plugin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/token"
)

var oddStrings = []string{"", "plain", `q"uote\back`, "<&>", "ctl \x01\n\t", "\u2028\u2029", "ünï𝄞", "bad \xff"}

// TestRequestsAsEncodingJSON: the control-plane requests are the bytes
// encoding/json wrote for the structs.
func TestRequestsAsEncodingJSON(t *testing.T) {
	for _, s := range oddStrings {
		rr := redeemRequest{Token: s, Tenant: s + "t", Agent: s, Tool: s, ParamsDigest: s}
		want, _ := json.Marshal(rr)
		if got := rr.appendJSON(nil); string(got) != string(want) {
			t.Errorf("redeem:\n got %s\nwant %s", got, want)
		}
		for _, ar := range []approvalRequest{
			{DecisionID: s, Tenant: s, Agent: s, Tool: s, ParamsDigest: s, RequestSummary: s},
			{DecisionID: "d", Chain: []string{s, "b"}, Reasons: []string{}, Approvers: []string{s}, PolicyRevision: -7, ExpiresIn: 1 << 40, RequestSummary: "GET " + s},
		} {
			want, _ := json.Marshal(ar)
			if got := ar.appendJSON(nil); string(got) != string(want) {
				t.Errorf("approval:\n got %s\nwant %s", got, want)
			}
		}
	}
}

func TestClaimsAsEncodingJSON(t *testing.T) {
	for _, s := range oddStrings {
		for _, c := range []token.Claims{
			{},
			{Subject: s, Tenant: s, ExpiresAt: 10, IssuedAt: 5, ID: s},
			{Issuer: s + "i", Subject: "a", Audience: token.Audience{s, "x"}, Tenant: "t", Org: s + "o", Scope: "a b", Region: s + "r",
				ExpiresAt: -1, NotBefore: 3, IssuedAt: 1 << 50, ID: "j", Act: &token.Actor{Sub: s, Act: &token.Actor{Sub: "p"}}},
			{Audience: token.Audience{}, Act: &token.Actor{}},
		} {
			want, err := json.Marshal(&c)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.AppendJSON(nil); string(got) != string(want) {
				t.Errorf("claims:\n got %s\nwant %s", got, want)
			}
		}
	}
}

func TestDecodeVMConfig(t *testing.T) {
	c, err := decodeVMConfig([]byte(` {"AEGIS_BUNDLE_PUBLIC_KEY":"b","AEGIS_STATE_PUBLIC_KEY":"s","AEGIS_NODE_SIGNING_KEY":"n","AEGIS_NODE_TOKEN":"t"} `))
	if err != nil || c != (vmConfig{Bundle: "b", State: "s", Node: "n", Token: "t"}) {
		t.Errorf("%+v %v", c, err)
	}
	if c, err := decodeVMConfig([]byte(`{}`)); err != nil || c != (vmConfig{}) {
		t.Errorf("empty: %+v %v", c, err)
	}
	for _, tc := range []struct{ doc, want string }{
		{`{"AEGIS_BUNDLE_PUBLIC_KEY":"b","X":1}`, `X (line 1, column 36): unknown member`},
		{`{"aegis_bundle_public_key":"b"}`, `aegis_bundle_public_key (line 1, column 28): unknown member`},
		{`{"AEGIS_NODE_TOKEN":"a","AEGIS_NODE_TOKEN":"b"}`, `duplicate key "AEGIS_NODE_TOKEN"`},
		{`{"AEGIS_NODE_TOKEN":7}`, `AEGIS_NODE_TOKEN (line 1, column 21): want a string, got number`},
		{`{"AEGIS_NODE_TOKEN":null}`, `want a string, got null`},
		{`{"AEGIS_NODE_TOKEN":"a"} {}`, `unexpected data after the JSON value`},
		{`["AEGIS_NODE_TOKEN"]`, `want an object, got array`},
		{`{"AEGIS_NODE_TOKEN":"` + "\xff" + `"}`, `invalid UTF-8`},
	} {
		if _, err := decodeVMConfig([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// TestDecodeControlPlane: answers are read strictly, but members the
// plugin does not know are ignored, as encoding/json ignored them.
func TestDecodeControlPlane(t *testing.T) {
	if n, err := decodeAuditConflict([]byte(`{"error":"gap","expected_seq":42,"detail":{"x":[1]}}`)); err != nil || n != 42 {
		t.Errorf("409: %d %v", n, err)
	}
	if id, err := decodeApprovalCreated([]byte(`{"approval_id":"ap-1","status":"pending"}`)); err != nil || id != "ap-1" {
		t.Errorf("created: %q %v", id, err)
	}
	if r, err := decodeApprovalStatus([]byte(`{"status":"approved","override_token":"tok","approval_id":"a","decided_by":"x"}`)); err != nil || r != (approvalStatus{"approved", "tok"}) {
		t.Errorf("status: %+v %v", r, err)
	}
	if r, err := decodeApprovalStatus([]byte(`{"status":"pending"}`)); err != nil || r != (approvalStatus{Status: "pending"}) {
		t.Errorf("pending: %+v %v", r, err)
	}
	for _, doc := range []string{
		`{"expected_seq":1,"expected_seq":2}`,
		`{"expected_seq":"2"}`,
		`{"expected_seq":2.0}`,
		`{"expected_seq":1e2}`,
		`{"expected_seq":99999999999999999999}`,
		`{"expected_seq":null}`,
		`{"expected_seq":2,"Expected_Seq":3}`,
		`{"Expected_Seq":3}`,
		`[{"expected_seq":2}]`,
		`{"expected_seq":2} x`,
		``,
	} {
		if n, err := decodeAuditConflict([]byte(doc)); err == nil {
			t.Errorf("409 %s: accepted, %d", doc, n)
		}
	}
	for _, doc := range []string{
		`{"approval_id":"a","approval_id":"b"}`,
		`{"approval_id":1}`,
		`{"approval_id":"a","APPROVAL_ID":"b"}`,
		`{"approval_id":"` + "\xff" + `"}`,
		`"a"`,
	} {
		if id, err := decodeApprovalCreated([]byte(doc)); err == nil {
			t.Errorf("created %s: accepted, %q", doc, id)
		}
	}
	for _, doc := range []string{
		`{"status":"approved","status":"denied"}`,
		`{"status":"approved","override_token":["t"]}`,
		`{"status":"approved","Override_Token":"t"}`,
		`{"status":"approved",}`,
	} {
		if r, err := decodeApprovalStatus([]byte(doc)); err == nil {
			t.Errorf("status %s: accepted, %+v", doc, r)
		}
	}
}

// FuzzDecodeControlPlane: whatever is accepted, encoding/json read the
// same way.
func FuzzDecodeControlPlane(f *testing.F) {
	f.Add([]byte(`{"status":"approved","override_token":"tok","x":1}`))
	f.Add([]byte(`{"approval_id":"a","expected_seq":3}`))
	f.Add([]byte(`{"expected_seq":2,"Expected_Seq":3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := decodeApprovalStatus(data); err == nil {
			var old struct {
				Status        string `json:"status"`
				OverrideToken string `json:"override_token"`
			}
			if err := json.Unmarshal(data, &old); err != nil || old.Status != r.Status || old.OverrideToken != r.OverrideToken {
				t.Fatalf("status %q: %+v, encoding/json %+v (%v)", data, r, old, err)
			}
		}
		if id, err := decodeApprovalCreated(data); err == nil {
			var old struct {
				ApprovalID string `json:"approval_id"`
			}
			if err := json.Unmarshal(data, &old); err != nil || old.ApprovalID != id {
				t.Fatalf("created %q: %q, encoding/json %q (%v)", data, id, old.ApprovalID, err)
			}
		}
		if n, err := decodeAuditConflict(data); err == nil {
			var old struct {
				ExpectedSeq int64 `json:"expected_seq"`
			}
			if err := json.Unmarshal(data, &old); err != nil || old.ExpectedSeq != n {
				t.Fatalf("409 %q: %d, encoding/json %d (%v)", data, n, old.ExpectedSeq, err)
			}
		}
		if c, err := decodeVMConfig(data); err == nil {
			var old struct {
				Bundle string `json:"AEGIS_BUNDLE_PUBLIC_KEY"`
				State  string `json:"AEGIS_STATE_PUBLIC_KEY"`
				Node   string `json:"AEGIS_NODE_SIGNING_KEY"`
				Token  string `json:"AEGIS_NODE_TOKEN"`
			}
			if err := json.Unmarshal(data, &old); err != nil || c != (vmConfig{old.Bundle, old.State, old.Node, old.Token}) {
				t.Fatalf("vm %q: %+v, encoding/json %+v (%v)", data, c, old, err)
			}
		}
	})
}
