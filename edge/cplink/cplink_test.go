package cplink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/edge/internal/cptest"
	"github.com/aegis-mesh/aegis/edge/wal"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// vmChain produces batches the way the filter's per-VM chain does.
type vmChainGen struct {
	id   string
	seq  int64
	head [32]byte
	n    int
}

func (g *vmChainGen) batch(t testing.TB, n int) []byte {
	t.Helper()
	b := vmBatch{NodeID: "edge-1", Tenant: "acme", ChainID: g.id, SeqFirst: g.seq + 1, PrevHash: hex.EncodeToString(g.head[:])}
	for range n {
		g.seq++
		g.n++
		ev := fmt.Sprintf(`{"action":"allow","agent":"billing-agent","id":"%s-%d","node_id":"edge-1","seq":%d,"tenant":"acme"}`, g.id, g.n, g.seq)
		canon, err := wal.Canonical([]byte(ev))
		if err != nil {
			t.Fatal(err)
		}
		g.head = wal.ChainHash(g.head[:], canon)
		b.Events = append(b.Events, json.RawMessage(ev))
	}
	b.SeqLast = g.seq
	b.BatchHash = hex.EncodeToString(g.head[:])
	body, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func post(t *testing.T, c http.RoundTripper, path string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://aegis-cp"+path, bytes.NewReader(body))
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

func TestIngestFromVMChains(t *testing.T) {
	w, err := wal.Open(t.TempDir(), wal.Options{NodeID: "edge-1", Sync: wal.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := NewCluster(NewIngest(w, testLogger(t)), nil)
	a, b := &vmChainGen{id: "edge-1/vm-a"}, &vmChainGen{id: "edge-1/vm-b"}

	first := a.batch(t, 3)
	for _, tc := range []struct {
		name       string
		body       []byte
		wantStatus int
		wantBody   string
		wantHead   int64
	}{
		{"first batch", first, 200, `"accepted":3`, 3},
		{"resent batch", first, 200, `"duplicates":3`, 3},
		{"other VM", b.batch(t, 2), 200, `"accepted":2`, 5},
		{"next batch", a.batch(t, 2), 200, `"accepted":2`, 7},
		{"gap", func() []byte { a.batch(t, 1); return a.batch(t, 1) }(), 409, `"expected_seq":6`, 7},
		{"bad hash", bytes.Replace(b.batch(t, 1), []byte(`"batch_hash":"`), []byte(`"batch_hash":"00`), 1), 400, "bad_request", 7},
		{"unknown field", []byte(`{"chain_id":"x","extra":1}`), 400, "bad_request", 7},
		{"not JSON", []byte(`{`), 400, "bad_request", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, c, AuditPath, tc.body)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %s, want %d with %s", status, body, tc.wantStatus, tc.wantBody)
			}
			if seq, _ := w.Head(); seq != tc.wantHead {
				t.Fatalf("WAL head %d, want %d", seq, tc.wantHead)
			}
		})
	}
}

func TestClusterOfflineAnswers503(t *testing.T) {
	c := NewCluster(http.NotFoundHandler(), nil)
	status, body := post(t, c, ApprovalsPath, []byte(`{}`))
	if status != 503 || !strings.Contains(body, "control_plane_unavailable") {
		t.Fatalf("got %d %s", status, body)
	}
}

func TestClusterForwardsApprovals(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	cp := cptest.New(pub)
	defer cp.Close()
	remote, err := NewRemote(cp.URL, "node-token", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCluster(http.NotFoundHandler(), remote)
	status, body := post(t, c, ApprovalsPath, []byte(`{"decision_id":"d1"}`))
	if status != 201 || !strings.Contains(body, `"approval_id":"apr-1"`) || cp.Approvals() != 1 {
		t.Fatalf("got %d %s", status, body)
	}
}

func newShipper(t *testing.T, w *wal.WAL, cp *cptest.Server, key ed25519.PrivateKey) *Shipper {
	t.Helper()
	remote, err := NewRemote(cp.URL, "node-token", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewShipper(w, remote, ShipperConfig{NodeID: "edge-1", Key: key, BatchSize: 7,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendEvents(t *testing.T, w *wal.WAL, from, n int, tenant string) {
	t.Helper()
	evs := make([]json.RawMessage, n)
	for i := range n {
		evs[i] = json.RawMessage(fmt.Sprintf(`{"id":"e%d","tenant":%q,"action":"allow"}`, from+i, tenant))
	}
	if _, _, err := w.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond; the deadline only guards against a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func TestShipperDeliversOnceAcrossOutagesAndRestarts(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	cp := cptest.New(pub)
	defer cp.Close()
	dir := t.TempDir()
	w, err := wal.Open(dir, wal.Options{NodeID: "edge-1", SegmentBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	cp.SetDown(true)
	appendEvents(t, w, 0, 20, "acme")
	appendEvents(t, w, 20, 5, "platform")
	s := newShipper(t, w, cp, key)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "a failed attempt", func() bool { return s.Failures() > 0 })
	if len(cp.Events()) != 0 {
		t.Fatal("events arrived while the control plane was down")
	}
	cp.SetDown(false)
	waitFor(t, "25 events", func() bool { return w.Shipped() == 25 })
	cancel()
	<-done
	w.Close()

	// Restart: nothing is resent, new events follow.
	w2, err := wal.Open(dir, wal.Options{NodeID: "edge-1", SegmentBytes: 2048, KeepShipped: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	appendEvents(t, w2, 25, 10, "acme")
	s2 := newShipper(t, w2, cp, key)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go s2.Run(ctx2)
	// The counter moves just after the cursor: wait for both.
	waitFor(t, "35 events", func() bool { return w2.Shipped() == 35 && s2.Shipped() >= 10 })
	if got := s2.Shipped(); got != 10 {
		t.Errorf("after restart the shipper sent %d events, want 10", got)
	}

	// The control plane lost events 30..35 (restore from backup): a 409
	// makes the shipper resend from there, while they are still on disk.
	r29, err := w2.Read(29, 1, 1)
	if err != nil || len(r29) != 1 {
		t.Fatalf("reading seq 29: %v", err)
	}
	cp.ForgetFrom("edge-1", 30, hex.EncodeToString(r29[0].Hash[:]))
	appendEvents(t, w2, 35, 1, "acme")
	waitFor(t, "36 events", func() bool { return w2.Shipped() == 36 })

	evs := cp.Events()
	ids := cp.IDs()
	if len(evs) != 36 || len(ids) != 36 {
		t.Fatalf("control plane has %d events, %d ids; want 36", len(evs), len(ids))
	}
	for i := range 36 {
		if !ids[fmt.Sprintf("e%d", i)] {
			t.Errorf("event e%d missing", i)
		}
	}
}

func get(t *testing.T, c http.RoundTripper, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://aegis-cp"+path, nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

func TestClusterKeepsLiveStateForOffline(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	cp := cptest.New(pub)
	defer cp.Close()
	remote, _ := NewRemote(cp.URL, "", time.Second)
	dir := t.TempDir()
	c := NewCluster(http.NotFoundHandler(), remote).WithStateCache(dir)
	doc := `{"tenant":"acme","seq":7,"kill_switch":true}`
	cp.SetState("acme", []byte(doc))

	if status, body := get(t, c, "/v1/tenants/acme/state"); status != 200 || body != doc {
		t.Fatalf("online: %d %s", status, body)
	}
	cp.SetDown(true)
	if status, body := get(t, c, "/v1/tenants/acme/state"); status != 200 || body != doc {
		t.Fatalf("control plane down: %d %s", status, body)
	}
	cp.Close()
	if status, body := get(t, c, "/v1/tenants/acme/state"); status != 200 || body != doc {
		t.Fatalf("control plane gone: %d %s", status, body)
	}
	offline := NewCluster(http.NotFoundHandler(), nil).WithStateCache(dir)
	if status, body := get(t, offline, "/v1/tenants/acme/state"); status != 200 || body != doc {
		t.Fatalf("offline after restart: %d %s", status, body)
	}
	for _, path := range []string{"/v1/tenants/globex/state", "/v1/tenants/../state", "/v1/tenants/acme/bundle"} {
		if status, _ := get(t, offline, path); status != 503 {
			t.Errorf("%s offline without a copy: %d, want 503", path, status)
		}
	}
}

func TestNewRemoteRefusesBadURLs(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true},
		{"https://cp.example/prefix/", true},
		{"ftp://cp.example", false},
		{"http://user:pw@cp.example", false},
		{"http://cp.example/?q=1", false},
		{"cp.example:8080", false},
		{"http://", false},
	} {
		_, err := NewRemote(tc.url, "", time.Second)
		if (err == nil) != tc.ok {
			t.Errorf("NewRemote(%q) err %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}
