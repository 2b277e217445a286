// Package cptest runs the control plane's side of the audit and bundle
// endpoints (API.md) on loopback for edge tests: it verifies every batch
// the way the control plane does (signature over batch_hash, hash chain,
// seq continuity per chain), answers 409 gap/fork with expected_seq, and
// deduplicates by event id. It is not the control plane, only its
// contract.
package cptest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"

	"github.com/aegis-mesh/aegis/edge/wal"
)

// Server is a running emulated control plane.
type Server struct {
	*httptest.Server
	pub ed25519.PublicKey

	mu      sync.Mutex
	down    bool
	chains  map[string]chainPos
	ids     map[string]bool
	events  []json.RawMessage
	batches int
	// Bundle is served at GET /v1/tenants/{tenant}/bundle.
	bundles map[string][]byte
	// Approvals counts POST /v1/approvals.
	approvals int
	states    map[string][]byte
}

type chainPos struct {
	next int64
	head string
}

// New starts a server that trusts batches signed by pub.
func New(pub ed25519.PublicKey) *Server {
	s := &Server{pub: pub, chains: map[string]chainPos{}, ids: map[string]bool{}, bundles: map[string][]byte{}, states: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/audit/batches", s.audit)
	mux.HandleFunc("GET /v1/tenants/{tenant}/bundle", s.bundle)
	mux.HandleFunc("POST /v1/approvals", s.approval)
	mux.HandleFunc("GET /v1/tenants/{tenant}/state", s.state)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		down := s.down
		s.mu.Unlock()
		if down {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	return s
}

// SetDown makes every call answer 503 (true) or work again (false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetBundle serves data as tenant's bundle.
func (s *Server) SetBundle(tenant string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundles[tenant] = data
}

// ForgetFrom rewinds a chain so that the next batch gets 409 gap with
// expected_seq seq (as after a control plane restore from backup).
func (s *Server) ForgetFrom(chain string, seq int64, head string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chains[chain] = chainPos{next: seq, head: head}
}

// Events returns the distinct events received, in arrival order.
func (s *Server) Events() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]json.RawMessage(nil), s.events...)
}

// IDs returns the set of event ids received.
func (s *Server) IDs() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.ids))
	for k := range s.ids {
		out[k] = true
	}
	return out
}

// Approvals counts approval requests.
func (s *Server) Approvals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.approvals
}

type batch struct {
	NodeID    string            `json:"node_id"`
	Tenant    string            `json:"tenant"`
	ChainID   string            `json:"chain_id"`
	SeqFirst  int64             `json:"seq_first"`
	SeqLast   int64             `json:"seq_last"`
	PrevHash  string            `json:"prev_hash"`
	Events    []json.RawMessage `json:"events"`
	BatchHash string            `json:"batch_hash"`
	Signature string            `json:"signature"`
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	var b batch
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		reply(w, 400, map[string]any{"error": "bad_request", "message": err.Error()})
		return
	}
	if err := s.verify(&b); err != nil {
		reply(w, 401, map[string]any{"error": "bad_signature", "message": err.Error()})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pos, ok := s.chains[b.ChainID]
	if !ok {
		pos = chainPos{next: 1, head: hex.EncodeToString(make([]byte, 32))}
	}
	switch {
	case b.SeqFirst > pos.next:
		reply(w, 409, map[string]any{"error": "gap", "expected_seq": pos.next})
		return
	case b.SeqFirst == pos.next && b.PrevHash != pos.head:
		reply(w, 409, map[string]any{"error": "fork", "expected_seq": pos.next})
		return
	}
	acc, dup := 0, 0
	for _, ev := range b.Events {
		var e struct {
			ID string `json:"id"`
		}
		json.Unmarshal(ev, &e)
		if s.ids[e.ID] {
			dup++
			continue
		}
		s.ids[e.ID] = true
		s.events = append(s.events, ev)
		acc++
	}
	if b.SeqLast >= pos.next {
		s.chains[b.ChainID] = chainPos{next: b.SeqLast + 1, head: b.BatchHash}
	}
	s.batches++
	reply(w, 200, map[string]any{"accepted": acc, "duplicates": dup})
}

func (s *Server) verify(b *batch) error {
	prev, err := hex.DecodeString(b.PrevHash)
	if err != nil || len(prev) != 32 {
		return fmt.Errorf("prev_hash")
	}
	if len(b.Events) == 0 || b.SeqLast-b.SeqFirst+1 != int64(len(b.Events)) {
		return fmt.Errorf("seq range")
	}
	for i, ev := range b.Events {
		canon, err := wal.Canonical(ev)
		if err != nil {
			return err
		}
		var e struct {
			Seq int64 `json:"seq"`
		}
		json.Unmarshal(canon, &e)
		if e.Seq != b.SeqFirst+int64(i) {
			return fmt.Errorf("events[%d] seq %d", i, e.Seq)
		}
		h := sha256.New()
		h.Write(prev)
		h.Write(canon)
		prev = h.Sum(nil)
	}
	if hex.EncodeToString(prev) != b.BatchHash {
		return fmt.Errorf("batch_hash")
	}
	sig, err := hex.DecodeString(b.Signature)
	if err != nil || !ed25519.Verify(s.pub, prev, sig) {
		return fmt.Errorf("signature")
	}
	return nil
}

func (s *Server) bundle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	data, ok := s.bundles[r.PathValue("tenant")]
	s.mu.Unlock()
	if !ok {
		reply(w, 404, map[string]any{"error": "not_found"})
		return
	}
	sum := sha256.Sum256(data)
	etag := strconv.Quote(hex.EncodeToString(sum[:]))
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(data)
}

// SetState serves doc as tenant's live state.
func (s *Server) SetState(tenant string, doc []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states[tenant] = doc
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	doc, ok := s.states[r.PathValue("tenant")]
	s.mu.Unlock()
	if !ok {
		reply(w, 404, map[string]any{"error": "not_found"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(doc)
}

func (s *Server) approval(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.approvals++
	n := s.approvals
	s.mu.Unlock()
	reply(w, 201, map[string]any{"approval_id": fmt.Sprintf("apr-%d", n), "status": "pending", "expires_at": "2030-01-01T00:00:00Z"})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
