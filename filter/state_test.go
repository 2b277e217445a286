//go:build !wasm

package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/filter/internal/plugin"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/state"
	"github.com/aegis-mesh/aegis/token"
)

// stateKeys returns a state signing key and the VM configuration that
// trusts it (plus the bundle key and a node token).
func stateKeys(t *testing.T) (ed25519.PrivateKey, []byte) {
	t.Helper()
	priv, err := keys.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := keys.MarshalPublicPEM(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	vmConf, _ := json.Marshal(map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": fx.bundlePubPEM, "AEGIS_STATE_PUBLIC_KEY": string(pem),
		"AEGIS_NODE_TOKEN": nodeToken})
	return priv, vmConf
}

// liveState signs a state document valid in both runs (the wasm guest's
// clock starts at guestEpoch); expired makes it stale in both.
func liveState(t *testing.T, priv ed25519.PrivateKey, d state.Document, expired bool) []byte {
	t.Helper()
	if d.Tenant == "" {
		d.Tenant = "acme"
	}
	d.IssuedAt = guestEpoch.Add(-2 * time.Hour)
	d.ExpiresAt = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if expired {
		d.ExpiresAt = guestEpoch.Add(-time.Hour)
	}
	env, err := state.Sign(priv, d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func stateConfig(inline map[string][]byte, extra string) []byte {
	parts := []string{}
	for tenant, env := range inline {
		parts = append(parts, `"`+tenant+`":`+string(env))
	}
	s := `"state":{"inline":{` + strings.Join(parts, ",") + `}}`
	if extra != "" {
		s += "," + extra
	}
	return pluginConfig(allBundles(), s)
}

func startWith(t *testing.T, vm types.VMContext, vmConf, conf []byte) (proxytest.HostEmulator, func()) {
	t.Helper()
	host, reset := start(t, vm, vmConf, conf)
	if got := host.StartPlugin(); got != types.OnPluginStartStatusOK {
		reset()
		t.Fatalf("StartPlugin = %v; logs %q", got, host.GetCriticalLogs())
	}
	return host, reset
}

// TestLiveState: the kill switch and revocations of the state in force
// refuse calls before any policy runs, and keep doing so after the state
// expires; budgets in fresh state cap spend across the fleet.
func TestLiveState(t *testing.T) {
	priv, vmConf := stateKeys(t)
	small := `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`
	invoice := func(tok string) request {
		return request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}}
	}
	revokedJTI := func(t *testing.T) (string, string) {
		iat, exp := guestEpoch.Add(-time.Minute), time.Now().Add(time.Hour)
		tok, err := token.Mint(fx.tokenKey, token.Claims{Subject: "billing-agent", Tenant: "acme", Region: "eu-west-1",
			IssuedAt: iat.Unix(), ExpiresAt: exp.Unix(), ID: "jti-revoked"})
		if err != nil {
			t.Fatal(err)
		}
		return tok, "jti-revoked"
	}
	tests := []struct {
		name    string
		doc     state.Document
		expired bool
		req     func(t *testing.T) request
		status  uint32 // 0: forwarded
		code    string
	}{
		{"kill switch", state.Document{Seq: 1, KillSwitch: true}, false,
			func(t *testing.T) request { return invoice(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})) }, 403, "kill_switch"},
		{"kill switch stays when stale", state.Document{Seq: 1, KillSwitch: true}, true,
			func(t *testing.T) request { return invoice(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})) }, 403, "kill_switch"},
		{"revoked agent", state.Document{Seq: 1, RevokedAgents: []string{"billing-agent"}}, false,
			func(t *testing.T) request { return invoice(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})) }, 403, "revoked"},
		{"revoked principal in the chain", state.Document{Seq: 1, RevokedAgents: []string{"support-agent"}}, false,
			func(t *testing.T) request {
				return invoice(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme", actingFor: []string{"support-agent"}}))
			}, 403, "revoked"},
		{"revoked token", state.Document{Seq: 1, RevokedJTIs: []string{"jti-revoked"}}, true,
			func(t *testing.T) request { tok, _ := revokedJTI(t); return invoice(tok) }, 401, "unauthorized"},
		{"other agents unaffected", state.Document{Seq: 1, RevokedAgents: []string{"support-agent"}}, false,
			func(t *testing.T) request { return invoice(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})) }, 0, ""},
		{"fleet budget exhausted", state.Document{Seq: 1, Budgets: map[string]float64{"billing-agent": 0.04}}, false,
			func(t *testing.T) request {
				return payment(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"}), small)
			}, 403, "policy_violation"},
		{"fleet budget left", state.Document{Seq: 1, Budgets: map[string]float64{"billing-agent": 0.05}}, false,
			func(t *testing.T) request {
				return payment(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"}), small)
			}, 0, ""},
		{"stale budget falls back to the node", state.Document{Seq: 1, Budgets: map[string]float64{"billing-agent": 0}}, true,
			func(t *testing.T) request {
				return payment(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"}), small)
			}, 0, ""},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				host, reset := startWith(t, vm, vmConf, stateConfig(map[string][]byte{"acme": liveState(t, priv, tt.doc, tt.expired)}, ""))
				defer reset()
				res := send(t, host, tt.req(t))
				if tt.status == 0 {
					if res.local != nil {
						t.Fatalf("refused: %d %s", res.local.StatusCode, res.local.Data)
					}
					return
				}
				m := res.localJSON(t)
				if res.local.StatusCode != tt.status || m["error"] != tt.code {
					t.Errorf("reply %d %s, want %d %s", res.local.StatusCode, res.local.Data, tt.status, tt.code)
				}
				if strings.HasPrefix(tt.name, "fleet") && !reasonsContain(m, "across the fleet") {
					t.Errorf("reasons %v", m["reasons"])
				}
			})
		}
		t.Run("other tenant unaffected", func(t *testing.T) {
			host, reset := startWith(t, vm, vmConf, stateConfig(map[string][]byte{"acme": liveState(t, priv, state.Document{Seq: 1, KillSwitch: true}, false)}, ""))
			defer reset()
			bot := mint(t, tokenOpts{agent: "deploy-bot", tenant: "platform"})
			res := send(t, host, request{method: "POST", authority: "mcp-k8s.platform.internal", path: "/mcp", hasBody: true, headers: [][2]string{bearer(bot)},
				body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_pods","arguments":{"namespace":"web"}}}`})
			if res.local != nil {
				t.Errorf("platform refused by acme's kill switch: %s", res.local.Data)
			}
		})
	})
}

// TestLiveStateRejected: a state that does not verify, or names another
// tenant, is never put in force; a missing state key rejects every state.
func TestLiveStateRejected(t *testing.T) {
	priv, vmConf := stateKeys(t)
	rogue, _ := stateKeys(t)
	kill := state.Document{Seq: 1, KillSwitch: true}
	globex := state.Document{Tenant: "globex", Seq: 1, KillSwitch: true}
	noStateKey, _ := json.Marshal(map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": fx.bundlePubPEM})
	tests := []struct {
		name   string
		vmConf []byte
		env    []byte
	}{
		{"foreign key", vmConf, liveState(t, rogue, kill, false)},
		{"other tenant", vmConf, liveState(t, priv, globex, false)},
		{"no state key", noStateKey, liveState(t, priv, kill, false)},
		{"tampered", vmConf, []byte(strings.Replace(string(liveState(t, priv, kill, false)), `"signature":"`, `"signature":"AAAA`, 1))},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				host, reset := startWith(t, vm, tt.vmConf, stateConfig(map[string][]byte{"acme": tt.env}, ""))
				defer reset()
				if got := counter(t, host, "aegis.state.rejected"); got != 1 {
					t.Errorf("rejected counter %d", got)
				}
				res := send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1",
					headers: [][2]string{bearer(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"}))}})
				if res.local != nil {
					t.Errorf("a rejected state was enforced: %s", res.local.Data)
				}
			})
		}
	})
}

// TestLiveStateFetch: with state.refresh_ms the filter fetches each
// tenant's state on tick with the node credential and the last ETag; a
// newer seq replaces the state in force, an older one is refused, and an
// unreachable control plane leaves the last state in force.
func TestLiveStateFetch(t *testing.T) {
	priv, vmConf := stateKeys(t)
	conf := stateConfig(map[string][]byte{"acme": liveState(t, priv, state.Document{Seq: 5}, false)},
		`"control_plane":{"cluster":"aegis-cp"},"audit":{"flush_interval_ms":600000}`)
	// The emulator reuses the id of an answered callout for the next one,
	// so the test keeps a single callout outstanding at a time: audit
	// batches (due every 6000 ticks here) stay out of the way.
	conf = []byte(strings.Replace(string(conf), `"state":{"inline":`, `"state":{"refresh_ms":100,"inline":`, 1))
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startWith(t, vm, vmConf, conf)
		defer reset()
		agent := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		invoice := request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(agent)}}
		// fetched ticks and returns the new state request for acme: the
		// emulator lists callouts in order, answered ones included.
		sent := 0
		fetched := func() proxytest.HttpCalloutAttribute {
			t.Helper()
			host.Tick()
			var found *proxytest.HttpCalloutAttribute
			n := 0
			for _, c := range host.GetCalloutAttributesFromContext(proxytest.PluginContextID) {
				if hasHeader(c.Headers, ":path", "/v1/tenants/acme/state") {
					found = &c
					n++
				}
			}
			if n != sent+1 {
				found = nil
			}
			sent = n
			if found == nil {
				t.Fatal("no state fetch on tick")
			}
			if !hasHeader(found.Headers, ":method", "GET") || !hasHeader(found.Headers, "authorization", "Bearer "+nodeToken) {
				t.Errorf("fetch headers %q", found.Headers)
			}
			return *found
		}
		answer := func(c proxytest.HttpCalloutAttribute, status, etag string, body []byte) {
			hs := [][2]string{{":status", status}}
			if etag != "" {
				hs = append(hs, [2]string{"etag", etag})
			}
			host.CallOnHttpCallResponse(c.CalloutID, hs, nil, body)
		}
		refused := func() bool {
			res := send(t, host, invoice)
			return res.local != nil && res.local.StatusCode == 403
		}

		c := fetched()
		if _, ok := header(c.Headers, "if-none-match"); ok {
			t.Error("first fetch sent If-None-Match")
		}
		answer(c, "200", `"s6"`, liveState(t, priv, state.Document{Seq: 6, KillSwitch: true}, false))
		if !refused() {
			t.Fatal("fetched kill switch not enforced")
		}
		c = fetched()
		if !hasHeader(c.Headers, "if-none-match", `"s6"`) {
			t.Errorf("second fetch headers %q, want If-None-Match \"s6\"", c.Headers)
		}
		answer(c, "304", "", nil)
		// An older document is refused: the kill switch stays.
		answer(fetched(), "200", `"s4"`, liveState(t, priv, state.Document{Seq: 4}, false))
		if !refused() || counter(t, host, "aegis.state.rejected") != 1 {
			t.Error("an older state replaced the one in force")
		}
		// The rejected answer's ETag is not kept.
		if c := fetched(); !hasHeader(c.Headers, "if-none-match", `"s6"`) {
			t.Errorf("ETag after a rejected state: %q", c.Headers)
		} else {
			answer(c, "503", "", []byte(`{"error":"down"}`))
		}
		if !refused() {
			t.Error("control plane down: the state in force was dropped")
		}
		answer(fetched(), "200", `"s7"`, liveState(t, priv, state.Document{Seq: 7}, false))
		if refused() {
			t.Error("kill switch lifted by seq 7 still enforced")
		}
	})
}

// TestFetchBundlesAndKeys: bundles and the JWKS come from the control
// plane on tick; a fetched bundle is checked like an inline one (a rogue
// one is counted and the last good stays), a JWKS that does not parse
// leaves the keys in force, and the ETag rides along.
func TestFetchBundlesAndKeys(t *testing.T) {
	rotated, err := keys.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	newJWKS, err := token.MarshalJWKS(fx.tokenKey.Public().(ed25519.PublicKey), rotated.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	conf := pluginConfig(nil, `"control_plane":{"cluster":"aegis-cp"},"audit":{"flush_interval_ms":600000},`+
		`"fetch":{"tenants":["acme"],"bundles":true,"jwks":true,"refresh_ms":100}`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, conf)
		defer reset()
		agent := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		rotatedAgent := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme", key: rotated})
		invoice := func(tok string) result {
			return send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}})
		}
		if res := invoice(agent); res.local == nil || res.local.StatusCode != 403 {
			t.Fatalf("before any bundle: %+v", res.local)
		}
		// tick returns this tick's bundle and JWKS requests; the test
		// answers both before the next tick (the emulator reuses ids).
		n := 0
		tick := func() (bundle, jwks proxytest.HttpCalloutAttribute) {
			t.Helper()
			host.Tick()
			cs := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
			if len(cs) != n+2 {
				t.Fatalf("%d new callouts on tick, want 2", len(cs)-n)
			}
			for _, c := range cs[n:] {
				switch {
				case hasHeader(c.Headers, ":path", "/v1/tenants/acme/bundle"):
					bundle = c
				case hasHeader(c.Headers, ":path", plugin.JWKSPath):
					jwks = c
				default:
					t.Fatalf("unexpected callout %q", c.Headers)
				}
			}
			n = len(cs)
			return bundle, jwks
		}
		ok := func(c proxytest.HttpCalloutAttribute, etag string, body []byte) {
			host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "200"}, {"etag", etag}}, nil, body)
		}

		b, j := tick()
		ok(b, `"b1"`, fx.acme)
		ok(j, `"k1"`, newJWKS)
		if res := invoice(agent); res.local != nil || res.decision["policy_version"] != "acme-payments@1" {
			t.Fatalf("fetched bundle not in force: %+v %v", res.local, res.decision)
		}
		if res := invoice(rotatedAgent); res.local != nil {
			t.Errorf("token of the rotated key refused: %s", res.local.Data)
		}

		b, j = tick()
		if !hasHeader(b.Headers, "if-none-match", `"b1"`) || !hasHeader(j.Headers, "if-none-match", `"k1"`) {
			t.Errorf("If-None-Match missing: %q %q", b.Headers, j.Headers)
		}
		ok(b, `"b2"`, fx.acmeRogue)
		ok(j, `"k2"`, []byte(`{"keys":[`))
		if got := counter(t, host, "aegis.bundles.rejected"); got != 1 {
			t.Errorf("bundles rejected %d", got)
		}
		if res := invoice(rotatedAgent); res.local != nil || res.decision["policy_version"] != "acme-payments@1" {
			t.Errorf("after a rogue bundle and a bad JWKS: %+v %v", res.local, res.decision)
		}

		b, j = tick()
		if !hasHeader(b.Headers, "if-none-match", `"b1"`) {
			t.Errorf("the rejected bundle's ETag was kept: %q", b.Headers)
		}
		ok(b, `"b3"`, fx.acme2)
		host.CallOnHttpCallResponse(j.CalloutID, [][2]string{{":status", "304"}}, nil, nil)
		if res := invoice(agent); res.local != nil || res.decision["policy_version"] != "acme-payments@2" {
			t.Errorf("revision 2 not in force: %+v %v", res.local, res.decision)
		}
	})
}

// TestLiveStateRevokesOverride: revoked_jtis applies to override tokens
// too; a revoked one is refused without a redemption call.
func TestLiveStateRevokesOverride(t *testing.T) {
	priv, vmConf := stateKeys(t)
	conf := stateConfig(map[string][]byte{"acme": liveState(t, priv, state.Document{Seq: 1, RevokedJTIs: []string{"ov-revoked"}}, false)},
		`"control_plane":{"cluster":"aegis-cp"}`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startWith(t, vm, vmConf, conf)
		defer reset()
		agent := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		id := held(t, host, payment(agent, bigPayment, [2]string{plugin.HeaderOverride, mintOverride(t, overrideOpts{jti: "ov-revoked"})}))
		status, m := localJSON(t, host, id)
		if status != 403 || m["error"] != "override_invalid" || !strings.Contains(m["message"].(string), "revoked") {
			t.Errorf("reply %d %v", status, m)
		}
		if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
			t.Errorf("%d callouts for a revoked override", n)
		}
		host.CompleteHttpContext(id)
	})
}
