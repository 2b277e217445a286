package tokens

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
)

const issuer = "https://cp.test"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	svc   *Service
	srv   *httptest.Server
	clock *clock
	reg   *prometheus.Registry
	d     *db.DB
}

type slogWriter struct{ t testing.TB }

func (w slogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newEnv starts the service on loopback behind a test middleware that takes
// the principal from X-Test-* headers (standing in for the server's
// authentication) or, for Bearer tokens, from AuthenticateAgent.
func newEnv(t testing.TB, d *db.DB, deleg DelegationPolicy) *env {
	t.Helper()
	kek := make([]byte, KEKSize)
	_, _ = rand.Read(kek)
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	reg := prometheus.NewRegistry()
	svc, err := New(context.Background(), Config{
		DB: d, Issuer: issuer, KeyEncryptionKey: kek, DefaultRegion: "eu-west-1",
		DefaultTTL: 10 * time.Minute, MaxTTL: 30 * time.Minute, Delegation: deleg,
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(slogWriter{t}, nil)), Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	srv := httptest.NewServer(testAuth(t, svc, mux))
	t.Cleanup(srv.Close)
	return &env{svc: svc, srv: srv, clock: clk, reg: reg, d: d}
}

func testAuth(t testing.TB, svc *Service, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sub := r.Header.Get("X-Test-Subject"); sub != "" {
			p := auth.Principal{Subject: sub, Tenant: r.Header.Get("X-Test-Tenant")}
			for _, role := range strings.Split(r.Header.Get("X-Test-Roles"), ",") {
				p.Roles = append(p.Roles, auth.Role(role))
			}
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		} else if p, ok, err := svc.AuthenticateAgent(r); err != nil {
			t.Logf("agent authentication refused: %v", err)
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		} else if ok {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
		next.ServeHTTP(w, r)
	})
}

// caller is who a test request is made as.
type caller struct {
	sub, tenant, roles string
	bearer             string
}

var (
	anonymous = caller{}
	acmeAdmin = caller{sub: "alice", tenant: "acme", roles: "admin"}
)

func (e *env) do(t *testing.T, as caller, method, path, ctype string, body []byte, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if as.sub != "" {
		req.Header.Set("X-Test-Subject", as.sub)
		req.Header.Set("X-Test-Tenant", as.tenant)
		req.Header.Set("X-Test-Roles", as.roles)
	}
	if as.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+as.bearer)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
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
	return resp.StatusCode, resp.Header, out
}

func (e *env) json(t *testing.T, as caller, method, path string, in, out any) int {
	t.Helper()
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			t.Fatal(err)
		}
	}
	st, _, raw := e.do(t, as, method, path, "application/json", body)
	if out != nil && st < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	if st >= 300 {
		t.Logf("%s %s -> %d %s", method, path, st, raw)
	}
	return st
}

// mintAgent mints a token for agent acting for principals, as the acme admin.
func (e *env) mintAgent(t *testing.T, req MintRequest) MintResponse {
	t.Helper()
	var out MintResponse
	if st := e.json(t, acmeAdmin, "POST", "/v1/tokens/agent", req, &out); st != http.StatusCreated {
		t.Fatalf("mint: status %d", st)
	}
	return out
}

func (e *env) exchange(t *testing.T, as caller, form url.Values) (int, map[string]any) {
	t.Helper()
	st, _, raw := e.do(t, as, "POST", "/v1/tokens/exchange", "application/x-www-form-urlencoded", []byte(form.Encode()))
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("exchange reply %q: %v", raw, err)
	}
	return st, m
}
