package cplink

import (
	"encoding/hex"
	"testing"

	"github.com/aegis-mesh/aegis/edge/wal"
)

// FuzzParseVMBatch: the filter's batches are parsed strictly; whatever is
// accepted has one parsed event and one hash per event, chained from
// prev_hash to batch_hash.
func FuzzParseVMBatch(f *testing.F) {
	g := &vmChainGen{id: "edge-1/vm-a"}
	f.Add(g.batch(f, 2))
	f.Add([]byte(`{"chain_id":"c","seq_first":1,"seq_last":1,"prev_hash":"` + hex.EncodeToString(make([]byte, 32)) + `","events":[{"seq":1}],"batch_hash":"00"}`))
	f.Add([]byte(`{"events":[],"chain_id":""}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, evs, hashes, err := parseVMBatch(body)
		if err != nil {
			return
		}
		if len(evs) != len(b.Events) || len(hashes) != len(b.Events) {
			t.Fatalf("%d events, %d parsed, %d hashes", len(b.Events), len(evs), len(hashes))
		}
		prev, _ := hex.DecodeString(b.PrevHash)
		for i, ev := range evs {
			h := wal.ChainHash(prev, ev.Canonical())
			if hex.EncodeToString(h[:]) != hex.EncodeToString(hashes[i]) {
				t.Fatalf("hash %d does not chain", i)
			}
			prev = h[:]
		}
		if hex.EncodeToString(prev) != b.BatchHash {
			t.Fatal("accepted a batch whose hash does not match")
		}
	})
}
