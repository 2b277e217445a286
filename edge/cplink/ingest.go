// Package cplink is the edge's side of the data plane ↔ control plane
// contract (API.md): it answers the filter's calls to its control-plane
// cluster (audit batches go to the local WAL, everything else is
// forwarded), and ships the WAL to the real control plane.
package cplink

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/aegis-mesh/aegis/edge/wal"
)

// Paths of the control-plane API the filter calls.
const (
	AuditPath     = "/v1/audit/batches"
	ApprovalsPath = "/v1/approvals"
)

// MaxBatchBytes bounds an audit batch body from the filter: 256 events of
// a few hundred bytes each, with ample room.
const MaxBatchBytes = 8 << 20

// Appender is what Ingest needs from the WAL.
type Appender interface {
	AppendEvents(ctx context.Context, events []wal.Event) (first, last int64, err error)
}

var _ Appender = (*wal.WAL)(nil)

// Ingest takes the filter's audit batches (one hash chain per VM) and
// appends their events to the node's WAL. It answers 200 only after the
// WAL has them, so an event the filter stops keeping is on disk. It keeps
// each VM chain's position, answering a resent batch as duplicates and a
// gap with 409 expected_seq, exactly as the control plane would.
//
// It checks each VM batch's hash chain with the WAL's canonical encoding:
// a batch the edge cannot reproduce bit for bit is refused (400), which
// keeps it queued in the filter rather than recorded differently.
type Ingest struct {
	w   Appender
	log *slog.Logger

	mu     sync.Mutex
	chains map[string]vmChain
}

type vmChain struct {
	next int64  // seq expected next
	head []byte // hash of seq next-1
}

// NewIngest returns an Ingest appending to w.
func NewIngest(w Appender, log *slog.Logger) *Ingest {
	return &Ingest{w: w, log: log, chains: map[string]vmChain{}}
}

// vmBatch is the filter's POST /v1/audit/batches body.
type vmBatch struct {
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

// Accepted is the body of a 200 answer (API.md).
type Accepted struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

// ServeHTTP implements http.Handler for POST /v1/audit/batches.
func (in *Ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST only")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBatchBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "reading the batch: "+err.Error())
		return
	}
	if len(body) > MaxBatchBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("batch over %d bytes", MaxBatchBytes))
		return
	}
	status, resp := in.ingest(r.Context(), body)
	writeJSON(w, status, resp)
}

func (in *Ingest) ingest(ctx context.Context, body []byte) (int, any) {
	b, evs, hashes, err := parseVMBatch(body)
	if err != nil {
		in.log.Error("audit batch from the filter refused", "err", err)
		return http.StatusBadRequest, apiError{Error: "bad_request", Message: err.Error()}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	c, known := in.chains[b.ChainID]
	if !known {
		// A VM chain this process has not seen: VMs start with the
		// process, so this is its first batch, wherever it starts.
		prev, _ := hex.DecodeString(b.PrevHash)
		c = vmChain{next: b.SeqFirst, head: prev}
	}
	switch {
	case b.SeqFirst > c.next:
		return http.StatusConflict, conflict{Error: "gap", ExpectedSeq: c.next}
	case b.SeqLast < c.next:
		return http.StatusOK, Accepted{Duplicates: len(b.Events)}
	}
	skip := int(c.next - b.SeqFirst)
	var prevOfFirstNew []byte
	if skip == 0 {
		prevOfFirstNew, _ = hex.DecodeString(b.PrevHash)
	} else {
		prevOfFirstNew = hashes[skip-1]
	}
	if !bytes.Equal(prevOfFirstNew, c.head) {
		in.log.Error("audit: a VM chain forked; its events stay queued in the filter", "chain", b.ChainID, "seq", c.next)
		return http.StatusConflict, conflict{Error: "fork", ExpectedSeq: c.next}
	}
	if _, _, err := in.w.AppendEvents(ctx, evs[skip:]); err != nil {
		in.log.Error("audit: appending to the WAL failed; the filter keeps the batch", "chain", b.ChainID, "err", err)
		return http.StatusServiceUnavailable, apiError{Error: "wal_unavailable", Message: "the audit WAL refused the events"}
	}
	in.chains[b.ChainID] = vmChain{next: b.SeqLast + 1, head: hashes[len(hashes)-1]}
	return http.StatusOK, Accepted{Accepted: len(b.Events) - skip, Duplicates: skip}
}

// parseVMBatch decodes a batch strictly and recomputes its hash chain,
// returning the parsed events and each one's hash.
func parseVMBatch(body []byte) (vmBatch, []wal.Event, [][]byte, error) {
	var b vmBatch
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, nil, nil, fmt.Errorf("audit batch: %w", err)
	}
	if dec.More() {
		return b, nil, nil, errors.New("audit batch: data after the object")
	}
	if b.ChainID == "" || len(b.Events) == 0 || b.SeqFirst < 1 || b.SeqLast != b.SeqFirst+int64(len(b.Events))-1 {
		return b, nil, nil, errors.New("audit batch: chain_id, events and seq_first..seq_last do not agree")
	}
	prev, err := hex.DecodeString(b.PrevHash)
	if err != nil || len(prev) != 32 {
		return b, nil, nil, errors.New("audit batch: prev_hash is not 32 hex-encoded bytes")
	}
	evs := make([]wal.Event, len(b.Events))
	hashes := make([][]byte, len(b.Events))
	for i, raw := range b.Events {
		ev, err := wal.ParseEvent(raw)
		if err != nil {
			return b, nil, nil, fmt.Errorf("audit batch: events[%d]: %w", i, err)
		}
		if seq, ok := ev.Int("seq"); !ok || seq != b.SeqFirst+int64(i) {
			return b, nil, nil, fmt.Errorf("audit batch: events[%d]: seq %d out of order", i, seq)
		}
		h := wal.ChainHash(prev, ev.Canonical())
		evs[i], hashes[i], prev = ev, h[:], h[:]
	}
	if hex.EncodeToString(prev) != b.BatchHash {
		return b, nil, nil, errors.New("audit batch: batch_hash does not match the events")
	}
	return b, evs, hashes, nil
}

type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

type conflict struct {
	Error       string `json:"error"`
	ExpectedSeq int64  `json:"expected_seq"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
