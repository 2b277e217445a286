package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/aegis-mesh/aegis/internal/testrun"
)

var secret = []byte("0123456789abcdef-secret")

// receiver is a loopback webhook endpoint that checks signatures and
// answers from a script of status codes (the last one repeats).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	script []int
	mu     sync.Mutex
	calls  int
	ids    map[string]int
	got    chan []byte
}

func newReceiver(t *testing.T, script ...int) *receiver {
	r := &receiver{t: t, script: script, ids: map[string]int{}, got: make(chan []byte, 16)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := Verify(secret, req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		st := r.script[min(r.calls, len(r.script)-1)]
		r.calls++
		r.ids[req.Header.Get(HeaderDelivery)]++
		r.mu.Unlock()
		w.WriteHeader(st)
		if st < 300 || st == http.StatusBadRequest {
			r.got <- body
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) wait(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-r.got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery arrived")
		return nil
	}
}

func event() Event {
	return Event{
		Type: "approval.created", Time: time.Unix(1700000000, 0).UTC(), Tenant: "acme", ApprovalID: "ap_1", Status: "pending",
		Agent: "billing-agent", Chain: []string{"billing-agent", "support-agent"}, Tool: "payments.create",
		Reasons: []string{"amount above 5000"}, Approvers: []string{"payments-leads"}, RequestSummary: "POST payments/<@U123>",
		Batched: 2, ExpiresAt: time.Unix(1700000900, 0).UTC(),
	}
}

func start(t *testing.T, reg *prometheus.Registry, targets ...Target) *Notifier {
	t.Helper()
	n, err := New(context.Background(), Config{Targets: targets, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond, MaxAttempts: 4, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	testrun.Background(t, n.Run)
	return n
}

// TestFormats: each format arrives signed and carries the approval.
func TestFormats(t *testing.T) {
	slack, teams, generic := newReceiver(t, 200), newReceiver(t, 204), newReceiver(t, 202)
	reg := prometheus.NewRegistry()
	n := start(t, reg,
		Target{Name: "slack", URL: slack.srv.URL, Format: FormatSlack, Secret: secret},
		Target{Name: "teams", URL: teams.srv.URL, Format: FormatTeams, Secret: secret},
		Target{Name: "siem", URL: generic.srv.URL, Format: FormatJSON, Secret: secret})
	n.Notify(event())

	var s struct {
		Text   string
		Blocks []struct {
			Type string
			Text struct{ Type, Text string }
		}
	}
	if err := json.Unmarshal(slack.wait(t), &s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Text, "billing-agent") || len(s.Blocks) != 2 || !strings.Contains(s.Blocks[1].Text.Text, "ap_1") {
		t.Errorf("slack payload %+v", s)
	}
	if strings.Contains(s.Blocks[1].Text.Text, "<@U123>") || !strings.Contains(s.Blocks[1].Text.Text, "&lt;@U123&gt;") {
		t.Errorf("slack payload lets an agent-controlled string mention users: %q", s.Blocks[1].Text.Text)
	}

	var m struct {
		Type        string
		Attachments []struct {
			ContentType string
			Content     struct {
				Type string
				Body []map[string]any
			}
		}
	}
	if err := json.Unmarshal(teams.wait(t), &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "message" || len(m.Attachments) != 1 || m.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" ||
		m.Attachments[0].Content.Type != "AdaptiveCard" || len(m.Attachments[0].Content.Body) != 2 {
		t.Errorf("teams payload %+v", m)
	}

	var g Event
	if err := json.Unmarshal(generic.wait(t), &g); err != nil {
		t.Fatal(err)
	}
	want := event()
	if g.ApprovalID != want.ApprovalID || g.Batched != 2 || !g.ExpiresAt.Equal(want.ExpiresAt) || g.Chain[1] != "support-agent" {
		t.Errorf("generic payload %+v", g)
	}
}

// TestRetries: 5xx and 429 are retried with the same delivery id until
// success or the attempt limit; other 4xx are not retried.
func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		script    []int
		calls     int
		delivered float64
		failed    float64
	}{
		{"recovers", []int{503, 429, 200}, 3, 1, 0},
		{"gives up", []int{500}, 4, 0, 1},
		{"permanent", []int{400}, 1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t, tc.script...)
			reg := prometheus.NewRegistry()
			n := start(t, reg, Target{Name: "x", URL: r.srv.URL, Format: FormatJSON, Secret: secret})
			n.Notify(event())
			if tc.delivered == 1 || tc.script[0] == 400 {
				r.wait(t)
			}
			// Wait for the outcome to be counted (a guard, not a timing check).
			deadline := time.After(10 * time.Second)
			for counter(t, n.deliveries, "x", "delivered")+counter(t, n.deliveries, "x", "failed") == 0 {
				select {
				case <-deadline:
					t.Fatal("no outcome counted")
				case <-time.After(2 * time.Millisecond):
				}
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.calls != tc.calls || len(r.ids) != 1 {
				t.Errorf("receiver saw %d calls with %d delivery ids, want %d calls, one id", r.calls, len(r.ids), tc.calls)
			}
			if d, f := counter(t, n.deliveries, "x", "delivered"), counter(t, n.deliveries, "x", "failed"); d != tc.delivered || f != tc.failed {
				t.Errorf("delivered %v failed %v, want %v %v", d, f, tc.delivered, tc.failed)
			}
		})
	}
}

// TestQueueFull: Notify never blocks; overflow is dropped and counted.
func TestQueueFull(t *testing.T) {
	n, err := New(context.Background(), Config{Targets: []Target{{Name: "x", URL: "http://127.0.0.1:1/", Format: FormatJSON, Secret: secret}}, QueueSize: 1, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(event())
	n.Notify(event())
	if got := counter(t, n.deliveries, "x", "dropped"); got != 1 {
		t.Errorf("dropped %v, want 1", got)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"a":1}`)
	now := time.Unix(1700000000, 0)
	ts := "1700000000"
	good := Sign(secret, ts, body)
	for _, tc := range []struct {
		name, ts, sig string
		body          []byte
		ok            bool
	}{
		{"good", ts, good, body, true},
		{"other body", ts, good, []byte(`{"a":2}`), false},
		{"other timestamp", "1700000001", good, body, false},
		{"stale", "1699990000", Sign(secret, "1699990000", body), body, false},
		{"no prefix", ts, strings.TrimPrefix(good, "sha256="), body, false},
		{"other secret", ts, Sign([]byte("another-secret-of-16"), ts, body), body, false},
		{"bad timestamp", "x", good, body, false},
	} {
		if err := Verify(secret, tc.ts, tc.sig, tc.body, now, 5*time.Minute); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// The signature is over timestamp "." body exactly (the documented format).
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "." + string(body)))
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); good != want {
		t.Errorf("signature %q, want %q", good, want)
	}
}

func TestConfigValidate(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, tc := range []struct {
		name string
		t    Target
	}{
		{"no name", Target{URL: "https://x", Format: FormatJSON, Secret: secret}},
		{"ftp", Target{Name: "a", URL: "ftp://x", Format: FormatJSON, Secret: secret}},
		{"no host", Target{Name: "a", URL: "https://", Format: FormatJSON, Secret: secret}},
		{"format", Target{Name: "a", URL: "https://x", Format: "xml", Secret: secret}},
		{"short secret", Target{Name: "a", URL: "https://x", Format: FormatJSON, Secret: []byte("short")}},
	} {
		if _, err := New(context.Background(), Config{Targets: []Target{tc.t}, Registerer: reg}); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// counter reads one counter of a vector.
func counter(t *testing.T, v *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := v.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
