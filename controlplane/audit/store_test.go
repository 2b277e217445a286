package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/jackc/pgx/v5"
)

// TestCopyRows: every column written by the hand-encoded COPY stream reads
// back as the record it came from, non-ASCII text and large numbers
// included.
func TestCopyRows(t *testing.T) {
	d := dbtest.New(t, db.Postgres)
	st, err := OpenStore(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, "node-1", "acme", "node-1/vm-a")
	odd := func(m map[string]any) {
		m["agent"], m["tool"], m["policy_revision"], m["cost_micro_usd"] = "agënt-€-😀", `pay "quoted" \ tool`, int64(1)<<52, int64(999999999999)
	}
	prep, err := Prepare(p.next(t, 3, odd), p.key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	now := baseTime.Add(42e9)
	if _, err := st.Ingest(t.Context(), prep, now); err != nil {
		t.Fatal(err)
	}
	rows, err := d.Query(`SELECT c.node_id, c.chain_id, e.seq, e.tenant, e.id, e.time_us, e.agent, e.tool, e.action, e.policy_revision, e.cost_micro_usd, e.hash, e.body, e.received_us
		FROM audit_events e JOIN audit_chains c USING (chain_key) ORDER BY e.seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var got, want struct {
			node, chain, tenant, id, agent, tool, action, hash, body string
			seq, timeUS, rev, cost, received                         int64
		}
		if err := rows.Scan(&got.node, &got.chain, &got.seq, &got.tenant, &got.id, &got.timeUS, &got.agent, &got.tool, &got.action,
			&got.rev, &got.cost, &got.hash, &got.body, &got.received); err != nil {
			t.Fatal(err)
		}
		r := prep.Records[i]
		want.node, want.chain, want.seq, want.tenant, want.id, want.timeUS = p.node, p.chain, r.Seq, r.Tenant, r.ID, r.TimeUS
		want.agent, want.tool, want.action, want.rev, want.cost = r.Agent, r.Tool, r.Action, r.PolicyRevision, r.CostMicroUSD
		want.hash, want.body, want.received = hex.EncodeToString(r.Hash[:]), string(r.Body), db.Micros(now)
		if got != want {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	if err := rows.Err(); err != nil || i != 3 {
		t.Fatalf("%d rows, %v", i, err)
	}
}

// TestKeepFreedMemory: a connection is primed once, and one whose statement
// fails is left unmarked (tried again next time) without failing the
// caller.
func TestKeepFreedMemory(t *testing.T) {
	d := dbtest.New(t, db.Postgres)
	const key = "aegis.audit.keep_freed_memory"
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want any
	}{
		{"canceled", canceled, nil},
		{"primed", t.Context(), true},
		{"again", t.Context(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.WithPgx(t.Context(), func(conn *pgx.Conn) error {
				keepFreedMemory(tc.ctx, conn)
				if got := conn.PgConn().CustomData()[key]; got != tc.want {
					t.Errorf("marked %v, want %v", got, tc.want)
				}
				// The connection still works either way.
				var n int
				return conn.QueryRow(t.Context(), `SELECT 1`).Scan(&n)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
