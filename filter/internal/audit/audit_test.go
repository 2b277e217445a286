package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/jcs"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func event(i int, tenant string) Event {
	return Event{ID: fmt.Sprintf("d%d", i), Time: "2026-11-24T10:00:00Z", Tenant: tenant, Agent: "a", Action: "allow"}
}

func TestChainBatches(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	c := NewChain("node-1", "node-1/vm-1", 100, key)
	for i := range 5 {
		if _, err := c.Append(event(i, "acme")); err != nil {
			t.Fatal(err)
		}
	}
	c.Append(event(5, "platform"))

	b, ok := c.Next(3)
	if !ok || b.SeqFirst != 1 || b.SeqLast != 3 || len(b.Events) != 3 || b.PrevHash != strings.Repeat("0", 64) || b.Tenant != "acme" {
		t.Fatalf("first batch %+v", b)
	}
	if err := VerifyBatch(b, pub); err != nil {
		t.Fatal(err)
	}
	c.Ack(b.SeqLast)
	b2, _ := c.Next(10)
	if b2.SeqFirst != 4 || b2.SeqLast != 5 || b2.PrevHash != b.BatchHash {
		t.Fatalf("second batch %+v (does not chain from %s)", b2, b.BatchHash)
	}
	if err := VerifyBatch(b2, pub); err != nil {
		t.Fatal(err)
	}
	c.Ack(b2.SeqLast)
	b3, _ := c.Next(10)
	if b3.Tenant != "platform" || b3.SeqFirst != 6 {
		t.Errorf("tenant batch %+v", b3)
	}

	// Tampering anywhere is caught.
	tamper := []func(*Batch){
		func(b *Batch) { b.Events[1].Action = "deny" },
		func(b *Batch) { b.Events[0].Seq = 9 },
		func(b *Batch) { b.PrevHash = strings.Repeat("1", 64) },
		func(b *Batch) { // flip one character, so the bytes always change
			i := len(b.Signature) - 2
			c := byte('0')
			if b.Signature[i] == '0' {
				c = '1'
			}
			b.Signature = b.Signature[:i] + string(c) + b.Signature[i+1:]
		},
		func(b *Batch) { b.Events = b.Events[:2] },
	}
	for i, f := range tamper {
		bb, _ := c2Batch(t, key)
		f(&bb)
		if err := VerifyBatch(bb, pub); err == nil {
			t.Errorf("tamper %d not detected", i)
		}
	}
}

func c2Batch(t *testing.T, key ed25519.PrivateKey) (Batch, *Chain) {
	c := NewChain("n", "n/1", 10, key)
	for i := range 3 {
		c.Append(event(i, "acme"))
	}
	b, _ := c.Next(10)
	return b, c
}

func TestOverflowAndResume(t *testing.T) {
	c := NewChain("n", "n/1", 3, newKey(t))
	for i := range 3 {
		if _, err := c.Append(event(i, "acme")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Append(event(3, "acme")); !errors.Is(err, ErrFull) || !c.Full() {
		t.Fatalf("append to a full queue: %v", err)
	}
	// 409 expected_seq 3: 1 and 2 were accepted; resend from 3.
	if err := c.Resume(3); err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Next(10); b.SeqFirst != 3 || c.Len() != 1 {
		t.Errorf("after resume: %+v, len %d", b, c.Len())
	}
	if err := c.Resume(10); err == nil {
		t.Error("resume ahead of the chain accepted")
	}
	if err := c.Resume(1); err == nil {
		t.Error("resume before the kept events accepted")
	}
	c.Ack(3)
	if _, ok := c.Next(10); ok || c.Len() != 0 {
		t.Error("queue not empty after the last ack")
	}
	if ev, err := c.Append(event(9, "acme")); err != nil || ev.Seq != 4 {
		t.Errorf("seq after acks: %d, %v", ev.Seq, err)
	}
}

func TestCanonical(t *testing.T) {
	ev := Event{ID: "x", Tenant: "t\u2028<&>\"\\\n\x01é", Status: 403, DecisionNS: 12345, Chain: []string{"a", "b"}}
	got, err := Canonical(ev)
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{`"tenant":"t` + "\u2028" + `<&>\"\\\n\u0001é"`, `"status":403`, `"chain":["a","b"]`, `{"action":"","agent":""`} {
		if !strings.Contains(s, want) {
			t.Errorf("canonical form %s lacks %s", s, want)
		}
	}
	if strings.ContainsAny(s, " \n") {
		t.Errorf("whitespace in %s", s)
	}
	// Invalid UTF-8 becomes U+FFFD (as encoding/json does), the same bytes
	// every time.
	if got, err := Canonical(Event{ID: "\xff"}); err != nil || !strings.Contains(string(got), "\"id\":\"\ufffd\"") {
		t.Errorf("invalid UTF-8: %s, %v", got, err)
	}
}

// generic is the obvious JCS encoder: encoding/json for the field set,
// then keys sorted and re-encoded. Canonical must agree with it.
func generic(t *testing.T, ev Event) []byte {
	t.Helper()
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var enc func(b []byte, v any) []byte
	enc = func(b []byte, v any) []byte {
		switch x := v.(type) {
		case nil:
			return append(b, "null"...)
		case string:
			return jcs.AppendString(b, x)
		case json.Number:
			return append(b, x...)
		case []any:
			b = append(b, '[')
			for i, e := range x {
				if i > 0 {
					b = append(b, ',')
				}
				b = enc(b, e)
			}
			return append(b, ']')
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			b = append(b, '{')
			for i, k := range keys {
				if i > 0 {
					b = append(b, ',')
				}
				b = jcs.AppendString(b, k)
				b = append(b, ':')
				b = enc(b, x[k])
			}
			return append(b, '}')
		}
		t.Fatalf("unexpected %T", v)
		return nil
	}
	return enc(nil, v)
}

func TestCanonicalMatchesGeneric(t *testing.T) {
	events := []Event{
		{},
		{ID: "a", Seq: 3, Time: "t", Tenant: "x", NodeID: "n", Agent: "a", Chain: []string{"a", "p"}, Tool: "k.x",
			Action: "sanitize", ShadowAction: "deny", Reasons: []string{"r1", "r\"2"}, RuleIDs: []string{"x"},
			PolicyRevision: 7, InputDigest: "ab", Redactions: []Redaction{{Path: []string{"memo"}, Detectors: []string{"card"}}, {}},
			DecisionNS: -5, TraceID: "t", SpanID: "s", Status: 403, ApprovalID: "ap", OverrideJTI: "j", CostMicroUSD: 50000},
		{Reasons: []string{}, Chain: []string{"\x00\x1f\u2028é"}},
	}
	for i, ev := range events {
		got, err := Canonical(ev)
		if err != nil {
			t.Fatal(err)
		}
		if want := generic(t, ev); !bytes.Equal(got, want) {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if _, err := Canonical(Event{Seq: 1 << 60}); err == nil {
		t.Error("unsafe integer accepted")
	}
}

// TestCanonicalMatchesJCS holds the hand-written encoder to the control
// plane's: the control plane hashes jcs.Canonicalize of each raw event, so
// any difference is a chain break.
func TestCanonicalMatchesJCS(t *testing.T) {
	events := []Event{
		{},
		{ID: "a", Seq: 3, Time: "2026-11-24T10:00:00.123Z", Tenant: "acme", NodeID: "n", Agent: "billing-agent",
			Chain: []string{"a", "p"}, Tool: "payments.create", Action: "allow", ShadowAction: "deny",
			Reasons: []string{"r1", "r\"2 <&>"}, RuleIDs: []string{"x"}, PolicyRevision: 7, InputDigest: "ab",
			Redactions: []Redaction{{Path: []string{"memo"}, Detectors: []string{"card"}}}, DecisionNS: 1234,
			TraceID: "t", SpanID: "s", Status: 201, ApprovalID: "ap", OverrideJTI: "j", CostMicroUSD: 50000},
		{Action: "sanitize", CostMicroUSD: MaxCostMicroUSD, Chain: []string{"\x00\x1f\u2028\u2029é\U0001F600"}},
		{Action: "deny", Reasons: []string{}, Agent: "\xff", Seq: 1 << 53, DecisionNS: -(1 << 53)},
	}
	for i, ev := range events {
		got, err := Canonical(ev)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		want, err := jcs.Canonicalize(raw)
		if err != nil {
			t.Fatalf("event %d: jcs: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
	for _, cost := range []int64{-1, MaxCostMicroUSD + 1} {
		if _, err := Canonical(Event{CostMicroUSD: cost}); err == nil {
			t.Errorf("cost %d accepted; the control plane refuses it", cost)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add("id", "agent", "reason", int64(1), 200, int64(0))
	f.Add("\xff\x00", "\u2028", "\"\\", int64(-1), -1, int64(50000))
	f.Fuzz(func(t *testing.T, id, agent, reason string, rev int64, status int, cost int64) {
		if rev > 1<<53 || rev < -(1<<53) {
			return
		}
		ev := Event{ID: id, Agent: agent, Reasons: []string{reason}, PolicyRevision: rev, Status: status % (1 << 30), CostMicroUSD: cost}
		got, err := Canonical(ev)
		if cost < 0 || cost > MaxCostMicroUSD {
			if err == nil {
				t.Fatalf("cost %d accepted", cost)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := generic(t, ev); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
		raw, _ := json.Marshal(ev)
		if want, err := jcs.Canonicalize(raw); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %s\njcs %s (%v)", got, want, err)
		}
	})
}

// TestBatchAppendJSON: the hand-written body decodes to the same batch as
// encoding/json's, signature absent or present, events with every field.
func TestBatchAppendJSON(t *testing.T) {
	for _, key := range []ed25519.PrivateKey{nil, newKey(t)} {
		c := NewChain("node-1", "node-1/vm-\"1\"", 10, key)
		full := Event{ID: "d", Time: "t", Tenant: "acme", Agent: "a\u2028<b>", Chain: []string{"a", "p"}, Tool: "x", Action: "deny",
			ShadowAction: "allow", Reasons: []string{"r \x01"}, RuleIDs: []string{"k"}, PolicyRevision: 3, InputDigest: "ab",
			Redactions: []Redaction{{Path: []string{"memo"}, Detectors: []string{"card"}}}, DecisionNS: 9, TraceID: "t1",
			SpanID: "s1", Status: 201, ApprovalID: "ap", OverrideJTI: "j", CostMicroUSD: 50000}
		c.Append(full)
		c.Append(event(2, "acme"))
		b, ok := c.Next(10)
		if !ok {
			t.Fatal("no batch")
		}
		got, err := b.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		var fromHand, fromJSON Batch
		if err := json.Unmarshal(got, &fromHand); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		want, _ := json.Marshal(b)
		json.Unmarshal(want, &fromJSON)
		a, _ := json.Marshal(fromHand)
		w, _ := json.Marshal(fromJSON)
		if !bytes.Equal(a, w) {
			t.Errorf("AppendJSON decodes to\n%s\nencoding/json to\n%s", a, w)
		}
		if key != nil {
			if err := VerifyBatch(fromHand, key.Public().(ed25519.PublicKey)); err != nil {
				t.Errorf("decoded batch does not verify: %v", err)
			}
		}
	}
}
