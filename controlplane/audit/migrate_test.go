package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
)

// migrationsBefore returns the store's migrations older than version.
func migrationsBefore(t *testing.T, version string) fs.FS {
	t.Helper()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := fs.ReadDir(sub, ".")
	if err != nil {
		t.Fatal(err)
	}
	old := fstest.MapFS{}
	for _, e := range entries {
		if e.Name() >= version {
			continue
		}
		b, err := fs.ReadFile(sub, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		old[e.Name()] = &fstest.MapFile{Data: b}
	}
	return old
}

// TestMigrationChainKeyKeepsRows: a database written with the 0001/0002
// schema (events keyed by node and chain text) keeps every event, chain
// head and chain tenant through 0003, and ingest, resends, queries and
// evidence packs carry on from them.
func TestMigrationChainKeyKeepsRows(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if err := d.Migrate(ctx, Component, migrationsBefore(t, "0003")); err != nil {
			t.Fatal(err)
		}
		nodes := &nodeKeys{}
		ps := []*producer{newProducer(t, "node-1", "acme", "c1"), newProducer(t, "node-2", "acme", "c1"), newProducer(t, "node-2", "acme", "c2")}
		// node-2/c2 is a shared gateway's chain that also carries an event
		// of tenant beta.
		serve := func(m map[string]any) {
			if m["seq"] == int64(3) {
				m["tenant"], m["id"] = "beta", "beta-3"
			}
		}
		first := map[*producer]Batch{}
		for i, p := range ps {
			nodes.enroll(p)
			var opts []evOpt
			if i == 2 {
				opts = append(opts, serve)
			}
			b := p.next(t, 5, opts...)
			first[p] = b
			prep, err := PrepareServing(b, p.key.Public().(ed25519.PublicKey), []string{"beta"})
			if err != nil {
				t.Fatal(err)
			}
			last := prep.Records[len(prep.Records)-1]
			if _, err := d.Exec(`INSERT INTO audit_chains (node_id, chain_id, tenant, head_seq, head_hash, event_count, checkpoint_seq, updated_us) VALUES ($1, $2, $3, $4, $5, $6, 0, 0)`,
				p.node, p.chain, p.tenant, last.Seq, hex.EncodeToString(last.Hash[:]), len(prep.Records)); err != nil {
				t.Fatal(err)
			}
			for _, r := range prep.Records {
				if _, err := d.Exec(`INSERT INTO audit_events (node_id, chain_id, seq, tenant, id, time_us, agent, tool, action, policy_revision, cost_micro_usd, hash, body, received_us)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
					p.node, p.chain, r.Seq, r.Tenant, r.ID, r.TimeUS, r.Agent, r.Tool, r.Action, r.PolicyRevision, r.CostMicroUSD, hex.EncodeToString(r.Hash[:]), string(r.Body), 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := d.Exec(`INSERT INTO audit_chain_tenants (tenant, node_id, chain_id) VALUES ('beta', 'node-2', 'c2')`); err != nil {
			t.Fatal(err)
		}

		e := newEnv(t, d, nodes, nil) // migrates to the current schema
		send := func(p *producer, b Batch) reply {
			body, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			return e.do("POST", "/v1/audit/batches", "node:"+p.node+":"+p.tenant+":beta", body)
		}
		if n := e.count(`SELECT count(*) FROM audit_events`); n != 15 {
			t.Fatalf("%d events after the migration, want 15", n)
		}
		if n := e.count(`SELECT count(DISTINCT chain_key) FROM audit_chains`); n != 3 {
			t.Fatalf("%d distinct chain keys, want 3", n)
		}
		for _, p := range ps {
			seq, h, err := e.store.Head(ctx, p.node, p.chain)
			if err != nil || seq != 5 || h != hex.EncodeToString(p.hashes[4][:]) {
				t.Fatalf("head of %s/%s: %d %s %v", p.node, p.chain, seq, h, err)
			}
			if n := e.count(`SELECT count(*) FROM audit_events e JOIN audit_chains c USING (chain_key) WHERE c.node_id = $1 AND c.chain_id = $2`, p.node, p.chain); n != 5 {
				t.Fatalf("%s/%s has %d events, want 5", p.node, p.chain, n)
			}
			// A resend of the migrated events is recognised by their
			// stored hashes; the next batch continues the stored head.
			if r := send(p, first[p]); r.status != 200 || r.json(t)["duplicates"] != float64(5) {
				t.Fatalf("resend to %s/%s: %d %s", p.node, p.chain, r.status, r.body)
			}
			if r := send(p, p.next(t, 2)); r.status != 200 || r.json(t)["accepted"] != float64(2) {
				t.Fatalf("next batch of %s/%s: %d %s", p.node, p.chain, r.status, r.body)
			}
		}
		// An event id migrated under one chain is still refused under another.
		dup := newProducer(t, "node-3", "acme", "c1")
		nodes.enroll(dup)
		if r := e.send(dup, dup.next(t, 1, func(m map[string]any) { m["id"] = "node-1-c1-1" })); r.status != 409 || !strings.Contains(string(r.body), CodeDuplicateID) {
			t.Fatalf("duplicate id: %d %s", r.status, r.body)
		}

		var ids []string
		q := Query{Tenant: "acme", Limit: 4}
		for {
			n := 0
			if err := e.store.Events(ctx, q, func(_ []byte, c Cursor) error {
				ids, q.After = append(ids, c.ID), c
				n++
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n < q.Limit {
				break
			}
		}
		if len(ids) != 3*7-1 {
			t.Fatalf("%d acme events paged, want 20: %v", len(ids), ids)
		}

		for tenant, want := range map[string]int64{"acme": 21, "beta": 7} {
			pack := new(bytes.Buffer)
			if err := e.store.Export(ctx, pack, tenant, baseTime, baseTime.Add(time.Hour), ExportOptions{Key: e.key, TempDir: t.TempDir(), Now: e.now}); err != nil {
				t.Fatal(err)
			}
			rep, err := evidence.Verify(pack, evidence.VerifyOptions{Key: e.key.Public().(ed25519.PublicKey)})
			if err != nil {
				t.Fatalf("pack of %s: %v", tenant, err)
			}
			if rep.Events != want {
				t.Fatalf("pack of %s: %+v, want %d events", tenant, rep, want)
			}
		}
	})
}

// TestMigrationChainKeyRefusesOrphanEvents: an event whose chain row is
// gone has no key to be stored under; the migration stops instead of
// dropping it, and the old tables stay as they were.
func TestMigrationChainKeyRefusesOrphanEvents(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if err := d.Migrate(ctx, Component, migrationsBefore(t, "0003")); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec(`INSERT INTO audit_events (node_id, chain_id, seq, tenant, id, time_us, agent, tool, action, policy_revision, cost_micro_usd, hash, body, received_us)
			VALUES ('node-9', 'c1', 1, 'acme', 'orphan-1', 0, 'a', 't', 'allow', 1, 0, $1, '{}', 0)`, evidence.ZeroHash); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStore(ctx, d); err == nil {
			t.Fatal("migration succeeded over an event without a chain row")
		}
		var n int
		if err := d.QueryRow(`SELECT count(*) FROM audit_events WHERE node_id = 'node-9'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("old events table: %d rows, %v", n, err)
		}
	})
}
