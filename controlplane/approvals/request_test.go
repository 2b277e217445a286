package approvals

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/webhook"
)

// newHTTPReceiver starts a loopback webhook receiver that checks each
// delivery's signature and passes the generic JSON event on.
func newHTTPReceiver(t *testing.T, secret []byte, got chan<- webhook.Event) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ev, ok := readDelivery(t, secret, w, r); ok {
			got <- ev
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// readDelivery checks a delivery's signature and decodes its generic JSON
// event. A bad signature is a test error, answered 401, and false.
func readDelivery(t *testing.T, secret []byte, w http.ResponseWriter, r *http.Request) (webhook.Event, bool) {
	body, _ := io.ReadAll(r.Body)
	if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
		t.Errorf("delivery signature: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return webhook.Event{}, false
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Errorf("delivery body: %v", err)
	}
	return ev, true
}

func TestDecodeCreate(t *testing.T) {
	d := digest("x")
	ok := `{"decision_id":"d1","tenant":"acme","agent":"a","chain":["a","p"],"tool":"payments.create","params_digest":"` + d +
		`","reasons":["r"],"policy_revision":2,"approvers":["leads"],"expires_in":60,"request_summary":"POST /x"}`
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"full", ok, true},
		{"minimal", `{"decision_id":"d","agent":"a","tool":"t","params_digest":"` + d + `"}`, true},
		{"trailing", ok + `{}`, false},
		{"array", `[` + ok + `]`, false},
		{"unknown member", strings.Replace(ok, `"tool"`, `"priority":1,"tool"`, 1), false},
		{"upper-case digest", strings.Replace(ok, d, strings.ToUpper(d), 1), false},
		{"short digest", strings.Replace(ok, d, d[:63], 1), false},
		{"no decision id", strings.Replace(ok, `"d1"`, `""`, 1), false},
		{"agent with space", strings.Replace(ok, `"agent":"a"`, `"agent":"a b"`, 1), false},
		{"chain repeats", strings.Replace(ok, `["a","p"]`, `["a","a"]`, 1), false},
		{"chain too long", strings.Replace(ok, `["a","p"]`, `["a","b","c","d","e","f"]`, 1), false},
		{"tool with slash", strings.Replace(ok, "payments.create", "payments/create", 1), false},
		{"negative expiry", strings.Replace(ok, `"expires_in":60`, `"expires_in":-1`, 1), false},
		{"fractional revision", strings.Replace(ok, `"policy_revision":2`, `"policy_revision":2.5`, 1), false},
		{"control char in summary", strings.Replace(ok, `POST /x`, `POST /x\u0007`, 1), false},
		{"line separator in reason", strings.Replace(ok, `["r"]`, `["a\u2028b"]`, 1), false},
		{"too large", `{"decision_id":"` + strings.Repeat("a", MaxCreateBody) + `"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeCreate([]byte(tc.body))
			if (err == nil) != tc.ok {
				t.Errorf("err %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func FuzzDecodeCreate(f *testing.F) {
	d := digest("x")
	f.Add(`{"decision_id":"d","agent":"a","tool":"t","params_digest":"` + d + `"}`)
	f.Add(`{"decision_id":"d","agent":"a","chain":["a","b"],"tool":"x.y","params_digest":"` + d + `","reasons":["\u00e9"],"request_summary":"GET /"}`)
	f.Add(`{"decision_id":1}`)
	f.Add(`{"a":` + strings.Repeat("[", 100))
	f.Fuzz(func(t *testing.T, body string) {
		req, err := DecodeCreate([]byte(body))
		if err != nil {
			return
		}
		// Whatever is accepted is safe to store and to show approvers.
		if !validName(req.Agent) || !reDigest.MatchString(req.ParamsDigest) || !printable(req.RequestSummary, 1024) || !printable(req.DecisionID, 128) {
			t.Fatalf("accepted %q as %+v", body, req)
		}
		for _, r := range req.Reasons {
			if !printable(r, 1024) {
				t.Fatalf("accepted reason %q", r)
			}
		}
		if len(req.Chain) > 0 && req.Chain[0] != req.Agent {
			t.Fatalf("accepted chain %v for agent %q", req.Chain, req.Agent)
		}
	})
}
