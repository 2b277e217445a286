package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestPrepareRefuses(t *testing.T) {
	p := newProducer(t, "node-1", "acme", "c1")
	pub := p.key.Public().(ed25519.PublicKey)
	// fresh makes a new valid batch from a new producer, changes it, and
	// re-signs nothing: the refusal must come from the change.
	fresh := func(opts ...evOpt) Batch {
		q := newProducer(t, "node-1", "acme", "c1")
		return q.next(t, 3, opts...)
	}
	for _, tc := range []struct {
		name  string
		batch func() Batch
		kind  string
	}{
		{"no events", func() Batch { b := fresh(); b.Events = nil; return b }, CodeBadBatch},
		{"seq_first 0", func() Batch { b := fresh(); b.SeqFirst, b.SeqLast = 0, 2; return b }, CodeBadBatch},
		{"seq_last off", func() Batch { b := fresh(); b.SeqLast = 9; return b }, CodeBadBatch},
		{"prev_hash not hex", func() Batch { b := fresh(); b.PrevHash = strings.Repeat("Z", 64); return b }, CodeBadBatch},
		{"prev_hash upper case", func() Batch { b := fresh(); b.PrevHash = strings.Repeat("A", 64); return b }, CodeBadBatch},
		{"empty chain id", func() Batch { b := fresh(); b.ChainID = ""; return b }, CodeBadBatch},
		{"chain id with a space", func() Batch { b := fresh(); b.ChainID = "a b"; return b }, CodeBadBatch},
		{"event of another node", func() Batch { return fresh(func(m map[string]any) { m["node_id"] = "node-2" }) }, CodeBadBatch},
		{"event of an unserved tenant", func() Batch { return fresh(func(m map[string]any) { m["tenant"] = "other" }) }, CodeTenantNotServed},
		{"event without tenant", func() Batch { return fresh(func(m map[string]any) { m["tenant"] = "" }) }, CodeBadBatch},
		{"event time not RFC 3339", func() Batch { return fresh(func(m map[string]any) { m["time"] = "yesterday" }) }, CodeBadBatch},
		{"event without id", func() Batch { return fresh(func(m map[string]any) { m["id"] = "" }) }, CodeBadBatch},
		{"negative cost", func() Batch { return fresh(func(m map[string]any) { m["cost_micro_usd"] = -1 }) }, CodeBadBatch},
		{"huge cost", func() Batch { return fresh(func(m map[string]any) { m["cost_micro_usd"] = 1e15 }) }, CodeBadBatch},
		{"seq as a string", func() Batch { return fresh(func(m map[string]any) { m["seq"] = "1" }) }, CodeBadBatch},
		{"event not an object", func() Batch { b := fresh(); b.Events[0] = json.RawMessage(`[1]`); return b }, CodeBadBatch},
		{"duplicate key in an event", func() Batch {
			b := fresh()
			b.Events[0] = bytes.Replace(b.Events[0], []byte(`{`), []byte(`{"agent":"x",`), 1)
			return b
		}, CodeBadBatch},
		{"a field name in another case", func() Batch { return fresh(func(m map[string]any) { m["Tenant"] = "other" }) }, CodeBadBatch},
		{"only the other case", func() Batch {
			return fresh(func(m map[string]any) { m["ID"] = m["id"]; delete(m, "id") })
		}, CodeBadBatch},
		{"same id twice", func() Batch { return fresh(func(m map[string]any) { m["id"] = "same" }) }, CodeDuplicateID},
		{"unsigned", func() Batch { b := fresh(); b.Signature = ""; return b }, CodeBadSignature},
		{"batch_hash of another batch", func() Batch { b := fresh(); b.BatchHash = strings.Repeat("0", 64); return b }, CodeHashMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.batch()
			_, err := Prepare(b, pub)
			var be *BatchError
			if !errors.As(err, &be) || be.Kind != tc.kind {
				t.Fatalf("err = %v, want %s", err, tc.kind)
			}
			// The same refusal for the batch as sent, read the way the
			// handler reads it.
			_, err2 := prepareSent(t, b, pub, nil)
			if err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("as sent: %v, want %v", err2, err)
			}
		})
	}
	if _, err := Prepare(p.next(t, 3), pub); err != nil {
		t.Fatalf("a valid batch: %v", err)
	}
}

func TestDecodeBatchStrict(t *testing.T) {
	for _, in := range []string{``, `{`, `{"x":1}`, `{} {}`, `[]`, `{"events":{}}`, `{"seq_first":"1"}`} {
		if _, err := DecodeBatch([]byte(in)); err == nil {
			t.Errorf("%q decoded", in)
		}
	}
}

func TestParseCursor(t *testing.T) {
	c := Cursor{TimeUS: 1763640000000000, ID: "node-1-7"}
	got, err := ParseCursor(c.String())
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, s := range []string{"zz", "!!", "MTIz", "OmlkeA", "YWJjOmlk", "MTI6"} { // "123", ":idx", "abc:id", "12:"
		if _, err := ParseCursor(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add(Cursor{TimeUS: 5, ID: "a"}.String())
	f.Add("MTI6")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil || s == "" {
			return
		}
		again, err := ParseCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %+v %v", s, c, again, err)
		}
	})
}

func TestRunCheckpointsRefusesZeroInterval(t *testing.T) {
	s := &Service{}
	if err := s.RunCheckpoints(t.Context(), 0); err == nil {
		t.Fatal("a zero interval was accepted")
	}
}
