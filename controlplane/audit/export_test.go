package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
	"github.com/aegis-mesh/aegis/jcs"
	"github.com/aegis-mesh/aegis/keys"
)

// fixedSources stand in for the policy and approvals stores behind the
// consumer-side interfaces.
type fixedSources struct{}

func (fixedSources) BundlesActive(_ context.Context, tenant string, _, _ time.Time) ([]evidence.Bundle, error) {
	return []evidence.Bundle{{Revision: 7, Name: tenant + "-payments", Files: map[string][]byte{
		"release.json":  []byte(`{"approvers":["carol"],"publisher":"dave","stage":"enforce"}`),
		"manifest.json": []byte(`{"revision":7}`), "plan.json": []byte(`{"static":{}}`),
	}}}, nil
}

func (fixedSources) ApprovalsBetween(context.Context, string, time.Time, time.Time) ([]json.RawMessage, error) {
	return []json.RawMessage{json.RawMessage(`{"approval_id":"ap-1","status":"approved","approvers":["carol"]}`)}, nil
}

// seeded ingests two chains of 10 events, checkpoints them, then adds two
// more events per chain that no checkpoint covers yet.
func seeded(t *testing.T, d *db.DB) *env {
	t.Helper()
	nodes := &nodeKeys{}
	e := newEnv(t, d, nodes, nil)
	e.svc.cfg.Bundles, e.svc.cfg.Approvals = fixedSources{}, fixedSources{}
	var ps []*producer
	for _, n := range []string{"node-1", "node-2"} {
		p := newProducer(t, n, "acme", "c1")
		nodes.enroll(p)
		ps = append(ps, p)
		if r := e.send(p, p.next(t, 10)); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	if n, err := e.store.CheckpointAll(context.Background(), e.key, e.now); err != nil || n != 2 {
		t.Fatalf("checkpoints: %d %v", n, err)
	}
	if n, err := e.store.CheckpointAll(context.Background(), e.key, e.now); err != nil || n != 0 {
		t.Fatalf("checkpoints of unmoved chains: %d %v", n, err)
	}
	for _, p := range ps {
		if r := e.send(p, p.next(t, 2)); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	return e
}

func (e *env) export(from, to time.Time) []byte {
	e.t.Helper()
	q := url.Values{"tenant": {"acme"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
	r := e.do("GET", "/v1/audit/export?"+q.Encode(), "auditor:acme", nil)
	if r.status != 200 {
		e.t.Fatalf("export: %d %s", r.status, r.body)
	}
	return r.body
}

func TestExportVerifies(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := seeded(t, d)
		pub := e.key.Public().(ed25519.PublicKey)
		rep, err := evidence.Verify(bytes.NewReader(e.export(baseTime, baseTime.Add(2*time.Hour))), evidence.VerifyOptions{Key: pub})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Events != 24 || rep.Chains != 2 || rep.Checkpoints != 2 || rep.CheckpointsMatched != 2 || rep.Bundles != 1 || rep.Approvals != 1 || len(rep.RevisionsWithoutBundle) != 0 {
			t.Fatalf("report %+v", rep)
		}
		// A window in the middle of the chains starts after the last
		// checkpoint before it: with none, at seq 1.
		rep, err = evidence.Verify(bytes.NewReader(e.export(baseTime.Add(4*time.Second), baseTime.Add(6*time.Second))), evidence.VerifyOptions{Key: pub})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Events != 12 || rep.Checkpoints != 0 {
			t.Fatalf("window report %+v", rep)
		}
		kr := e.do("GET", "/v1/audit/evidence-key", "auditor:acme", nil)
		if kr.status != 200 {
			t.Fatalf("evidence key: %d %s", kr.status, kr.body)
		}
		served, err := keys.ParsePublicPEM([]byte(kr.json(t)["public_key_pem"].(string)))
		if err != nil || !served.Equal(pub) || kr.json(t)["key_id"] != keys.KeyID(pub) {
			t.Fatalf("evidence key %s: %v", kr.body, err)
		}
		r := e.do("GET", "/v1/audit/checkpoints?tenant=acme", "auditor:acme", nil)
		var cps struct {
			Checkpoints []evidence.Checkpoint `json:"checkpoints"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &cps) != nil || len(cps.Checkpoints) != 2 {
			t.Fatalf("checkpoints: %d %s", r.status, r.body)
		}
		for _, cp := range cps.Checkpoints {
			if err := evidence.VerifyCheckpoint(pub, cp); err != nil || cp.Seq != 10 || cp.Count != 10 {
				t.Fatalf("checkpoint %+v: %v", cp, err)
			}
		}
	})
}

// TestExportFindsDatabaseTampering: rows changed behind the control plane's
// back are named by the verifier of the next pack.
func TestExportFindsDatabaseTampering(t *testing.T) {
	rehash := func(e *env, seq int64) {
		// Recompute the stored hash of an edited row from its predecessor,
		// as a careful intruder would.
		var prevHex, body string
		if err := e.db.QueryRow(`SELECT hash FROM audit_events WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-1') AND seq = $1`, seq-1).Scan(&prevHex); err != nil {
			t.Fatal(err)
		}
		if err := e.db.QueryRow(`SELECT body FROM audit_events WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-1') AND seq = $1`, seq).Scan(&body); err != nil {
			t.Fatal(err)
		}
		prev, _ := hex.DecodeString(prevHex)
		canon, _ := jcs.Canonicalize([]byte(body))
		sum := sha256.Sum256(append(prev, canon...))
		if _, err := e.db.Exec(`UPDATE audit_events SET hash = $1 WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-1') AND seq = $2`, hex.EncodeToString(sum[:]), seq); err != nil {
			t.Fatal(err)
		}
	}
	for _, dialect := range []db.Dialect{db.Postgres, db.SQLite} {
		for _, tc := range []struct {
			name   string
			tamper func(e *env)
			link   string
			why    string
		}{
			{"row deleted", func(e *env) {
				e.db.Exec(`DELETE FROM audit_events WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-1') AND seq = 3`)
			}, "chain node-1/c1 seq 3", "event missing"},
			{"row edited", func(e *env) {
				e.db.Exec(`UPDATE audit_events SET body = replace(body, '"agent":"agent-1"', '"agent":"mallory"') WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-1') AND seq = 4`)
			}, "chain node-1/c1 seq 4", "event hash does not match"},
			{"rows cut from the end of the checkpointed part", func(e *env) {
				e.db.Exec(`DELETE FROM audit_events WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-1') AND seq >= 8`)
			}, "chain node-1/c1 seq 8", "event missing"},
			{"row edited and rehashed", func(e *env) {
				e.db.Exec(`UPDATE audit_events SET body = replace(body, '"agent":"agent-1"', '"agent":"mallory"') WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-1') AND seq = 10`)
				rehash(e, 10)
			}, "chain node-1/c1 seq 10", "signed checkpoint"},
			{"first row of the window and its anchor deleted", func(e *env) {
				e.db.Exec(`DELETE FROM audit_events WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-1') AND seq IN (3, 4)`)
			}, "chain node-1/c1 seq 3", "event missing"},
		} {
			t.Run(string(dialect)+"/"+tc.name, func(t *testing.T) {
				e := seeded(t, dbtest.New(t, dialect))
				tc.tamper(e)
				from := baseTime
				if strings.HasPrefix(tc.name, "first row") {
					from = baseTime.Add(4 * time.Second)
				}
				_, err := evidence.Verify(bytes.NewReader(e.export(from, baseTime.Add(2*time.Hour))), evidence.VerifyOptions{Key: e.key.Public().(ed25519.PublicKey)})
				var b *evidence.BrokenError
				if !errors.As(err, &b) || b.Link != tc.link || !strings.Contains(b.Reason, tc.why) {
					t.Fatalf("verify: %v; want %s: %s", err, tc.link, tc.why)
				}
			})
		}
	}
}

func FuzzPrepareBatch(f *testing.F) {
	p := newProducer(f, "node-1", "acme", "c1")
	good, _ := json.Marshal(p.next(f, 3))
	f.Add(good)
	f.Add([]byte(`{"node_id":"node-1","tenant":"acme","chain_id":"c1","seq_first":1,"seq_last":1,"prev_hash":"` + evidence.ZeroHash + `","events":[{"id":"x","seq":1}],"batch_hash":"","signature":""}`))
	f.Add([]byte(`{"events":[{"a":1,"a":2}]}`))
	pub := p.key.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			return
		}
		prep, err := Prepare(b, pub)
		if err != nil {
			var be *BatchError
			if !errors.As(err, &be) {
				t.Fatalf("untyped refusal %v", err)
			}
			return
		}
		// Whatever is accepted is a well-formed chain segment signed by pub.
		last := prep.Records[len(prep.Records)-1]
		if hex.EncodeToString(last.Hash[:]) != b.BatchHash || last.Seq != b.SeqLast || prep.Records[0].Seq != b.SeqFirst {
			t.Fatalf("accepted an inconsistent batch %+v", b)
		}
		for _, r := range prep.Records {
			if r.NodeID != b.NodeID || r.Tenant != b.Tenant {
				t.Fatalf("accepted an event of another node or tenant")
			}
		}
	})
}
