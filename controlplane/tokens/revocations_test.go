package tokens

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

// TestRevocations: revocations and the kill switch go through the API and
// come out of LiveRevocations, the live state's source; jti revocations
// lapse once every token they could name has expired.
func TestRevocations(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		ctx := context.Background()
		var mu sync.Mutex
		changed := 0
		e.svc.cfg.OnRevocationsChanged = func(_ context.Context, tenant string) {
			mu.Lock()
			defer mu.Unlock()
			if tenant == "acme" {
				changed++
			}
		}
		auditor := caller{sub: "eve", tenant: "acme", roles: "auditor"}
		for _, tc := range []struct {
			name   string
			as     caller
			body   any
			status int
		}{
			{"agent by admin", acmeAdmin, RevokeRequest{Kind: KindAgent, Value: "billing-agent", Reason: "leaked key"}, 201},
			{"jti by admin", acmeAdmin, RevokeRequest{Kind: KindJTI, Value: "jti-1"}, 201},
			{"again is idempotent", acmeAdmin, RevokeRequest{Kind: KindJTI, Value: "jti-1"}, 201},
			{"auditor may not", auditor, RevokeRequest{Kind: KindAgent, Value: "x"}, 403},
			{"anonymous", anonymous, RevokeRequest{Kind: KindAgent, Value: "x"}, 401},
			{"other tenant's admin", caller{sub: "m", tenant: "globex", roles: "admin"}, RevokeRequest{Kind: KindAgent, Value: "x"}, 403},
			{"bad kind", acmeAdmin, RevokeRequest{Kind: "user", Value: "x"}, 400},
			{"empty value", acmeAdmin, RevokeRequest{Kind: KindAgent}, 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if st := e.json(t, tc.as, "POST", "/v1/tenants/acme/revocations", tc.body, nil); st != tc.status {
					t.Errorf("status %d, want %d", st, tc.status)
				}
			})
		}
		agents, jtis, kill, err := e.svc.LiveRevocations(ctx, "acme")
		if err != nil || !slices.Equal(agents, []string{"billing-agent"}) || !slices.Equal(jtis, []string{"jti-1"}) || kill {
			t.Fatalf("live revocations: %v %v %v %v", agents, jtis, kill, err)
		}
		if a, j, k, err := e.svc.LiveRevocations(ctx, "globex"); err != nil || len(a)+len(j) != 0 || k {
			t.Errorf("other tenant sees %v %v %v %v", a, j, k, err)
		}
		var list struct{ Revocations []Revocation }
		if st := e.json(t, auditor, "GET", "/v1/tenants/acme/revocations", nil, &list); st != 200 || len(list.Revocations) != 2 || list.Revocations[0].RevokedBy != "alice" {
			t.Errorf("list: %d %+v", st, list)
		}

		if st := e.json(t, auditor, "PUT", "/v1/tenants/acme/kill-switch", map[string]bool{"enabled": true}, nil); st != http.StatusForbidden {
			t.Errorf("auditor set the kill switch: %d", st)
		}
		if st := e.json(t, acmeAdmin, "PUT", "/v1/tenants/acme/kill-switch", map[string]any{}, nil); st != http.StatusBadRequest {
			t.Errorf("kill switch without enabled: %d", st)
		}
		if st := e.json(t, acmeAdmin, "PUT", "/v1/tenants/acme/kill-switch", map[string]bool{"enabled": true}, nil); st != 200 {
			t.Fatalf("kill switch: %d", st)
		}
		var ks struct{ Enabled bool }
		if st := e.json(t, auditor, "GET", "/v1/tenants/acme/kill-switch", nil, &ks); st != 200 || !ks.Enabled {
			t.Errorf("kill switch read back: %d %+v", st, ks)
		}
		if _, _, kill, _ := e.svc.LiveRevocations(ctx, "acme"); !kill {
			t.Error("kill switch not in live revocations")
		}
		if on, _ := e.svc.KillSwitch(ctx, "globex"); on {
			t.Error("kill switch leaked to another tenant")
		}

		if st, _, _ := e.do(t, acmeAdmin, "DELETE", "/v1/tenants/acme/revocations/agent/billing-agent", "", nil); st != http.StatusNoContent {
			t.Errorf("unrevoke: %d", st)
		}
		if st, _, _ := e.do(t, acmeAdmin, "DELETE", "/v1/tenants/acme/revocations/agent/billing-agent", "", nil); st != http.StatusNotFound {
			t.Errorf("unrevoke twice: %d", st)
		}
		mu.Lock()
		// Three revocations (one repeated), the kill switch, one unrevoke.
		if changed != 5 {
			t.Errorf("live-state change notifications: %d, want 5", changed)
		}
		mu.Unlock()
		e.clock.Add(e.svc.cfg.MaxTTL + 3*tokenSkew)
		if agents, jtis, _, _ := e.svc.LiveRevocations(ctx, "acme"); len(agents) != 0 || len(jtis) != 0 {
			t.Errorf("after expiry: agents %v jtis %v, want none", agents, jtis)
		}
	})
}
