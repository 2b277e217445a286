package xds

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

// TestDriftStore runs against Postgres and SQLite: ACKs and NACKs reach
// the store, the history API reads them, and a restarted server still
// knows what its nodes ran.
func TestDriftStore(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		env := newEnv(t, func(c *Config) { c.Store = d })
		ctx := testCtx(t)
		if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 1, "one")); err != nil {
			t.Fatal(err)
		}
		conn := env.dial("gw-1", "acme")
		c := sotw.NewADSClient(ctx, nodeProto("gw-1", map[string]any{"role": "gateway", "region": "eu"}), typeECDS)
		if err := c.InitConnect(conn); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Fetch(); err != nil {
			t.Fatal(err)
		}
		if err := c.Ack(); err != nil {
			t.Fatal(err)
		}
		env.waitState("gw-1", StateSynced)
		if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 2, "two")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Fetch(); err != nil {
			t.Fatal(err)
		}
		if err := c.Nack("bundle rejected: expired"); err != nil {
			t.Fatal(err)
		}
		st := env.waitState("gw-1", StateNacked)
		if st.AckedRevision != 1 || st.Nack.Revision != 2 || st.Region != "eu" || st.Role != RoleGateway {
			t.Fatalf("status from the store %+v", st)
		}

		events, err := env.srv.History(ctx, "gw-1", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 || events[0].Kind != "nack" || events[0].Error != "bundle rejected: expired" || RevisionOf(events[0].Version) != 2 ||
			events[1].Kind != "ack" || RevisionOf(events[1].Version) != 1 || events[0].Nonce == "" || events[0].Tenant != "acme" {
			t.Fatalf("history %+v", events)
		}
		ts := httpEnv(t, env)
		resp, body := get(t, ts.URL+"/v1/nodes/gw-1/history?limit=1", "auditor-acme", nil)
		var h struct{ Events []Event }
		if resp.StatusCode != 200 || json.Unmarshal(body, &h) != nil || len(h.Events) != 1 || h.Events[0].Kind != "nack" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}

		// The node goes away; a new server on the same store (a restart,
		// or another replica) knows what it ran and why it drifted.
		conn.Close()
		waitFor(t, "disconnect recorded", func() (bool, error) {
			st, _, err := env.nodeStatus("gw-1")
			return !st.Connected, err
		})
		srv2, err := NewServer(ctx, func() Config {
			c := testConfig(t)
			c.Store = d
			c.Registerer = prometheus.NewRegistry()
			return c
		}())
		if err != nil {
			t.Fatal(err)
		}
		if err := srv2.SetTenant(ctx, "acme", testRelease("acme", 3, "three")); err != nil {
			t.Fatal(err)
		}
		nodes, err := srv2.Nodes(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 1 || nodes[0].AckedRevision != 1 || nodes[0].ExpectedRevision != 3 || nodes[0].Nack == nil ||
			nodes[0].Nack.Error != "bundle rejected: expired" || nodes[0].Connected || nodes[0].State != StateNacked {
			t.Fatalf("after restart %+v", nodes)
		}
		if counts := srv2.countStates(); counts[StateNacked] != 1 {
			t.Fatalf("metric view after restart %v", counts)
		}
	})
}

// TestStoreKeepsRowsWhenAWriteFails: a failed flush puts the rows back.
func TestStoreKeepsRowsWhenAWriteFails(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	ctx := testCtx(t)
	m, err := newMetrics(prometheus.NewRegistry(), &Server{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, d, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	st.record(NodeStatus{NodeID: "n1", Tenant: "acme", Role: RoleEdge, LastSeen: now}, &event{NodeID: "n1", Tenant: "acme", Type: "ecds", Kind: "ack", Version: "r1-x", Nonce: "1", At: now})
	d.Close()
	if err := st.flush(ctx); err == nil {
		t.Fatal("flush on a closed database succeeded")
	}
	if len(st.dirty) != 1 || len(st.events) != 1 || counterValue(t, m.storeFailures) != 1 {
		t.Fatalf("queued after failure: %d rows, %d events", len(st.dirty), len(st.events))
	}
}
