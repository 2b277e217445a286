package audit

import (
	"encoding/json"
	"strconv"

	"github.com/aegis-mesh/aegis/jcs"
)

// The ingest hot path reads a batch body once: the batch fields, and each
// event straight into its canonical form (the text its hash covers), then
// the indexed fields from that canonical text. encoding/json stays the
// definition of what a body means: the fast readers below only take the
// shape producers send (JCS events, plain strings, integers, each batch
// field once and spelled exactly) and report !ok for anything else — an
// escape in a field, null, a fraction, a duplicate or unknown batch field,
// a key differing from a field name only in case — which then goes through
// encoding/json and the canonicaliser as before, with the same answers and
// errors.

// fastBatch is a batch body read on the fast path.
type fastBatch struct {
	Batch
	// canon holds the canonical form of every event, back to back;
	// ends[i] is where event i's ends.
	canon []byte
	ends  []int
}

// batch field bits, to refuse a field given twice (encoding/json would
// take the last one; the fast path leaves that to it).
const (
	fNodeID = 1 << iota
	fTenant
	fChainID
	fSeqFirst
	fSeqLast
	fPrevHash
	fEvents
	fBatchHash
	fSignature
)

// decodeBatchFast reads a batch body of the usual shape in one pass.
func decodeBatchFast(data []byte) (*fastBatch, bool) {
	d := scan{data: data}
	d.space()
	if !d.byte('{') {
		return nil, false
	}
	fb := &fastBatch{}
	b := &fb.Batch
	var seen int
	d.space()
	if d.byte('}') {
		d.space()
		return fb, d.pos == len(d.data)
	}
	for {
		d.space()
		key, ok := d.plainString()
		if !ok {
			return nil, false
		}
		d.space()
		if !d.byte(':') {
			return nil, false
		}
		d.space()
		var bit int
		switch string(key) {
		case "node_id":
			bit = fNodeID
			b.NodeID, ok = d.stringValue()
		case "tenant":
			bit = fTenant
			b.Tenant, ok = d.stringValue()
		case "chain_id":
			bit = fChainID
			b.ChainID, ok = d.stringValue()
		case "seq_first":
			bit = fSeqFirst
			b.SeqFirst, ok = d.integer()
		case "seq_last":
			bit = fSeqLast
			b.SeqLast, ok = d.integer()
		case "prev_hash":
			bit = fPrevHash
			b.PrevHash, ok = d.stringValue()
		case "events":
			bit = fEvents
			ok = d.events(fb)
		case "batch_hash":
			bit = fBatchHash
			b.BatchHash, ok = d.stringValue()
		case "signature":
			bit = fSignature
			b.Signature, ok = d.stringValue()
		default:
			return nil, false
		}
		if !ok || seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		d.space()
		if d.byte('}') {
			break
		}
		if !d.byte(',') {
			return nil, false
		}
	}
	d.space()
	return fb, d.pos == len(d.data)
}

// events reads the events array, canonicalising each event as it goes.
func (d *scan) events(fb *fastBatch) bool {
	if !d.byte('[') {
		return false
	}
	// encoding/json makes [] an empty, non-nil slice.
	fb.Events = []json.RawMessage{}
	d.space()
	if d.byte(']') {
		return true
	}
	// The canonical text is about as long as the events' text.
	fb.canon = make([]byte, 0, len(d.data)-d.pos)
	for {
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '{' {
			return false
		}
		canon, n, err := jcs.AppendCanonicalPrefix(fb.canon, d.data[d.pos:])
		if err != nil {
			return false
		}
		fb.canon = canon
		fb.ends = append(fb.ends, len(canon))
		fb.Events = append(fb.Events, d.data[d.pos:d.pos+n:d.pos+n])
		d.pos += n
		d.space()
		if d.byte(']') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

// scan is a cursor over JSON text for the fast readers.
type scan struct {
	data []byte
	pos  int
}

func (d *scan) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (d *scan) byte(c byte) bool {
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

// plainString reads a string of printable ASCII without escapes and
// returns its bytes (a slice of the input).
func (d *scan) plainString() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '"' {
			d.pos++
			return d.data[start : d.pos-1], true
		}
		if c < 0x20 || c > 0x7e || c == '\\' {
			return nil, false
		}
		d.pos++
	}
	return nil, false
}

func (d *scan) stringValue() (string, bool) {
	s, ok := d.plainString()
	return string(s), ok
}

// integer reads an integer as encoding/json would into an int64: plain
// digits in range; a fraction or exponent is left to it.
func (d *scan) integer() (int64, bool) {
	start := d.pos
	d.byte('-')
	digits := d.pos
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
	}
	switch {
	case d.pos == digits, d.data[digits] == '0' && d.pos-digits > 1:
		return 0, false
	case d.pos < len(d.data) && (d.data[d.pos] == '.' || d.data[d.pos] == 'e' || d.data[d.pos] == 'E'):
		return 0, false
	}
	n, err := strconv.ParseInt(string(d.data[start:d.pos]), 10, 64)
	return n, err == nil
}

// decodeEvent reads ev's fields from its canonical text c; text is c as a
// string, whose substrings become the fields (one string per batch rather
// than one per field). strs is an arena for the string lists. On !ok ev is
// partly filled and the caller decodes c with encoding/json instead.
func decodeEvent(c []byte, text string, ev *Event, strs *[]string) bool {
	d := scan{data: c}
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return d.pos == len(c)
	}
	for {
		key, ok := d.plainString()
		if !ok || !d.byte(':') {
			return false
		}
		switch string(key) {
		case "id":
			ev.ID, ok = d.eventString(text)
		case "seq":
			ev.Seq, ok = d.integer()
		case "time":
			ev.Time, ok = d.eventString(text)
		case "tenant":
			ev.Tenant, ok = d.eventString(text)
		case "node_id":
			ev.NodeID, ok = d.eventString(text)
		case "agent":
			ev.Agent, ok = d.eventString(text)
		case "chain":
			ev.Chain, ok = d.stringList(text, strs)
		case "tool":
			ev.Tool, ok = d.eventString(text)
		case "action":
			ev.Action, ok = d.eventString(text)
		case "shadow_action":
			ev.ShadowAction, ok = d.eventString(text)
		case "reasons":
			ev.Reasons, ok = d.stringList(text, strs)
		case "rule_ids":
			ev.RuleIDs, ok = d.stringList(text, strs)
		case "policy_revision":
			ev.PolicyRevision, ok = d.integer()
		case "input_digest":
			ev.InputDigest, ok = d.eventString(text)
		case "decision_ns":
			ev.DecisionNS, ok = d.integer()
		case "trace_id":
			ev.TraceID, ok = d.eventString(text)
		case "span_id":
			ev.SpanID, ok = d.eventString(text)
		case "status":
			var n int64
			n, ok = d.integer()
			ev.Status = int(n)
			ok = ok && int64(ev.Status) == n
		case "approval_id":
			ev.ApprovalID, ok = d.eventString(text)
		case "override_jti":
			ev.OverrideJTI, ok = d.eventString(text)
		case "cost_micro_usd":
			ev.CostMicroUSD, ok = d.integer()
		default:
			// A field this version does not know. encoding/json matches
			// keys case-insensitively, so one that might fold onto a
			// field name is left to it; canonical keys are lower case.
			ok = lowerASCII(key) && d.skipValue()
		}
		if !ok {
			return false
		}
		if d.byte('}') {
			return d.pos == len(c)
		}
		if !d.byte(',') {
			return false
		}
	}
}

// eventString reads a string without escapes as a substring of text (the
// string form of d.data).
func (d *scan) eventString(text string) (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	start := d.pos
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case '"':
			d.pos++
			return text[start : d.pos-1], true
		case '\\':
			return "", false
		}
		d.pos++
	}
	return "", false
}

// stringList reads an array of strings without escapes.
func (d *scan) stringList(text string, strs *[]string) ([]string, bool) {
	if !d.byte('[') {
		return nil, false
	}
	start := len(*strs)
	if !d.byte(']') {
		for {
			s, ok := d.eventString(text)
			if !ok {
				return nil, false
			}
			*strs = append(*strs, s)
			if d.byte(']') {
				break
			}
			if !d.byte(',') {
				return nil, false
			}
		}
	}
	if len(*strs) == start {
		return []string{}, true // as encoding/json: empty, not nil
	}
	// Capped, so that appending to one list cannot overwrite the next.
	return (*strs)[start:len(*strs):len(*strs)], true
}

// skipValue steps over one value of canonical (hence valid) JSON, up to
// the ',' or '}' after it.
func (d *scan) skipValue() bool {
	depth := 0
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case '"':
			for d.pos++; d.pos < len(d.data) && d.data[d.pos] != '"'; d.pos++ {
				if d.data[d.pos] == '\\' {
					d.pos++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return true
			}
			depth--
		case ',':
			if depth == 0 {
				return true
			}
		}
		d.pos++
	}
	return false
}

func lowerASCII(s []byte) bool {
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}
