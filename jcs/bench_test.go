package jcs

import "testing"

// benchEvent is an audit event as the filter sends it (already canonical):
// the shape the control plane canonicalises a hundred thousand times a
// second at ingest.
const benchEvent = `{"action":"allow","agent":"agent-7","approval_id":"","chain":["agent-7"],"cost_micro_usd":2500,"decision_ns":1907,"id":"0f6c2a9e-bench-0-1207","input_digest":"9f2c4be0a1d3e5f7091b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071","node_id":"0f6c2a9e-bench-0","override_jti":"","policy_revision":42,"reasons":[],"redactions":[],"rule_ids":["payments.allow_small"],"seq":1207,"shadow_action":"","span_id":"00f067aa0ba902b7","status":200,"tenant":"bench","time":"2026-11-24T04:17:38.207Z","tool":"payments.create","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`

// benchMessy is the same kind of event as another producer might write it:
// keys out of order, white space, escapes and a non-integer number.
const benchMessy = `{ "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "tool": "payments.create", "time": "2026-11-24T04:17:38.207Z",
  "tenant": "bench", "status": 200, "span_id": "00f067aa0ba902b7", "shadow_action": "", "seq": 1207,
  "rule_ids": ["payments.allow_small"], "redactions": [{"path": "/card", "detector": "pan"}], "reasons": ["caf\u00e9 \"quoted\""],
  "policy_revision": 42, "override_jti": "", "node_id": "0f6c2a9e-bench-0", "input_digest": "9f2c4be0a1d3e5f7091b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071",
  "id": "0f6c2a9e-bench-0-1207", "decision_ns": 1.907E3, "cost_micro_usd": 2500, "chain": ["agent-7"], "approval_id": "", "agent": "agent-7",
  "action": "allow" }`

func BenchmarkAppendCanonical(b *testing.B) {
	for _, bc := range []struct{ name, in string }{{"canonical", benchEvent}, {"messy", benchMessy}} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(bc.in)
			buf := make([]byte, 0, 2*len(in))
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = AppendCanonical(buf[:0], in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
