// Package audit keeps the filter's audit trail: one event per decision,
// hash-chained per producer (chain_id = node id + VM id) and shipped to the
// control plane as signed batches (API.md, "Audit").
//
// Each event's hash is sha256(previous event hash || JCS(event)), the
// batch hash is the last event's hash, and the batch signature is Ed25519
// by the node key over the batch hash. Events stay queued until the control
// plane acknowledges them, so a 409 with expected_seq resends from there.
// The queue is bounded; what happens when it is full is the caller's
// on_audit_overflow choice.
package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"sort"
	"strconv"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/jcs"
)

// Event is one decision as the control plane records it. Redactions carry
// field paths and detector names only, never values.
type Event struct {
	ID             string      `json:"id"`
	Seq            int64       `json:"seq"`
	Time           string      `json:"time"` // RFC 3339, UTC
	Tenant         string      `json:"tenant"`
	NodeID         string      `json:"node_id"`
	Agent          string      `json:"agent"`
	Chain          []string    `json:"chain"`
	Tool           string      `json:"tool"`
	Action         string      `json:"action"`
	ShadowAction   string      `json:"shadow_action"`
	Reasons        []string    `json:"reasons"`
	RuleIDs        []string    `json:"rule_ids"`
	PolicyRevision int64       `json:"policy_revision"`
	InputDigest    string      `json:"input_digest"`
	Redactions     []Redaction `json:"redactions"`
	DecisionNS     int64       `json:"decision_ns"`
	TraceID        string      `json:"trace_id"`
	SpanID         string      `json:"span_id"`
	Status         int         `json:"status"`
	ApprovalID     string      `json:"approval_id"`
	OverrideJTI    string      `json:"override_jti"`
	// CostMicroUSD is what the call was charged against the agent's
	// budget: the decision's obligations cost when the call went through,
	// else 0. The control plane sums it into the fleet's spend.
	CostMicroUSD int64 `json:"cost_micro_usd"`
}

// Redaction names a rewritten parameter and the detectors that fired.
type Redaction struct {
	Path      []string `json:"path"`
	Detectors []string `json:"detectors"`
}

// Batch is the body of POST /v1/audit/batches.
type Batch struct {
	NodeID    string  `json:"node_id"`
	Tenant    string  `json:"tenant"`
	ChainID   string  `json:"chain_id"`
	SeqFirst  int64   `json:"seq_first"`
	SeqLast   int64   `json:"seq_last"`
	PrevHash  string  `json:"prev_hash"`
	Events    []Event `json:"events"`
	BatchHash string  `json:"batch_hash"`
	Signature string  `json:"signature,omitempty"` // hex Ed25519 over the raw batch hash
}

// MaxCostMicroUSD is the largest cost one event may carry: the control
// plane refuses a batch with more (so that its sums cannot overflow), and a
// refused batch would stall the chain.
const MaxCostMicroUSD = 1_000_000_000_000

// ErrFull is returned by Append when the queue holds MaxQueue events.
var ErrFull = errors.New("audit queue is full")

type entry struct {
	ev       Event
	prevHash [32]byte
	hash     [32]byte
}

// Chain is one producer's hash chain and its unacknowledged events. It is
// not safe for concurrent use; a proxy-wasm VM is single-threaded.
type Chain struct {
	nodeID, chainID string
	maxQueue        int
	key             ed25519.PrivateKey // nil: batches go unsigned
	seq             int64              // last appended
	head            [32]byte           // hash of the last appended event
	queue           []entry            // unacknowledged, in seq order
}

// NewChain starts a chain at seq 1 with an all-zero previous hash.
func NewChain(nodeID, chainID string, maxQueue int, key ed25519.PrivateKey) *Chain {
	return &Chain{nodeID: nodeID, chainID: chainID, maxQueue: maxQueue, key: key}
}

// Len reports how many events wait for acknowledgement.
func (c *Chain) Len() int { return len(c.queue) }

// Full reports whether Append would fail.
func (c *Chain) Full() bool { return len(c.queue) >= c.maxQueue }

// Append assigns the next seq to ev, chains it and queues it.
func (c *Chain) Append(ev Event) (Event, error) {
	if c.Full() {
		return ev, ErrFull
	}
	ev.Seq = c.seq + 1
	ev.NodeID = c.nodeID
	// Empty lists, never null: one canonical form per event.
	if ev.Chain == nil {
		ev.Chain = []string{}
	}
	if ev.Reasons == nil {
		ev.Reasons = []string{}
	}
	if ev.RuleIDs == nil {
		ev.RuleIDs = []string{}
	}
	if ev.Redactions == nil {
		ev.Redactions = []Redaction{}
	}
	canon, err := Canonical(ev)
	if err != nil {
		return ev, errs.Errorf("audit event %s: %w", ev.ID, err)
	}
	h := sha256.New()
	h.Write(c.head[:])
	h.Write(canon)
	var sum [32]byte
	h.Sum(sum[:0])
	c.queue = append(c.queue, entry{ev: ev, prevHash: c.head, hash: sum})
	c.seq, c.head = ev.Seq, sum
	return ev, nil
}

// Next returns the oldest unacknowledged events as a batch of at most max
// events of one tenant, or false when nothing is queued.
func (c *Chain) Next(max int) (Batch, bool) {
	if len(c.queue) == 0 || max < 1 {
		return Batch{}, false
	}
	tenant := c.queue[0].ev.Tenant
	n := 0
	for n < len(c.queue) && n < max && c.queue[n].ev.Tenant == tenant {
		n++
	}
	b := Batch{
		NodeID: c.nodeID, Tenant: tenant, ChainID: c.chainID,
		SeqFirst: c.queue[0].ev.Seq, SeqLast: c.queue[n-1].ev.Seq,
		PrevHash:  hex.EncodeToString(c.queue[0].prevHash[:]),
		BatchHash: hex.EncodeToString(c.queue[n-1].hash[:]),
		Events:    make([]Event, n),
	}
	for i := range n {
		b.Events[i] = c.queue[i].ev
	}
	if c.key != nil {
		last := c.queue[n-1].hash
		b.Signature = hex.EncodeToString(ed25519.Sign(c.key, last[:]))
	}
	return b, true
}

// Ack drops every event up to and including seq: the control plane has
// them.
func (c *Chain) Ack(seq int64) {
	i := sort.Search(len(c.queue), func(i int) bool { return c.queue[i].ev.Seq > seq })
	c.queue = slices.Delete(c.queue, 0, i)
}

// Resume handles a 409: the control plane expects expected next, so
// everything before it is acknowledged. It fails when expected lies ahead
// of what this chain produced (the control plane holds events we never
// wrote: a fork that needs an operator).
func (c *Chain) Resume(expected int64) error {
	if expected > c.seq+1 {
		return errs.Errorf("control plane expects seq %d, chain %s is at %d", expected, c.chainID, c.seq)
	}
	if len(c.queue) > 0 && expected < c.queue[0].ev.Seq {
		return errs.Errorf("control plane expects seq %d, chain %s kept events from %d only", expected, c.chainID, c.queue[0].ev.Seq)
	}
	c.Ack(expected - 1)
	return nil
}

// VerifyBatch checks a batch the way the control plane does: every event
// hash chains from PrevHash, BatchHash is the last one, seq runs by one,
// and the signature verifies with pub. Tests and the control plane share
// it.
func VerifyBatch(b Batch, pub ed25519.PublicKey) error {
	prev, err := hex.DecodeString(b.PrevHash)
	if err != nil || len(prev) != 32 {
		return errors.New("prev_hash: not 32 hex-encoded bytes")
	}
	if len(b.Events) == 0 || b.Events[0].Seq != b.SeqFirst || b.Events[len(b.Events)-1].Seq != b.SeqLast {
		return errors.New("seq_first/seq_last do not match the events")
	}
	for i, ev := range b.Events {
		if i > 0 && ev.Seq != b.Events[i-1].Seq+1 {
			return errs.Errorf("events[%d]: seq %d after %d", i, ev.Seq, b.Events[i-1].Seq)
		}
		canon, err := Canonical(ev)
		if err != nil {
			return errs.Errorf("events[%d]: %w", i, err)
		}
		h := sha256.New()
		h.Write(prev)
		h.Write(canon)
		prev = h.Sum(nil)
	}
	if hex.EncodeToString(prev) != b.BatchHash {
		return errors.New("batch_hash does not match the events")
	}
	sig, err := hex.DecodeString(b.Signature)
	if err != nil || !ed25519.Verify(pub, prev, sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

// Canonical renders ev in RFC 8785 (JCS) form: keys sorted by UTF-16 code
// units (all ASCII here, so bytewise), no insignificant whitespace, strings
// with only the mandatory escapes, integers in plain decimal. It writes the
// fields directly, in sorted order, because it runs once per request;
// TestCanonicalMatchesGeneric checks it against a generic encoder.
func Canonical(ev Event) ([]byte, error) {
	return AppendCanonical(make([]byte, 0, 512), &ev)
}

// AppendCanonical appends the canonical form of ev to b.
func AppendCanonical(b []byte, ev *Event) ([]byte, error) {
	for _, n := range [...]int64{ev.Seq, ev.PolicyRevision, ev.DecisionNS, int64(ev.Status)} {
		if n > 1<<53 || n < -(1<<53) {
			return nil, errs.Errorf("number %d is not a safe integer", n)
		}
	}
	if ev.CostMicroUSD < 0 || ev.CostMicroUSD > MaxCostMicroUSD {
		return nil, errs.Errorf("cost_micro_usd %d: want 0 to %d", ev.CostMicroUSD, int64(MaxCostMicroUSD))
	}
	b = append(b, `{"action":`...)
	b = jcs.AppendString(b, ev.Action)
	b = append(b, `,"agent":`...)
	b = jcs.AppendString(b, ev.Agent)
	b = append(b, `,"approval_id":`...)
	b = jcs.AppendString(b, ev.ApprovalID)
	b = append(b, `,"chain":`...)
	b = appendStrings(b, ev.Chain)
	b = append(b, `,"cost_micro_usd":`...)
	b = strconv.AppendInt(b, ev.CostMicroUSD, 10)
	b = append(b, `,"decision_ns":`...)
	b = strconv.AppendInt(b, ev.DecisionNS, 10)
	b = append(b, `,"id":`...)
	b = jcs.AppendString(b, ev.ID)
	b = append(b, `,"input_digest":`...)
	b = jcs.AppendString(b, ev.InputDigest)
	b = append(b, `,"node_id":`...)
	b = jcs.AppendString(b, ev.NodeID)
	b = append(b, `,"override_jti":`...)
	b = jcs.AppendString(b, ev.OverrideJTI)
	b = append(b, `,"policy_revision":`...)
	b = strconv.AppendInt(b, ev.PolicyRevision, 10)
	b = append(b, `,"reasons":`...)
	b = appendStrings(b, ev.Reasons)
	b = append(b, `,"redactions":`...)
	if ev.Redactions == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range ev.Redactions {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"detectors":`...)
			b = appendStrings(b, r.Detectors)
			b = append(b, `,"path":`...)
			b = appendStrings(b, r.Path)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"rule_ids":`...)
	b = appendStrings(b, ev.RuleIDs)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, ev.Seq, 10)
	b = append(b, `,"shadow_action":`...)
	b = jcs.AppendString(b, ev.ShadowAction)
	b = append(b, `,"span_id":`...)
	b = jcs.AppendString(b, ev.SpanID)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ev.Status), 10)
	b = append(b, `,"tenant":`...)
	b = jcs.AppendString(b, ev.Tenant)
	b = append(b, `,"time":`...)
	b = jcs.AppendString(b, ev.Time)
	b = append(b, `,"tool":`...)
	b = jcs.AppendString(b, ev.Tool)
	b = append(b, `,"trace_id":`...)
	b = jcs.AppendString(b, ev.TraceID)
	return append(b, '}'), nil
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = jcs.AppendString(b, s)
	}
	return append(b, ']')
}

// AppendJSON appends the batch as the JSON body of POST /v1/audit/batches:
// the same members encoding/json writes, with each event in its canonical
// form. It replaces encoding/json on the tick path, where reflecting over
// thousands of events cost more than the events' own hashing.
func (b *Batch) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"node_id":`...)
	dst = jcs.AppendString(dst, b.NodeID)
	dst = append(dst, `,"tenant":`...)
	dst = jcs.AppendString(dst, b.Tenant)
	dst = append(dst, `,"chain_id":`...)
	dst = jcs.AppendString(dst, b.ChainID)
	dst = strconv.AppendInt(append(dst, `,"seq_first":`...), b.SeqFirst, 10)
	dst = strconv.AppendInt(append(dst, `,"seq_last":`...), b.SeqLast, 10)
	dst = append(dst, `,"prev_hash":`...)
	dst = jcs.AppendString(dst, b.PrevHash)
	dst = append(dst, `,"events":`...)
	if b.Events == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range b.Events {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = AppendCanonical(dst, &b.Events[i]); err != nil {
				return nil, errs.Errorf("event %d: %w", b.Events[i].Seq, err)
			}
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"batch_hash":`...)
	dst = jcs.AppendString(dst, b.BatchHash)
	if b.Signature != "" {
		dst = append(dst, `,"signature":`...)
		dst = jcs.AppendString(dst, b.Signature)
	}
	return append(dst, '}'), nil
}
