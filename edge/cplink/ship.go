package cplink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aegis-mesh/aegis/edge/wal"
)

// Batch is the body of POST /v1/audit/batches the edge sends for its WAL
// chain (chain_id = node id).
type Batch struct {
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

// ShipperConfig configures a Shipper.
type ShipperConfig struct {
	NodeID    string
	Key       ed25519.PrivateKey // signs batch_hash
	BatchSize int                // events per batch (default 256)
	// MinBackoff and MaxBackoff bound the wait after a failed call
	// (defaults 250ms and 30s); the wait doubles per failure, with jitter.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// HomeTenant, when set, is the tenant every batch names: the node's
	// own tenant, as the control plane requires. A shared gateway's chain
	// then carries the events of every tenant it serves in order, each
	// event naming its own tenant. Without it a batch is a run of events of
	// one tenant, named by that tenant (a node serving only its own).
	HomeTenant string
}

// Shipper sends the WAL to the control plane in order, from the persisted
// cursor: after a restart it resumes exactly there, and a resent batch is
// harmless because the control plane deduplicates by event id.
type Shipper struct {
	w      *wal.WAL
	remote *Remote
	cfg    ShipperConfig

	next     int64 // first seq not yet acknowledged
	shipped  atomic.Int64
	failures atomic.Int64
}

// NewShipper returns a shipper for w. Run starts it.
func NewShipper(w *wal.WAL, remote *Remote, cfg ShipperConfig) (*Shipper, error) {
	if remote == nil {
		return nil, errors.New("shipper: no control plane")
	}
	if cfg.NodeID == "" || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("shipper: node id and node signing key are required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Shipper{w: w, remote: remote, cfg: cfg, next: w.Shipped() + 1}, nil
}

// Shipped counts events the control plane acknowledged since start.
func (s *Shipper) Shipped() int64 { return s.shipped.Load() }

// Failures counts failed calls since start.
func (s *Shipper) Failures() int64 { return s.failures.Load() }

// Run ships until ctx ends.
func (s *Shipper) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		changed := s.w.Changed()
		progressed, err := s.shipOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var wait <-chan time.Time
		switch {
		case err != nil:
			s.failures.Add(1)
			backoff = min(max(2*backoff, s.cfg.MinBackoff), s.cfg.MaxBackoff)
			d := backoff/2 + rand.N(backoff/2+1)
			s.cfg.Logger.Warn("audit shipping failed; retrying", "err", err, "retry_in", d)
			wait = time.After(d)
		case progressed:
			backoff = 0
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-wait:
		}
	}
}

// shipOnce sends one batch from s.next. It reports whether anything was
// acknowledged.
func (s *Shipper) shipOnce(ctx context.Context) (bool, error) {
	recs, err := s.w.Read(s.next, s.cfg.BatchSize, MaxBatchBytes/2)
	if err != nil {
		return false, err
	}
	if len(recs) == 0 {
		return false, nil
	}
	b, n, err := s.batch(recs)
	if err != nil {
		return false, err
	}
	recs = recs[:n]
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return false, fmt.Errorf("encoding batch %d-%d: %w", b.SeqFirst, b.SeqLast, err)
	}
	resp, err := s.remote.Do(ctx, http.MethodPost, AuditPath, body.Bytes(), nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
		last := recs[len(recs)-1]
		if err := s.w.Ack(last.Seq, last.Hash); err != nil {
			return false, err
		}
		s.shipped.Add(int64(len(b.Events)))
		s.next = last.Seq + 1
		return true, nil
	case http.StatusConflict:
		var c struct {
			Error       string `json:"error"`
			ExpectedSeq int64  `json:"expected_seq"`
		}
		if err := json.Unmarshal(rb, &c); err != nil || c.ExpectedSeq < 1 {
			return false, fmt.Errorf("batch %d-%d: 409 without expected_seq", b.SeqFirst, b.SeqLast)
		}
		head, _ := s.w.Head()
		if c.ExpectedSeq > head+1 {
			return false, fmt.Errorf("batch %d-%d: control plane expects seq %d, the WAL ends at %d (%s): the chains forked", b.SeqFirst, b.SeqLast, c.ExpectedSeq, head, c.Error)
		}
		s.cfg.Logger.Info("audit: control plane asks to resend", "error", c.Error, "expected_seq", c.ExpectedSeq, "was", s.next)
		if c.ExpectedSeq > s.next {
			// It has everything before expected_seq: acknowledge it.
			prev, err := s.w.Read(c.ExpectedSeq-1, 1, 1)
			if err != nil || len(prev) != 1 {
				return false, fmt.Errorf("reading seq %d to acknowledge it: %v", c.ExpectedSeq-1, err)
			}
			if err := s.w.Ack(prev[0].Seq, prev[0].Hash); err != nil {
				return false, err
			}
		}
		s.next = c.ExpectedSeq
		return true, nil
	default:
		return false, fmt.Errorf("batch %d-%d: control plane answered %d: %.200s", b.SeqFirst, b.SeqLast, resp.StatusCode, rb)
	}
}

// batch builds a signed batch of the leading records of one tenant.
func (s *Shipper) batch(recs []wal.Record) (Batch, int, error) {
	tenant, err := tenantOf(recs[0].Event)
	if err != nil {
		return Batch{}, 0, fmt.Errorf("record %d: %w", recs[0].Seq, err)
	}
	n := 1
	if s.cfg.HomeTenant != "" {
		tenant, n = s.cfg.HomeTenant, len(recs)
	}
	for n < len(recs) {
		t, err := tenantOf(recs[n].Event)
		if err != nil || t != tenant {
			break
		}
		n++
	}
	recs = recs[:n]
	last := recs[n-1]
	b := Batch{
		NodeID: s.cfg.NodeID, Tenant: tenant, ChainID: s.cfg.NodeID,
		SeqFirst: recs[0].Seq, SeqLast: last.Seq,
		PrevHash:  hex.EncodeToString(recs[0].PrevHash[:]),
		BatchHash: hex.EncodeToString(last.Hash[:]),
		Signature: hex.EncodeToString(ed25519.Sign(s.cfg.Key, last.Hash[:])),
		Events:    make([]json.RawMessage, n),
	}
	for i, r := range recs {
		b.Events[i] = r.Event
	}
	return b, n, nil
}

func tenantOf(ev json.RawMessage) (string, error) {
	var t struct {
		Tenant string `json:"tenant"`
	}
	if err := json.Unmarshal(ev, &t); err != nil {
		return "", fmt.Errorf("event: %w", err)
	}
	return t.Tenant, nil
}

// TokenTenant reads the tenant claim of the node's own credential, for
// addressing batches; the control plane verifies the token itself. It
// returns "" when the token is absent or not a JWT.
func TokenTenant(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Tenant string `json:"tenant"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.Tenant
}
