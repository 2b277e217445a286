package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
	"github.com/aegis-mesh/aegis/jcs"
)

// TestDecodeBatchFast: whenever the fast reader takes a body, encoding/json
// reads the same batch from it, and each canonical event is the
// canonicaliser's; the shapes producers send take the fast path, and
// everything unusual is left to encoding/json.
func TestDecodeBatchFast(t *testing.T) {
	p := newProducer(t, "node-1", "acme", "c1")
	valid, err := json.Marshal(p.next(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		if !bytes.Contains(valid, []byte(old)) {
			t.Fatalf("%q not in the batch", old)
		}
		return strings.Replace(string(valid), old, new, 1)
	}
	for _, tc := range []struct {
		name, body string
		fast       bool
	}{
		{"as marshalled", string(valid), true},
		{"white space around everything", " \n" + strings.NewReplacer(`,"`, " ,\t\"", `":`, `" : `, `[`, "[ ", `]`, " ]").Replace(string(valid)) + "\r\n", true},
		{"fields reordered", `{"signature":"ab","events":[{"b":1,"a":2}],"seq_last":1,"seq_first":1,"chain_id":"c","tenant":"t","node_id":"n","prev_hash":"p","batch_hash":"h"}`, true},
		{"fields missing", `{"chain_id":"c"}`, true},
		{"empty object", `{}`, true},
		{"empty events", `{"events":[]}`, true},
		{"negative seq", `{"seq_first":-3,"seq_last":0}`, true},
		{"field twice", edit(`"tenant":"acme"`, `"tenant":"acme","tenant":"other"`), false},
		{"unknown field", edit(`"tenant":"acme"`, `"tenant":"acme","extra":1`), false},
		{"field name in another case", edit(`"tenant":`, `"Tenant":`), false},
		{"escape in a field", edit(`"tenant":"acme"`, `"tenant":"\u0061cme"`), false},
		{"null field", edit(`"tenant":"acme"`, `"tenant":null`), false},
		{"seq as a fraction", edit(`"seq_first":1`, `"seq_first":1.0`), false},
		{"seq with an exponent", edit(`"seq_first":1`, `"seq_first":1e0`), false},
		{"seq out of range", edit(`"seq_first":1`, `"seq_first":99999999999999999999`), false},
		{"seq with a leading zero", edit(`"seq_first":1`, `"seq_first":01`), false},
		{"seq as a string", edit(`"seq_first":1`, `"seq_first":"1"`), false},
		{"events null", `{"events":null}`, false},
		{"event not an object", `{"events":[1]}`, false},
		{"event with duplicate keys", `{"events":[{"a":1,"a":2}]}`, false},
		{"event with a lone surrogate", `{"events":[{"a":"\ud800"}]}`, false},
		{"unterminated events", `{"events":[{"a":1}`, false},
		{"trailing data", string(valid) + ` {}`, false},
		{"trailing comma", `{"tenant":"t",}`, false},
		{"not an object", `[]`, false},
		{"empty", ``, false},
		{"non-ASCII field value", `{"tenant":"été"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want Batch
			jerr := httpapi.DecodeBody([]byte(tc.body), &want)
			fb, ok := decodeBatchFast([]byte(tc.body))
			if ok != tc.fast {
				t.Fatalf("fast path taken: %v, want %v", ok, tc.fast)
			}
			if !ok {
				return
			}
			if jerr != nil {
				t.Fatalf("the fast path took a body encoding/json refuses: %v", jerr)
			}
			if !reflect.DeepEqual(fb.Batch, want) {
				t.Fatalf("fast %+v\njson %+v", fb.Batch, want)
			}
			if len(fb.ends) != len(want.Events) {
				t.Fatalf("%d canonical events for %d", len(fb.ends), len(want.Events))
			}
			start := 0
			for i, raw := range want.Events {
				c, err := jcs.Canonicalize(raw)
				if err != nil || string(fb.canon[start:fb.ends[i]]) != string(c) {
					t.Fatalf("event %d: %s, want %s %v", i, fb.canon[start:fb.ends[i]], c, err)
				}
				start = fb.ends[i]
			}
		})
	}
}

// TestDecodeEventFast: whenever the fast reader takes a canonical event,
// encoding/json decodes the same Event from it.
func TestDecodeEventFast(t *testing.T) {
	const base = `{"action":"allow","agent":"a1","approval_id":"","chain":["a1","a0"],"cost_micro_usd":2500,"decision_ns":1200,"id":"e-1",` +
		`"input_digest":"d","node_id":"n1","override_jti":"","policy_revision":7,"reasons":[],"rule_ids":["r1"],"seq":1,` +
		`"shadow_action":"deny","span_id":"s","status":200,"tenant":"acme","time":"2026-11-20T12:00:00Z","tool":"pay","trace_id":"tr"}`
	with := func(key, value string) string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(base), &m); err != nil {
			t.Fatal(err)
		}
		m[key] = json.RawMessage(value)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	for _, tc := range []struct {
		name, event string
		fast        bool
	}{
		{"every field", base, true},
		{"no fields", `{}`, true},
		{"unknown fields of every kind", with("redactions", `[{"detector":"pan","path":"/a\"}{[,"}]`), true},
		{"unknown scalar fields", with("zz", `-1.5e+30`), true},
		{"unknown string with escapes", with("b_extra", `"a\"},\\"`), true},
		{"unknown null", with("record_input", `null`), true},
		{"non-ASCII value", with("agent", `"agënt-€"`), true},
		{"empty lists", with("chain", `[]`), true},
		{"negative and large integers", with("decision_ns", `-9007199254740992`), true},
		{"escape in a field", with("agent", `"a\"b"`), false},
		{"control character in a field", with("agent", `"a\nb"`), false},
		{"escape in a list", with("chain", `["a\\b"]`), false},
		{"null field", with("agent", `null`), false},
		{"null list", with("chain", `null`), false},
		{"number for a string", with("agent", `1`), false},
		{"string for a number", with("seq", `"1"`), false},
		{"fraction", with("seq", `1.5`), false},
		{"beyond int64", with("seq", `1e+21`), false},
		{"number in a list", with("rule_ids", `[1]`), false},
		{"field name in another case", with("ID", `"e-2"`), false},
		{"unknown key with upper case", with("Xyz", `1`), false},
		{"non-ASCII key", with("ïd", `1`), false},
		{"not an object", `[1]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := jcs.Canonicalize([]byte(tc.event))
			if err != nil {
				t.Fatal(err)
			}
			var want Event
			jerr := json.Unmarshal(c, &want)
			var got Event
			var strs []string
			ok := decodeEvent(c, string(c), &got, &strs)
			if ok != tc.fast {
				t.Fatalf("fast path taken: %v, want %v (%s)", ok, tc.fast, c)
			}
			if !ok {
				return
			}
			if jerr != nil {
				t.Fatalf("the fast path took an event encoding/json refuses: %v", jerr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("fast %+v\njson %+v", got, want)
			}
		})
	}
}

// TestPrepareFastAgrees: a batch read on the fast path prepares to the same
// records, or fails with the same error, as through encoding/json.
func TestPrepareFastAgrees(t *testing.T) {
	p := newProducer(t, "node-1", "acme", "c1")
	pub := p.key.Public().(ed25519.PublicKey)
	batches := map[string]Batch{
		"valid":           p.next(t, 5),
		"gateway tenants": p.next(t, 3, func(m map[string]any) { m["tenant"] = "beta" }),
		"unknown fields": p.next(t, 2, func(m map[string]any) {
			m["redactions"] = []any{map[string]any{"path": "/x", "detector": "pan"}}
			m["new"] = 1.5
		}),
		"escaped strings":  p.next(t, 2, func(m map[string]any) { m["agent"] = "a\"<b>\n" }),
		"events by others": p.next(t, 2, func(m map[string]any) { m["node_id"] = "node-2" }),
		"bad time":         p.next(t, 2, func(m map[string]any) { m["time"] = "now" }),
		"seq as a string":  p.next(t, 2, func(m map[string]any) { m["seq"] = "1" }),
		"upper case field": p.next(t, 2, func(m map[string]any) { m["AGENT"] = "shadow" }),
	}
	reordered := p.next(t, 3)
	reordered.Events[0], reordered.Events[1] = reordered.Events[1], reordered.Events[0]
	batches["reordered"] = reordered
	dup := p.next(t, 2)
	dup.Events[1] = bytes.Replace(dup.Events[1], []byte(`{`), []byte(`{"agent":"x",`), 1)
	batches["duplicate key"] = dup
	for name, b := range batches {
		t.Run(name, func(t *testing.T) {
			body, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			slow, serr := PrepareServing(b, pub, []string{"beta"})
			fb, ok := decodeBatchFast(body)
			if !ok {
				if name == "duplicate key" {
					return // refused by the canonicaliser: encoding/json's path, tested above
				}
				t.Fatal("fast path not taken")
			}
			fast, ferr := prepare(fb.Batch, fb.canon, fb.ends, pub, []string{"beta"})
			if (serr == nil) != (ferr == nil) || serr != nil && serr.Error() != ferr.Error() {
				t.Fatalf("errors differ:\nslow %v\nfast %v", serr, ferr)
			}
			if serr != nil {
				return
			}
			if !reflect.DeepEqual(slow.Records, fast.Records) {
				t.Fatalf("records differ:\nslow %+v\nfast %+v", slow.Records[0], fast.Records[0])
			}
		})
	}
}

// prepareSent prepares b as the handler does: marshalled, read by
// readBatch (the fast path when it applies), then prepared.
func prepareSent(t testing.TB, b Batch, pub ed25519.PublicKey, serves []string) (*Prepared, error) {
	t.Helper()
	body, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/v1/audit/batches", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	fb, err := readBatch(r, MaxBatchBytes)
	if err != nil {
		return nil, err
	}
	return prepare(fb.Batch, fb.canon, fb.ends, pub, serves)
}

// FuzzDecodeBatchFast: the fast reader takes nothing encoding/json would
// read differently.
func FuzzDecodeBatchFast(f *testing.F) {
	p := newProducer(f, "node-1", "acme", "c1")
	valid, err := json.Marshal(p.next(f, 2))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(valid), `{}`, `{"events":[{"b":[1,{"c":"\u00e9"}],"a":null}]}`, `{"seq_first":-0,"tenant":"x"}`, `{"Tenant":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fb, ok := decodeBatchFast(data)
		if !ok {
			return
		}
		var want Batch
		if err := httpapi.DecodeBody(data, &want); err != nil {
			t.Fatalf("%q: the fast path took a body encoding/json refuses: %v", data, err)
		}
		if !reflect.DeepEqual(fb.Batch, want) {
			t.Fatalf("%q:\nfast %+v\njson %+v", data, fb.Batch, want)
		}
		start := 0
		for i, raw := range want.Events {
			c, err := jcs.Canonicalize(raw)
			if err != nil || string(fb.canon[start:fb.ends[i]]) != string(c) {
				t.Fatalf("%q: event %d: %s, want %s %v", data, i, fb.canon[start:fb.ends[i]], c, err)
			}
			start = fb.ends[i]
			var ev, wantEv Event
			var strs []string
			if decodeEvent(c, string(c), &ev, &strs) {
				if err := json.Unmarshal(c, &wantEv); err != nil || !reflect.DeepEqual(ev, wantEv) {
					t.Fatalf("%s: fast %+v, json %+v %v", c, ev, wantEv, err)
				}
			}
		}
	})
}
