// Package audit ingests the signed, hash-chained audit batches of filters
// and edges (API.md, "Audit"), stores them in the control plane's database
// (COPY on Postgres), records every continuity or signature failure as an
// integrity incident, sums spend per agent for live-state budgets, signs
// periodic chain checkpoints, and serves queries, SIEM export (JSON lines)
// and evidence packs.
package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/evidence"
	"github.com/aegis-mesh/aegis/jcs"
)

// Limits on one batch.
const (
	MaxBatchEvents = 10000
	MaxBatchBytes  = 32 << 20
	maxIDLen       = 256
	// maxCostMicroUSD bounds one call's cost (one million dollars) so that
	// sums over batches and days cannot overflow.
	maxCostMicroUSD = 1e12
)

// Batch is the body of POST /v1/audit/batches. Events stay raw: their hash
// covers their canonical form, including fields this version does not know.
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

// Event holds the fields of an audit event the control plane indexes and
// turns into spans. CostMicroUSD is the spend the decision's obligations
// charged (the filter's budget counter); absent means none.
type Event struct {
	ID             string   `json:"id"`
	Seq            int64    `json:"seq"`
	Time           string   `json:"time"`
	Tenant         string   `json:"tenant"`
	NodeID         string   `json:"node_id"`
	Agent          string   `json:"agent"`
	Chain          []string `json:"chain"`
	Tool           string   `json:"tool"`
	Action         string   `json:"action"`
	ShadowAction   string   `json:"shadow_action"`
	Reasons        []string `json:"reasons"`
	RuleIDs        []string `json:"rule_ids"`
	PolicyRevision int64    `json:"policy_revision"`
	InputDigest    string   `json:"input_digest"`
	DecisionNS     int64    `json:"decision_ns"`
	TraceID        string   `json:"trace_id"`
	SpanID         string   `json:"span_id"`
	Status         int      `json:"status"`
	ApprovalID     string   `json:"approval_id"`
	OverrideJTI    string   `json:"override_jti"`
	CostMicroUSD   int64    `json:"cost_micro_usd"`
}

// Record is an event ready to store: its fields, canonical bytes and hash.
type Record struct {
	Event
	ChainID string
	Body    []byte // canonical JSON
	Hash    [32]byte
	TimeUS  int64
}

// Refusal codes (API.md) and incident kinds.
const (
	CodeGap          = "gap"
	CodeFork         = "fork"
	CodeReorder      = "reorder"
	CodeDuplicateID  = "duplicate_id"
	CodeBadSignature = "bad_signature"
	CodeHashMismatch = "hash_mismatch"
	CodeUnknownNode  = "unknown_node"
	CodeBadBatch     = "bad_request"
	// CodeTenantNotServed refuses a batch with an event for a tenant the
	// node does not serve (answered 403, recorded as an incident).
	CodeTenantNotServed = "tenant_not_served"
	// CodeReplay is an incident kind only: a batch whose events were all
	// stored already is answered 200 with duplicates.
	CodeReplay = "replay"
)

// BatchError is a batch refused for its content. Kind is an API code;
// Incident says whether the refusal is an integrity incident.
type BatchError struct {
	Kind     string
	Msg      string
	Incident bool
}

func (e *BatchError) Error() string { return e.Kind + ": " + e.Msg }

func badBatch(format string, args ...any) *BatchError {
	return &BatchError{Kind: CodeBadBatch, Msg: fmt.Sprintf(format, args...)}
}

// Prepared is a batch whose events are canonicalised, hashed and checked
// against each other, but not yet against the stored chain.
type Prepared struct {
	Batch   Batch
	Prev    [32]byte
	Records []Record
}

// DecodeBatch parses a batch strictly: unknown fields, trailing data and
// more than MaxBatchEvents events are refused.
func DecodeBatch(data []byte) (Batch, error) {
	var b Batch
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("batch: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return b, errors.New("batch: data after the JSON value")
	}
	return b, nil
}

// Prepare checks a batch on its own: shape, every event's seq, node and
// tenant (the batch's), the hash chain from prev_hash to batch_hash, and
// the signature with pub (the node's registered key). A failure is a
// *BatchError.
func Prepare(b Batch, pub ed25519.PublicKey) (*Prepared, error) {
	return PrepareServing(b, pub, nil)
}

// PrepareServing is Prepare for a node that may also emit events for the
// tenants in serves (a shared gateway; the batch's tenant stays the node's
// home, which owns the chain). An event for any other tenant refuses the
// whole batch with CodeTenantNotServed naming the event; it is checked
// after the signature, so the refusal is about what the node really sent.
func PrepareServing(b Batch, pub ed25519.PublicKey, serves []string) (*Prepared, error) {
	return prepare(b, nil, nil, pub, serves)
}

// prepare is PrepareServing for a batch whose events may be canonical
// already (decodeBatchFast): canon holds them back to back and ends[i] is
// where event i's form ends. With ends nil the events are canonicalised
// here.
func prepare(b Batch, canon []byte, ends []int, pub ed25519.PublicKey, serves []string) (*Prepared, error) {
	switch {
	case b.ChainID == "" || len(b.ChainID) > maxIDLen || !printable(b.ChainID):
		return nil, badBatch("chain_id: 1 to %d printable characters", maxIDLen)
	case len(b.Events) == 0:
		return nil, badBatch("no events")
	case len(b.Events) > MaxBatchEvents:
		return nil, badBatch("%d events, at most %d per batch", len(b.Events), MaxBatchEvents)
	case b.SeqFirst < 1:
		return nil, badBatch("seq_first %d: seqs start at 1", b.SeqFirst)
	case b.SeqLast != b.SeqFirst+int64(len(b.Events))-1:
		return nil, badBatch("seq_first %d and seq_last %d do not span %d events", b.SeqFirst, b.SeqLast, len(b.Events))
	case ends != nil && len(ends) != len(b.Events):
		return nil, fmt.Errorf("audit: %d canonical events for %d events", len(ends), len(b.Events))
	}
	prev, err := evidence.ParseHash(b.PrevHash)
	if err != nil {
		return nil, badBatch("prev_hash: %v", err)
	}
	p := &Prepared{Batch: b, Prev: prev, Records: make([]Record, len(b.Events))}
	// The events' fields are substrings of one string of all their
	// canonical text, and their lists share one arena: a few allocations
	// per batch instead of a few per event.
	var text string
	if ends != nil {
		text = string(canon)
	}
	strs := make([]string, 0, 3*len(b.Events))
	chain := evidence.NewChainer()
	// Seqs first: a reordered or gapped batch is named as such, not as a
	// signature failure (its hashes cannot match either).
	for i, raw := range b.Events {
		r := &p.Records[i]
		var c []byte
		var s string
		if ends != nil {
			start := 0
			if i > 0 {
				start = ends[i-1]
			}
			c, s = canon[start:ends[i]:ends[i]], text[start:ends[i]]
		} else {
			if c, err = jcs.AppendCanonical(make([]byte, 0, len(raw)+64), raw); err != nil {
				return nil, badBatch("events[%d]: canonical event: %v", i, err)
			}
			s = string(c)
		}
		if !decodeEvent(c, s, &r.Event, &strs) {
			// Outside the fast reader's shape: encoding/json decides, once
			// the keys are known to mean what they say.
			if err := checkEventKeys(c); err != nil {
				return nil, badBatch("events[%d]: %v", i, err)
			}
			r.Event = Event{}
			if err := json.Unmarshal(c, &r.Event); err != nil {
				return nil, badBatch("events[%d]: %v", i, err)
			}
		}
		r.Hash = chain.Next(prev, c)
		r.Body, r.ChainID = c, b.ChainID
		prev = r.Hash
	}
	for i := 1; i < len(p.Records); i++ {
		if p.Records[i].Seq <= p.Records[i-1].Seq {
			return nil, &BatchError{Kind: CodeReorder, Msg: fmt.Sprintf("events[%d] has seq %d after %d", i, p.Records[i].Seq, p.Records[i-1].Seq), Incident: true}
		}
	}
	ids := make(map[string]struct{}, len(p.Records))
	for i := range p.Records {
		ev := &p.Records[i].Event
		if want := b.SeqFirst + int64(i); ev.Seq != want {
			return nil, &BatchError{Kind: CodeGap, Msg: fmt.Sprintf("events[%d] has seq %d, expected %d", i, ev.Seq, want), Incident: true}
		}
		if _, dup := ids[ev.ID]; dup {
			return nil, &BatchError{Kind: CodeDuplicateID, Msg: fmt.Sprintf("events[%d]: id %q appears twice in the batch", i, ev.ID), Incident: true}
		}
		ids[ev.ID] = struct{}{}
		if err := checkEvent(ev, b); err != nil {
			return nil, badBatch("events[%d]: %v", i, err)
		}
		t, err := time.Parse(time.RFC3339Nano, ev.Time)
		if err != nil {
			return nil, badBatch("events[%d]: time: want RFC 3339", i)
		}
		p.Records[i].TimeUS = t.UnixMicro()
	}
	if hex.EncodeToString(prev[:]) != b.BatchHash {
		return nil, &BatchError{Kind: CodeHashMismatch, Msg: "batch_hash is not the hash of the last event: events were altered, dropped or reordered", Incident: true}
	}
	sig, err := hex.DecodeString(b.Signature)
	if err != nil || len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, prev[:], sig) {
		return nil, &BatchError{Kind: CodeBadSignature, Msg: "signature does not verify with the node's registered key", Incident: true}
	}
	for i := range p.Records {
		ev := &p.Records[i].Event
		if ev.Tenant != b.Tenant && !slices.Contains(serves, ev.Tenant) {
			return nil, &BatchError{Kind: CodeTenantNotServed, Incident: true,
				Msg: fmt.Sprintf("events[%d] (id %q) is for tenant %q, which this node does not serve", i, ev.ID, ev.Tenant)}
		}
	}
	return p, nil
}

func checkEvent(ev *Event, b Batch) error {
	switch {
	case ev.ID == "" || len(ev.ID) > maxIDLen || !printable(ev.ID):
		return fmt.Errorf("id: 1 to %d printable characters", maxIDLen)
	case ev.NodeID != b.NodeID:
		return fmt.Errorf("node_id %q, the batch is from %q", ev.NodeID, b.NodeID)
	case ev.Tenant == "" || len(ev.Tenant) > maxIDLen || !printable(ev.Tenant):
		return fmt.Errorf("tenant: 1 to %d printable characters", maxIDLen)
	case ev.CostMicroUSD < 0 || ev.CostMicroUSD > maxCostMicroUSD:
		return fmt.Errorf("cost_micro_usd %d: 0 to %d", ev.CostMicroUSD, int64(maxCostMicroUSD))
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// eventKeys are the exact member names of Event.
var eventKeys = func() map[string]string {
	m := map[string]string{}
	t := reflect.TypeFor[Event]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[strings.ToLower(name)] = name
		}
	}
	return m
}()

// checkEventKeys refuses an event with a member whose name is one of
// Event's in another case ("ID", "Tenant"). encoding/json would take it for
// that field while the stored body, which auditors and the offline verifier
// read case-sensitively, says something else: the columns an export is
// chosen by and the evidence would disagree.
func checkEventKeys(canonical []byte) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(canonical, &members); err != nil {
		return err
	}
	for k := range members {
		if exact, ok := eventKeys[strings.ToLower(k)]; ok && exact != k {
			return fmt.Errorf("member %q: field names are case-sensitive (want %q)", k, exact)
		}
	}
	return nil
}
