package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/e2e/internal/stack"
)

const iban = "DE89370400440532013000"

// binDir holds the binaries built once for every test of the package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aegis-e2e-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func startStack(t *testing.T, tenants ...stack.Tenant) *stack.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts real processes")
	}
	return startStackOn(t, dbtest.NewDSN(t, db.Postgres), tenants...)
}

// startStackOn starts a stack whose control plane uses the database dsn.
func startStackOn(t *testing.T, dsn string, tenants ...stack.Tenant) *stack.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if keep := os.Getenv("AEGIS_E2E_DIR"); keep != "" {
		// Keep logs and data for a look after the run.
		dir = filepath.Join(keep, t.Name())
	}
	s, err := stack.Start(ctx, stack.Options{
		Dir:      dir,
		BinDir:   binDir,
		Database: dsn,
		Tenants:  tenants,
		Logf:     t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range s.Edges {
				if e.Proc != nil {
					t.Logf("edge %s log tail:\n%s", e.Name, e.Proc.Tail(40))
				}
			}
			if s.CP != nil {
				t.Logf("control plane log tail:\n%s", s.CP.Tail(40))
			}
		}
		s.Close()
	})
	return s
}

func payment(amount float64, extra map[string]any) map[string]any {
	m := map[string]any{"amount": amount, "currency": "EUR", "beneficiary_iban": iban}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// pay sends one payments.create call of amount through gw as the token's
// agent.
func pay(t *testing.T, s *stack.Stack, gw *stack.Edge, token string, amount float64) *stack.Reply {
	t.Helper()
	r, err := s.Call(context.Background(), gw, "POST", "payments.acme.internal", "/v1/payments", token, payment(amount, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// eventually retries check every 200 ms until it reports done, failing the
// test with its last message after timeout.
func eventually(t *testing.T, timeout time.Duration, check func() (done bool, msg string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, msg := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPaymentsThroughTheEdge runs the payments scenarios of the demo as
// assertions: a real control plane on Postgres, a real edge process
// hosting the filter, tokens from the token service.
func TestPaymentsThroughTheEdge(t *testing.T) {
	s := startStack(t, stack.Tenant{Name: "acme", Policy: "payments.yaml"})
	ctx := context.Background()
	edge, err := s.StartEdge(ctx, "gw", "acme")
	if err != nil {
		t.Fatal(err)
	}
	billing, err := s.AgentToken(ctx, "acme", "billing-agent")
	if err != nil {
		t.Fatal(err)
	}
	call := func(token string, body any, extra http.Header) *stack.Reply {
		t.Helper()
		r, err := s.Call(ctx, edge, "POST", "payments.acme.internal", "/v1/payments", token, body, extra)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("allow", func(t *testing.T) {
		r := call(billing, payment(120.5, nil), nil)
		if r.Status != http.StatusCreated {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
	})
	t.Run("deny never reaches the tool", func(t *testing.T) {
		before := s.Payments.Count("payments.create")
		r := call(billing, payment(60000, nil), nil)
		if r.Status != http.StatusForbidden || r.JSON()["error"] != "policy_violation" {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if !strings.Contains(string(r.Body), "params.amount") {
			t.Errorf("reasons do not name the parameter: %s", r.Body)
		}
		if s.Payments.Count("payments.create") != before {
			t.Fatal("a denied call reached the tool")
		}
	})
	t.Run("sanitize forwards the redacted body", func(t *testing.T) {
		r := call(billing, payment(10, map[string]any{"memo": "card 4111 1111 1111 1111 thanks"}), nil)
		if r.Status != http.StatusCreated {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		calls := s.Payments.Calls()
		var got map[string]any
		if err := json.Unmarshal(calls[len(calls)-1].Body, &got); err != nil {
			t.Fatal(err)
		}
		if got["memo"] != "card [card] thanks" {
			t.Fatalf("tool received memo %q", got["memo"])
		}
	})
	t.Run("identity attacks never reach the tool", func(t *testing.T) {
		before := len(s.Payments.Calls())
		for name, hdr := range map[string]http.Header{
			"no token":        {},
			"alg none":        {"Authorization": {"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJiaWxsaW5nLWFnZW50IiwidGVuYW50IjoiYWNtZSJ9."}},
			"garbage":         {"Authorization": {"Bearer not-a-jwt"}},
			"identity header": {"X-Aegis-Agent": {"billing-agent"}, "X-Aegis-Tenant": {"acme"}},
		} {
			r := call("", payment(1, nil), hdr)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("%s: status %d: %s", name, r.Status, r.Body)
			}
		}
		if len(s.Payments.Calls()) != before {
			t.Fatal("an unauthenticated call reached the tool")
		}
	})
	t.Run("approval, override once", func(t *testing.T) {
		body := payment(7500, nil)
		r := call(billing, body, nil)
		if r.Status != http.StatusForbidden || r.JSON()["error"] != "approval_needed" {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		id, _ := r.JSON()["approval_id"].(string)
		if id == "" {
			t.Fatalf("no approval id: %s", r.Body)
		}
		if err := s.Role("acme", "approver").JSON(ctx, "POST", "/v1/approvals/"+id+"/approve", nil, nil, http.StatusOK); err != nil {
			t.Fatal(err)
		}
		var st struct {
			Status        string `json:"status"`
			OverrideToken string `json:"override_token"`
		}
		if err := s.Admin.With(billing).JSON(ctx, "GET", "/v1/approvals/"+id, nil, &st, http.StatusOK); err != nil {
			t.Fatal(err)
		}
		if st.Status != "approved" || st.OverrideToken == "" {
			t.Fatalf("approval %+v", st)
		}
		override := http.Header{"X-Aegis-Override": {st.OverrideToken}}
		if r := call(billing, body, override); r.Status != http.StatusCreated {
			t.Fatalf("retry with override: %d %s", r.Status, r.Body)
		}
		if r := call(billing, body, override); r.Status == http.StatusCreated {
			t.Fatalf("override accepted twice: %s", r.Body)
		}
		other := payment(7600, nil)
		if r := call(billing, other, override); r.Status == http.StatusCreated {
			t.Fatalf("override accepted for other parameters: %s", r.Body)
		}
	})
	t.Run("audit reaches the control plane", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var out struct {
				Events []map[string]any `json:"events"`
			}
			err := s.Role("acme", "auditor").JSON(ctx, "GET", "/v1/audit/events?tenant=acme", nil, &out)
			actions := map[string]int{}
			for _, e := range out.Events {
				a, _ := e["action"].(string)
				actions[a]++
			}
			if err == nil && actions["allow"] > 0 && actions["deny"] > 0 && actions["sanitize"] > 0 && actions["approval_needed"] > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("audit events not shipped: %v, actions %v", err, actions)
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
}
