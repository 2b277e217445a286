package approvals

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/tokens"
)

const issuer = "https://cp.test"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// paymentsOwners is the owner policy of tenant acme read from the payments
// example's source, as the policy store would hand it over.
func paymentsOwners(t *testing.T) SourceOwners {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "policies", "examples", "payments.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := SourceOwners(func(_ context.Context, tenant string) (string, []byte, error) {
		if tenant != "acme" {
			return "", nil, errors.New("no release")
		}
		return "payments.yaml", src, nil
	})
	for agent, want := range map[string]string{"billing-agent": "payments-team", "support-agent": "cx-team", "nobody": ""} {
		if owner, forbid, err := o.AgentOwner(context.Background(), "acme", agent); owner != want || !forbid || err != nil {
			t.Fatalf("owner of %s: %q %v %v, want %q", agent, owner, forbid, err, want)
		}
	}
	if _, _, err := o.AgentOwner(context.Background(), "globex", "billing-agent"); err == nil {
		t.Fatal("owner lookup without a policy did not fail")
	}
	wrongTenant := SourceOwners(func(context.Context, string) (string, []byte, error) { return "payments.yaml", src, nil })
	if _, _, err := wrongTenant.AgentOwner(context.Background(), "globex", "billing-agent"); err == nil {
		t.Fatal("another tenant's policy was used for owners")
	}
	return o
}

type slogWriter struct{ t *testing.T }

func (w slogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type env struct {
	svc    *Service
	tokens *tokens.Service
	srv    *httptest.Server
	clock  *clock
}

func newEnv(t *testing.T, d *db.DB, notifier Notifier) *env {
	t.Helper()
	kek := make([]byte, tokens.KEKSize)
	_, _ = rand.Read(kek)
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(slogWriter{t}, nil))
	ctx := context.Background()
	ts, err := tokens.New(ctx, tokens.Config{DB: d, Issuer: issuer, KeyEncryptionKey: kek, DefaultRegion: "eu-west-1",
		Registerer: reg, Logger: log, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(ctx, Config{DB: d, Overrides: ts, Agents: ts, Owners: paymentsOwners(t), Notifier: notifier, Registerer: reg, Logger: log, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	ts.Register(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sub := r.Header.Get("X-Test-Subject"); sub != "" {
			p := auth.Principal{Subject: sub, Tenant: r.Header.Get("X-Test-Tenant")}
			if sv := r.Header.Get("X-Test-Serves"); sv != "" {
				p.Serves = strings.Split(sv, ",")
			}
			if gs := r.Header.Get("X-Test-Groups"); gs != "" {
				p.Groups = strings.Split(gs, ",")
			}
			for _, role := range strings.Split(r.Header.Get("X-Test-Roles"), ",") {
				p.Roles = append(p.Roles, auth.Role(role))
			}
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		} else if p, ok, err := ts.AuthenticateAgent(r); err != nil {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		} else if ok {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &env{svc: svc, tokens: ts, srv: srv, clock: clk}
}

type caller struct {
	sub, tenant, roles string
	serves             string // a shared gateway's tenants, comma-separated
	groups             string // the API token's groups, comma-separated
	bearer             string
	fwd                string // forwarded agent token (x-aegis-agent-token)
}

var (
	anonymous = caller{}
	node1     = caller{sub: "node-1", tenant: "acme", roles: "node"}
	lead      = caller{sub: "lead-1", tenant: "acme", roles: "approver", groups: "payments-leads"}
	admin     = caller{sub: "alice", tenant: "acme", roles: "admin"}
)

func (e *env) do(t *testing.T, as caller, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if as.sub != "" {
		req.Header.Set("X-Test-Subject", as.sub)
		req.Header.Set("X-Test-Tenant", as.tenant)
		req.Header.Set("X-Test-Roles", as.roles)
		if as.serves != "" {
			req.Header.Set("X-Test-Serves", as.serves)
		}
		if as.groups != "" {
			req.Header.Set("X-Test-Groups", as.groups)
		}
	}
	if as.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+as.bearer)
	}
	if as.fwd != "" {
		req.Header.Set(HeaderAgentToken, as.fwd)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// call sends in as JSON and decodes the reply into out (any status).
func (e *env) call(t *testing.T, as caller, method, path string, in, out any) int {
	t.Helper()
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			t.Fatal(err)
		}
	}
	st, raw := e.do(t, as, method, path, body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, st, raw, err)
		}
	}
	return st
}

// agentToken mints an agent token for agent through the token service.
func (e *env) agentToken(t *testing.T, agent string, actingFor ...string) caller {
	t.Helper()
	var m tokens.MintResponse
	if st := e.call(t, admin, "POST", "/v1/tokens/agent", tokens.MintRequest{Agent: agent, ActingFor: actingFor}, &m); st != 201 {
		t.Fatalf("mint agent token: %d", st)
	}
	return caller{bearer: m.Token}
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func request(agent, tool, params string) CreateRequest {
	return CreateRequest{
		DecisionID: "dec-" + params, Tenant: "acme", Agent: agent, Chain: []string{agent}, Tool: tool, ParamsDigest: digest(params),
		Reasons: []string{"approval: amount above 5000"}, PolicyRevision: 3, Approvers: []string{"payments-leads"}, ExpiresIn: 900,
		RequestSummary: "POST payments.acme.internal/v1/payments",
	}
}

type errBody struct {
	Error, Message string
}

func histogramCount(t *testing.T, v *prometheus.HistogramVec, label string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := v.WithLabelValues(label).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
