package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
	"github.com/aegis-mesh/aegis/edge/cplink"
	"github.com/aegis-mesh/aegis/edge/wal"
)

// TestEdgeShipperInterop ships an edge audit WAL with the edge's own
// shipper into this ingest API, across a restart of the edge, and checks
// that the stored chain is complete, single and verifiable.
func TestEdgeShipperInterop(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		nodes := &nodeKeys{}
		e := newEnv(t, d, nodes, nil)
		p := newProducer(t, "edge-1", "acme", "edge-1")
		nodes.enroll(p)
		dir := t.TempDir()
		total := 0
		for round, n := range []int{250, 60} {
			w, err := wal.Open(dir, wal.Options{NodeID: "edge-1", Sync: wal.SyncNone})
			if err != nil {
				t.Fatal(err)
			}
			var evs []json.RawMessage
			for i := range n {
				ev, _ := json.Marshal(map[string]any{
					"id": fmt.Sprintf("edge-dec-%d-%d", round, i), "time": baseTime.Add(time.Duration(total+i) * time.Second).Format(time.RFC3339Nano),
					"tenant": "acme", "agent": "agent-1", "chain": []string{"agent-1"}, "tool": "payments", "action": "allow", "shadow_action": "",
					"reasons": []string{}, "rule_ids": []string{}, "policy_revision": 3, "input_digest": "00", "redactions": []any{},
					"decision_ns": 900, "trace_id": "", "span_id": "", "status": 200, "approval_id": "", "override_jti": "",
				})
				evs = append(evs, ev)
			}
			if _, _, err := w.Append(context.Background(), evs); err != nil {
				t.Fatal(err)
			}
			total += n
			remote, err := cplink.NewRemote(e.srv.URL, "node:edge-1:acme", 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			sh, err := cplink.NewShipper(w, remote, cplink.ShipperConfig{NodeID: "edge-1", Key: p.key, BatchSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sh.Run(ctx) }()
			guard := time.After(60 * time.Second)
			for w.Shipped() < int64(total) {
				select {
				case <-guard:
					t.Fatalf("shipped %d of %d (failures %d)", w.Shipped(), total, sh.Failures())
				case <-time.After(10 * time.Millisecond):
				}
			}
			cancel()
			<-done
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.count(`SELECT count(*) FROM audit_events WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'edge-1')`); n != total {
			t.Fatalf("%d events stored, want %d", n, total)
		}
		if n := e.count(`SELECT count(*) FROM audit_incidents`); n != 0 {
			t.Fatalf("%d incidents from an honest edge", n)
		}
		if _, err := e.store.CheckpointAll(context.Background(), e.key, e.now); err != nil {
			t.Fatal(err)
		}
		rep, err := evidence.Verify(bytes.NewReader(e.export(baseTime, baseTime.Add(time.Hour))), evidence.VerifyOptions{Key: e.key.Public().(ed25519.PublicKey)})
		if err != nil || rep.Events != int64(total) {
			t.Fatalf("pack of the edge chain: %+v %v", rep, err)
		}
	})
}
