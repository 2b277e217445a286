package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
)

func forTenant(tenant string, cost int64) evOpt {
	return func(m map[string]any) { m["tenant"], m["cost_micro_usd"] = tenant, cost }
}

func (e *env) exportOf(tenant string) []byte {
	e.t.Helper()
	q := url.Values{"tenant": {tenant}, "from": {baseTime.Format(time.RFC3339)}, "to": {baseTime.Add(2 * time.Hour).Format(time.RFC3339)}}
	r := e.do("GET", "/v1/audit/export?"+q.Encode(), "auditor:"+tenant, nil)
	if r.status != 200 {
		e.t.Fatalf("export of %s: %d %s", tenant, r.status, r.body)
	}
	return r.body
}

// TestSharedGatewayIngest: a node enrolled in acme that serves platform too
// sends one chain interleaving both tenants' events. Each event is stored,
// queried, charged and exported under its own tenant; an event for a
// tenant the node does not serve refuses the whole batch.
func TestSharedGatewayIngest(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		nodes := &nodeKeys{}
		e := newEnv(t, d, nodes, nil)
		gw := newProducer(t, "gw-1", "acme", "c1")
		nodes.enroll(gw)
		shared := "node:gw-1:acme:acme,platform"

		evs := gw.events(t, 1, forTenant("acme", 1000))
		evs = append(evs, gw.events(t, 2, forTenant("platform", 3000))...)
		evs = append(evs, gw.events(t, 1, forTenant("acme", 1000))...)
		body, _ := json.Marshal(gw.batch(evs))
		if r := e.do("POST", "/v1/audit/batches", shared, body); r.status != 200 {
			t.Fatalf("mixed batch: %d %s", r.status, r.body)
		}
		for tenant, want := range map[string]int{"acme": 2, "platform": 2} {
			if n := e.count(`SELECT count(*) FROM audit_events WHERE tenant = $1`, tenant); n != want {
				t.Errorf("%s: %d events stored, want %d", tenant, n, want)
			}
			r := e.do("GET", "/v1/audit/events?tenant="+tenant, "auditor:"+tenant, nil)
			var got struct {
				Events []map[string]any `json:"events"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &got) != nil || len(got.Events) != want {
				t.Errorf("%s query: %d %s", tenant, r.status, r.body)
			}
			for _, ev := range got.Events {
				if ev["tenant"] != tenant {
					t.Errorf("%s query returned an event of %v", tenant, ev["tenant"])
				}
			}
		}
		for tenant, want := range map[string]float64{"acme": 0.002, "platform": 0.006} {
			spend, err := e.store.SpentToday(ctx, tenant, baseTime)
			if err != nil || len(spend) != 1 || math.Abs(spend["agent-1"]-want) > 1e-12 {
				t.Errorf("%s spend %v %v, want agent-1 %v", tenant, spend, err, want)
			}
		}

		// An event for a tenant the node does not serve: 403 naming it, an
		// incident, nothing stored.
		bad := gw.events(t, 1, forTenant("platform", 0))
		bad = append(bad, gw.events(t, 1, forTenant("globex", 0))...)
		body, _ = json.Marshal(gw.batch(bad))
		r := e.do("POST", "/v1/audit/batches", shared, body)
		if r.status != 403 || r.json(t)["error"] != CodeTenantNotServed || !strings.Contains(string(r.body), "gw-1-c1-6") {
			t.Fatalf("unserved tenant: %d %s", r.status, r.body)
		}
		if n := e.incidents(CodeTenantNotServed); n != 1 {
			t.Errorf("%d incidents, want 1", n)
		}
		if n := e.count(`SELECT count(*) FROM audit_events`); n != 4 {
			t.Errorf("%d events after a refused batch, want 4", n)
		}
		// The same node without its serves (an ordinary acme node) may not
		// send platform events either.
		if r := e.do("POST", "/v1/audit/batches", "node:gw-1:acme", body); r.status != 403 {
			t.Fatalf("ordinary node: %d %s", r.status, r.body)
		}

		if _, err := e.store.CheckpointAll(ctx, e.key, e.now); err != nil {
			t.Fatal(err)
		}
		pub := e.key.Public().(ed25519.PublicKey)
		for _, tenant := range []string{"acme", "platform"} {
			pack := e.exportOf(tenant)
			rep, err := evidence.Verify(bytes.NewReader(pack), evidence.VerifyOptions{Key: pub})
			if err != nil {
				t.Fatalf("%s pack: %v", tenant, err)
			}
			if rep.Events != 4 || rep.Redacted != 2 || rep.Chains != 1 || rep.CheckpointsMatched != 1 {
				t.Errorf("%s pack report %+v", tenant, rep)
			}
			other := map[string]string{"acme": "gw-1-c1-2", "platform": "gw-1-c1-1"}[tenant]
			if bytes.Contains(pack, []byte(other)) {
				t.Errorf("%s pack holds the other tenant's event %s", tenant, other)
			}
		}
	})
}
