package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchBody is a 1000-event batch as a producer sends it, and the key that
// verifies it.
func benchBody(b *testing.B) ([]byte, ed25519.PublicKey) {
	p := newProducer(b, "node-1", "acme", "c1")
	body, err := json.Marshal(p.next(b, 1000))
	if err != nil {
		b.Fatal(err)
	}
	return body, p.key.Public().(ed25519.PublicKey)
}

// BenchmarkIngestPath measures the control plane's CPU work per event
// between the request body and the rows to store, as the batch handler
// does it: read the body, decode the batch with every event canonicalised
// in the same pass, hash the chain, read each event's fields, check seqs,
// ids, tenants and times, verify the signature.
func BenchmarkIngestPath(b *testing.B) {
	body, pub := benchBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/audit/batches", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		fb, err := readBatch(r, MaxBatchBytes)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := prepare(fb.Batch, fb.canon, fb.ends, pub, nil); err != nil {
			b.Fatal(err)
		}
	}
	perEvent(b, 1000)
}

// BenchmarkPrepare is the same work through DecodeBatch (encoding/json)
// and Prepare: the path a body outside the fast reader's shape takes.
func BenchmarkPrepare(b *testing.B) {
	body, pub := benchBody(b)
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
	perEvent(b, 1000)
}

// perEvent reports time and allocations per event of n-event batches.
func perEvent(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
