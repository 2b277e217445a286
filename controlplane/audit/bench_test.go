package audit

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"
)

// BenchmarkPrepare measures the CPU side of ingest per event: decoding a
// 1000-event batch, canonicalising and hashing every event, reading its
// fields and checking the signature.
func BenchmarkPrepare(b *testing.B) {
	p := newProducer(b, "node-1", "acme", "c1")
	body, err := json.Marshal(p.next(b, 1000))
	if err != nil {
		b.Fatal(err)
	}
	pub := p.key.Public().(ed25519.PublicKey)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		batch, err := DecodeBatch(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Prepare(batch, pub); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/event")
}
