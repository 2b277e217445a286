package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/jcs"
	"github.com/prometheus/client_golang/prometheus"
)

var baseTime = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// producer is a simulated node chain: it makes events, chains and signs
// them exactly as API.md describes.
type producer struct {
	node, tenant, chain string
	key                 ed25519.PrivateKey
	seq                 int64
	head                [32]byte
	hashes              [][32]byte // hash after each seq (index seq-1)
	n                   int
}

func newProducer(t testing.TB, node, tenant, chain string) *producer {
	t.Helper()
	seed := sha256.Sum256([]byte("node key " + node))
	return &producer{node: node, tenant: tenant, chain: chain, key: ed25519.NewKeyFromSeed(seed[:32])}
}

type evOpt func(map[string]any)

// events makes the next n events (not yet batched).
func (p *producer) events(t testing.TB, n int, opts ...evOpt) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, n)
	for i := range out {
		p.seq++
		p.n++
		ev := map[string]any{
			"id": fmt.Sprintf("%s-%s-%d", p.node, p.chain, p.seq), "seq": p.seq, "node_id": p.node, "tenant": p.tenant,
			"time": baseTime.Add(time.Duration(p.seq) * time.Second).Format(time.RFC3339Nano), "agent": "agent-1", "chain": []string{"agent-1"},
			"tool": "payments", "action": "allow", "shadow_action": "", "reasons": []string{}, "rule_ids": []string{"r1"},
			"policy_revision": 7, "input_digest": strings.Repeat("a", 64), "redactions": []any{}, "decision_ns": 1200,
			"trace_id": "", "span_id": "", "status": 200, "approval_id": "", "override_jti": "",
		}
		for _, o := range opts {
			o(ev)
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		canon, err := jcs.Canonicalize(raw)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		h.Write(p.head[:])
		h.Write(canon)
		h.Sum(p.head[:0])
		p.hashes = append(p.hashes, p.head)
		out[i] = raw
	}
	return out
}

// batch wraps the events just made (the last len(evs) seqs) and signs it.
func (p *producer) batch(evs []json.RawMessage) Batch {
	first := p.seq - int64(len(evs)) + 1
	var prev [32]byte
	if first > 1 {
		prev = p.hashes[first-2]
	}
	last := p.hashes[p.seq-1]
	return Batch{NodeID: p.node, Tenant: p.tenant, ChainID: p.chain, SeqFirst: first, SeqLast: p.seq,
		PrevHash: hex.EncodeToString(prev[:]), Events: evs, BatchHash: hex.EncodeToString(last[:]),
		Signature: hex.EncodeToString(ed25519.Sign(p.key, last[:]))}
}

func (p *producer) next(t testing.TB, n int, opts ...evOpt) Batch {
	t.Helper()
	return p.batch(p.events(t, n, opts...))
}

// nodeKeys is the test's enrolment table, standing in for the nodes store
// behind the consumer-side NodeKeys interface.
type nodeKeys struct {
	mu   sync.Mutex
	keys map[string]ed25519.PublicKey
	ten  map[string]string
}

var errUnknownNode = errors.New("unknown node")

func (k *nodeKeys) NodeKey(_ context.Context, node string) (string, ed25519.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	pub, ok := k.keys[node]
	if !ok {
		return "", nil, fmt.Errorf("node %q: %w", node, errUnknownNode)
	}
	return k.ten[node], pub, nil
}

func (k *nodeKeys) enroll(p *producer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys, k.ten = map[string]ed25519.PublicKey{}, map[string]string{}
	}
	k.keys[p.node] = p.key.Public().(ed25519.PublicKey)
	k.ten[p.node] = p.tenant
}

// env is one control-plane instance on a database: the service behind a
// loopback HTTP server whose authentication maps test bearer tokens to
// principals.
type env struct {
	t     testing.TB
	db    *db.DB
	store *Store
	svc   *Service
	srv   *httptest.Server
	nodes *nodeKeys
	key   ed25519.PrivateKey
	now   time.Time
	// dropReplies makes the server process requests fully and then cut the
	// connection instead of replying: a crash between commit and reply.
	dropReplies atomic.Bool
}

func evidenceKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("evidence key"))
	return ed25519.NewKeyFromSeed(seed[:32])
}

func newEnv(t testing.TB, d *db.DB, nodes *nodeKeys, spans SpanSink) *env {
	t.Helper()
	ctx := context.Background()
	st, err := OpenStore(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: d, store: st, nodes: nodes, key: evidenceKey(), now: baseTime.Add(time.Hour)}
	svc, err := New(Config{
		Store: st, Nodes: nodes, IsUnknownNode: func(err error) bool { return errors.Is(err, errUnknownNode) },
		EvidenceKey: e.key, Registerer: prometheus.NewRegistry(), Spans: spans, TempDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Now: func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	mux := http.NewServeMux()
	svc.Register(mux)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := principalFor(r.Header.Get("Authorization")); ok {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
		if e.dropReplies.Load() {
			mux.ServeHTTP(httptest.NewRecorder(), r)
			panic(http.ErrAbortHandler)
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// principalFor decodes the test credentials "node:ID:TENANT",
// "node:ID:TENANT:SERVED,SERVED" (a shared gateway) and "ROLE:TENANT".
func principalFor(h string) (auth.Principal, bool) {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return auth.Principal{}, false
	}
	parts := strings.Split(tok, ":")
	switch {
	case len(parts) == 3 && parts[0] == "node":
		return auth.Principal{Subject: parts[1], Tenant: parts[2], Roles: []auth.Role{auth.RoleNode}}, true
	case len(parts) == 4 && parts[0] == "node":
		return auth.Principal{Subject: parts[1], Tenant: parts[2], Roles: []auth.Role{auth.RoleNode}, Serves: strings.Split(parts[3], ",")}, true
	case len(parts) == 2:
		return auth.Principal{Subject: "user", Tenant: parts[1], Roles: []auth.Role{auth.Role(parts[0])}}, true
	}
	return auth.Principal{}, false
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type reply struct {
	status int
	body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("reply %d %q: %v", r.status, r.body, err)
	}
	return m
}

func (e *env) do(method, path, token string, body []byte) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return reply{resp.StatusCode, data}
}

func (e *env) send(p *producer, b Batch) reply {
	e.t.Helper()
	body, err := json.Marshal(b)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do("POST", "/v1/audit/batches", "node:"+p.node+":"+p.tenant, body)
}

func (e *env) count(q string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(q, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) incidents(kind string) int {
	return e.count(`SELECT count(*) FROM audit_incidents WHERE kind = $1`, kind)
}

func ed25519Sign(p *producer, msg []byte) []byte { return ed25519.Sign(p.key, msg) }
