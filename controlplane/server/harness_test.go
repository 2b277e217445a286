package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/config"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/nodes"
)

// tlog routes the server's logs to the test log.
type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type harness struct {
	t       testing.TB
	s       *Server
	base    string
	dataDir string
	dsn     string
	client  *http.Client
	admin   string
}

// start runs a control plane on loopback with TLS (certificate from its
// own CA) over the database dsn and data directory dir.
func start(t testing.TB, dsn, dir string) *harness {
	t.Helper()
	return startWith(t, dsn, dir, func(*Config) {})
}

func startWith(t testing.TB, dsn, dir string, opt func(*Config)) *harness {
	t.Helper()
	ctx := context.Background()
	cfg := Config{
		Settings: config.Config{Listen: "127.0.0.1:0", XDSListen: "", Database: dsn, DataDir: dir, StateInterval: time.Hour, StateValidity: 2 * time.Hour},
		Logger:   slog.New(slog.NewJSONHandler(tlog{t}, nil)),
	}
	opt(&cfg)
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("new control plane: %v", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	h := &harness{t: t, s: s, base: "https://" + s.Addr(), dataDir: dir, dsn: dsn}
	t.Cleanup(func() { h.stop() })
	h.client = h.clientWith(nil)
	// The bootstrap credential exists only in the data dir of the first
	// start; tests that restart keep the token they read then.
	if tok, err := os.ReadFile(filepath.Join(dir, "admin.token")); err == nil {
		h.admin = strings.TrimSpace(string(tok))
	}
	return h
}

func (h *harness) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.s.Shutdown(ctx); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
}

func (h *harness) clientWith(cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.s.CA.PEM)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("reply %d is not JSON: %v: %s", r.status, err, r.body)
	}
	return m
}

func (h *harness) req(c *http.Client, method, path, token string, body any, hdr ...string) reply {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	r, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	if c == nil {
		c = h.client
	}
	resp, err := c.Do(r)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

func (h *harness) do(method, path, token string, body any, hdr ...string) reply {
	h.t.Helper()
	return h.req(nil, method, path, token, body, hdr...)
}

// expect fails unless the reply has status and, for errors, the code.
func (h *harness) expect(r reply, status int, code string) reply {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.json(h.t)["error"]; got != code {
			h.t.Fatalf("error %v, want %s: %s", got, code, r.body)
		}
	}
	return r
}

func (h *harness) tenant(name string, twoPerson bool, required int) {
	h.t.Helper()
	h.expect(h.do("POST", "/v1/tenants", h.admin, map[string]any{"name": name, "two_person": twoPerson, "approvals_required": required}), 201, "")
}

func (h *harness) token(subject, tenant string, roles ...string) string {
	h.t.Helper()
	r := h.expect(h.do("POST", "/v1/tokens/api", h.admin, map[string]any{"subject": subject, "tenant": tenant, "roles": roles}), 201, "")
	return r.json(h.t)["token"].(string)
}

// groupToken issues an API token that also carries groups.
func (h *harness) groupToken(subject, tenant string, groups []string, roles ...string) string {
	h.t.Helper()
	r := h.expect(h.do("POST", "/v1/tokens/api", h.admin, map[string]any{"subject": subject, "tenant": tenant, "roles": roles, "groups": groups}), 201, "")
	return r.json(h.t)["token"].(string)
}

// node enrolls a node and returns its token and an mTLS client.
type node struct {
	id, token string
	client    *http.Client
}

func (h *harness) enroll(tenant, region, role string) node {
	h.t.Helper()
	r := h.expect(h.do("POST", "/v1/tenants/"+tenant+"/join-tokens", h.admin, map[string]any{"region": region, "role": role}), 201, "")
	jt := r.json(h.t)["join_token"].(string)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		h.t.Fatal(err)
	}
	r = h.expect(h.do("POST", "/v1/nodes/enroll", "", map[string]any{"join_token": jt, "public_key": base64.StdEncoding.EncodeToString(pub),
		"proof": base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(nodes.EnrollProofPrefix+jt)))}), 201, "")
	m := r.json(h.t)
	if m["tenant"] != tenant || m["region"] != region || m["role"] != role {
		h.t.Fatalf("enrolled as %v", m)
	}
	block, _ := pem.Decode([]byte(m["certificate"].(string)))
	if block == nil {
		h.t.Fatal("enrollment returned no certificate")
	}
	cert := tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: priv}
	return node{id: m["node_id"].(string), token: m["token"].(string), client: h.clientWith(&cert)}
}

// eachDialect runs fn against a fresh Postgres database and a fresh SQLite
// file, each with its own data directory.
func eachDialect(t *testing.T, fn func(t *testing.T, dsn, dir string)) {
	for _, d := range []db.Dialect{db.Postgres, db.SQLite} {
		t.Run(string(d), func(t *testing.T) {
			fn(t, dbtest.NewDSN(t, d), t.TempDir())
		})
	}
}

func examplePolicy(t testing.TB) string {
	t.Helper()
	src, err := os.ReadFile("../../policies/examples/payments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(src)
}
