package server

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/notify"
	"github.com/aegis-mesh/aegis/token"
)

// With the standard services mounted, agent tokens authenticate, the kill
// switch reaches live state at once, and the JWKS hook serves the keys that
// signed the agent tokens.
func TestStandardServices(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dsn, dir string) {
		h := startWith(t, dsn, dir, func(c *Config) { c.Extend = Standard(StandardOptions{}) })
		fi, err := os.Stat(filepath.Join(dir, "keys", "token.kek"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("token KEK: %v %v", err, fi)
		}
		h.tenant("acme", false, 1)
		m := h.expect(h.do("POST", "/v1/tokens/agent", h.admin, map[string]any{"tenant": "acme", "agent": "billing-agent"}), 201, "").json(t)
		agentTok := m["token"].(string)
		who := h.expect(h.do("GET", "/v1/whoami", agentTok, nil), 200, "").json(t)
		if who["subject"] != "billing-agent" || who["tenant"] != "acme" {
			t.Fatalf("agent principal %v", who)
		}
		// An agent token is no API credential.
		h.expect(h.do("POST", "/v1/tenants", agentTok, map[string]any{"name": "x"}), 403, "forbidden")

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events := h.s.Notifier.Subscribe(ctx)
		h.expect(h.do("PUT", "/v1/tenants/acme/kill-switch", h.admin, map[string]any{"enabled": true}), 200, "")
		guard := time.After(20 * time.Second)
		for got := false; !got; {
			select {
			case e := <-events:
				got = e.Tenant == "acme" && e.Kind == notify.KindState
			case <-guard:
				t.Fatal("no state notification after the kill switch was set")
			}
		}
		st, _, err := h.s.State.Refresh(ctx, "acme")
		if err != nil || !st.Doc.KillSwitch {
			t.Fatalf("state after kill switch: %+v %v", st.Doc, err)
		}

		jwks, err := h.s.cfg.JWKS(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		ks, err := token.ParseJWKS(jwks)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := token.Verify(agentTok, ks, token.VerifyOptions{Tenant: "acme"}); err != nil {
			t.Fatalf("agent token does not verify with the shipped JWKS: %v", err)
		}
	})
}
