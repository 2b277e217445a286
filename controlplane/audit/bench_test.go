package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
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

// BenchmarkStoreIngest measures the database side alone on Postgres: one
// op is one prepared 1000-event batch stored (COPY, chain head, spend,
// commit), four chains in parallel as four nodes would send them.
func BenchmarkStoreIngest(b *testing.B) {
	d := dbtest.New(b, db.Postgres)
	st, err := OpenStore(b.Context(), d)
	if err != nil {
		b.Fatal(err)
	}
	const chains, size = 4, 1000
	producers := make([]*producer, chains)
	for i := range producers {
		producers[i] = newProducer(b, fmt.Sprintf("node-%d", i), "acme", "c1")
	}
	// Batches are made before the timer starts: this is the store's time.
	per := (b.N + chains - 1) / chains
	batches := make([][]*Prepared, chains)
	for i, p := range producers {
		pub := p.key.Public().(ed25519.PublicKey)
		for range per {
			prep, err := Prepare(p.next(b, size), pub)
			if err != nil {
				b.Fatal(err)
			}
			batches[i] = append(batches[i], prep)
		}
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, chains)
	for i := range producers {
		wg.Go(func() {
			for _, prep := range batches[i] {
				if _, err := st.Ingest(b.Context(), prep, baseTime); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(per*chains*size)/b.Elapsed().Seconds(), "events/s")
	perEvent(b, size)
}
