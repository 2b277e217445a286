//go:build !wasm

package main

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/filter/internal/audit"
	"github.com/aegis-mesh/aegis/filter/internal/plugin"
	"github.com/aegis-mesh/aegis/jcs"
	"github.com/aegis-mesh/aegis/token"
)

const (
	bigPayment = `{"amount":7500,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`
	nodeToken  = "nt_test-node.credential"
)

type overrideOpts struct {
	agent, tool, params string
	key                 ed25519.PrivateKey
	expired             bool
	jti                 string
}

// mintOverride mints what the control plane returns for an approved call.
func mintOverride(t *testing.T, o overrideOpts) string {
	t.Helper()
	if o.key == nil {
		o.key = fx.tokenKey
	}
	if o.agent == "" {
		o.agent = "billing-agent"
	}
	if o.tool == "" {
		o.tool = "payments.create"
	}
	if o.params == "" {
		o.params = bigPayment
	}
	digest, err := jcs.ParamsDigest("acme", o.agent, o.tool, []byte(o.params))
	if err != nil {
		t.Fatal(err)
	}
	iat, exp := guestEpoch.Add(-time.Minute), time.Now().Add(time.Hour)
	if o.expired {
		iat, exp = guestEpoch.Add(-2*time.Hour), guestEpoch.Add(-time.Hour)
	}
	tok, err := token.MintOverride(o.key, token.OverrideClaims{Issuer: "cp", Subject: o.agent, Tenant: "acme", Tool: o.tool,
		ParamsDigest: digest, ApprovalID: "ap-7", ID: o.jti, IssuedAt: iat.Unix(), ExpiresAt: exp.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// held starts a request and leaves it open (not completed) so that the
// test can answer its callouts.
func held(t *testing.T, host proxytest.HostEmulator, r request) uint32 {
	t.Helper()
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, r.headerList(), !r.hasBody)
	if r.hasBody && host.GetSentLocalResponse(id) == nil {
		host.CallOnRequestBody(id, []byte(r.body), true)
	}
	return id
}

func localJSON(t *testing.T, host proxytest.HostEmulator, id uint32) (uint32, map[string]any) {
	t.Helper()
	r := host.GetSentLocalResponse(id)
	if r == nil {
		t.Fatalf("no local reply (stream action %v)", host.GetCurrentHttpStreamAction(id))
	}
	var m map[string]any
	if err := json.Unmarshal(r.Data, &m); err != nil {
		t.Fatalf("reply %q: %v", r.Data, err)
	}
	return r.StatusCode, m
}

// TestOverride: a one-time override token lifts approval_needed for the
// exact call it was approved for, once, after the control plane redeemed
// it; it lifts nothing else.
func TestOverride(t *testing.T) {
	vmConf, _ := json.Marshal(map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": fx.bundlePubPEM, "AEGIS_NODE_TOKEN": nodeToken})
	withCP := pluginConfig(allBundles(), `"control_plane":{"cluster":"aegis-cp","authority":"cp.internal"},"audit":{"flush_interval_ms":100}`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := start(t, vm, vmConf, withCP)
		defer reset()
		if host.StartPlugin() != types.OnPluginStartStatusOK {
			t.Fatalf("StartPlugin: %q", host.GetCriticalLogs())
		}
		agent := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		ov := func(tok string) [2]string { return [2]string{plugin.HeaderOverride, tok} }
		good := mintOverride(t, overrideOpts{jti: "ov-1"})

		t.Run("redeemed and forwarded", func(t *testing.T) {
			id := held(t, host, payment(agent, bigPayment, ov(good)))
			if host.GetSentLocalResponse(id) != nil {
				t.Fatalf("answered before redemption: %s", host.GetSentLocalResponse(id).Data)
			}
			cs := host.GetCalloutAttributesFromContext(id)
			if len(cs) != 1 {
				t.Fatalf("%d callouts, want the redemption", len(cs))
			}
			c := cs[0]
			var rr map[string]string
			if err := json.Unmarshal(c.Body, &rr); err != nil {
				t.Fatal(err)
			}
			want, _ := jcs.ParamsDigest("acme", "billing-agent", "payments.create", []byte(bigPayment))
			if c.Upstream != "aegis-cp" || !hasHeader(c.Headers, ":path", plugin.RedeemPath) || !hasHeader(c.Headers, ":method", "POST") ||
				!hasHeader(c.Headers, "authorization", "Bearer "+nodeToken) || !hasHeader(c.Headers, ":authority", "cp.internal") ||
				rr["token"] != good || rr["tenant"] != "acme" || rr["agent"] != "billing-agent" || rr["tool"] != "payments.create" || rr["params_digest"] != want {
				t.Errorf("redemption %s %q: %s", c.Upstream, c.Headers, c.Body)
			}
			host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{"ok":true}`))
			if r := host.GetSentLocalResponse(id); r != nil {
				t.Fatalf("refused after redemption: %d %s", r.StatusCode, r.Data)
			}
			if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
				t.Errorf("stream action %v after redemption, want continue", a)
			}
			hs := host.GetCurrentRequestHeaders(id)
			if _, ok := header(hs, plugin.HeaderDecisionID); !ok {
				t.Error("no decision id on the forwarded request")
			}
			if _, ok := header(hs, plugin.HeaderOverride); ok {
				t.Error("override header forwarded")
			}
			raw, err := host.GetProperty([]string{plugin.PropertyDecision})
			var st map[string]any
			if err != nil || json.Unmarshal(raw, &st) != nil || st["override_jti"] != "ov-1" || st["approval_id"] != "ap-7" || st["action"] != "allow" {
				t.Errorf("filter state %s (%v)", raw, err)
			}
			// The event is completed with the upstream's status.
			host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}}, false)
			host.CompleteHttpContext(id)
			host.Tick()
			var found bool
			for _, c := range host.GetCalloutAttributesFromContext(proxytest.PluginContextID) {
				var b audit.Batch
				if json.Unmarshal(c.Body, &b) != nil {
					continue
				}
				if !hasHeader(c.Headers, "authorization", "Bearer "+nodeToken) {
					t.Error("audit batch without the node credential")
				}
				for _, e := range b.Events {
					if e.OverrideJTI == "ov-1" {
						found = true
						if e.Status != 201 || e.ApprovalID != "ap-7" || e.Action != "allow" {
							t.Errorf("event %+v", e)
						}
					}
				}
			}
			if !found {
				t.Error("no audit event with the override jti")
			}
		})

		t.Run("second use on this VM refused without a call", func(t *testing.T) {
			id := held(t, host, payment(agent, bigPayment, ov(good)))
			status, m := localJSON(t, host, id)
			if status != 403 || m["error"] != "override_already_redeemed" || m["approval_id"] != "ap-7" {
				t.Errorf("reply %d %v", status, m)
			}
			if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
				t.Errorf("%d callouts", n)
			}
			host.CompleteHttpContext(id)
		})

		answers := []struct {
			name, status, code string
			reply              uint32
		}{
			{"redeemed elsewhere", "409", "override_already_redeemed", 403},
			{"control plane mismatch", "403", "override_mismatch", 403},
			{"control plane expired", "410", "override_expired", 403},
			{"control plane down", "503", "control_plane_unavailable", 503},
		}
		for i, a := range answers {
			t.Run(a.name, func(t *testing.T) {
				tok := mintOverride(t, overrideOpts{jti: "ov-a" + string(rune('0'+i))})
				id := held(t, host, payment(agent, bigPayment, ov(tok)))
				cs := host.GetCalloutAttributesFromContext(id)
				if len(cs) != 1 {
					t.Fatalf("%d callouts", len(cs))
				}
				host.CallOnHttpCallResponse(cs[0].CalloutID, [][2]string{{":status", a.status}}, nil, []byte(`{"error":"x"}`))
				status, m := localJSON(t, host, id)
				if status != a.reply || m["error"] != a.code || !reasonsContain(m, "params.amount") {
					t.Errorf("reply %d %v, want %d %s", status, m, a.reply, a.code)
				}
				host.CompleteHttpContext(id)
			})
		}

		refused := []struct {
			name string
			req  func() request
			code string
		}{
			{"other parameters", func() request {
				return payment(agent, `{"amount":7600,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`, ov(mintOverride(t, overrideOpts{})))
			}, "override_mismatch"},
			{"other agent", func() request {
				return payment(agent, bigPayment, ov(mintOverride(t, overrideOpts{agent: "support-agent"})))
			}, "override_mismatch"},
			{"other tool", func() request {
				return payment(agent, bigPayment, ov(mintOverride(t, overrideOpts{tool: "payments.refund"})))
			}, "override_mismatch"},
			{"expired", func() request { return payment(agent, bigPayment, ov(mintOverride(t, overrideOpts{expired: true}))) }, "override_expired"},
			{"unknown key", func() request {
				return payment(agent, bigPayment, ov(mintOverride(t, overrideOpts{key: fx.rogueKey})))
			}, "override_invalid"},
			{"agent token as override", func() request { return payment(agent, bigPayment, ov(agent)) }, "override_invalid"},
			{"garbage", func() request { return payment(agent, bigPayment, ov("a.b.c")) }, "override_invalid"},
		}
		for _, r := range refused {
			t.Run(r.name, func(t *testing.T) {
				id := held(t, host, r.req())
				status, m := localJSON(t, host, id)
				if status != 403 || m["error"] != r.code || m["decision_id"] == "" {
					t.Errorf("reply %d %v, want 403 %s", status, m, r.code)
				}
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
					t.Errorf("%d callouts for a refused override", n)
				}
				host.CompleteHttpContext(id)
			})
		}

		t.Run("deny still wins", func(t *testing.T) {
			huge := `{"amount":60000,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`
			id := held(t, host, payment(agent, huge, ov(mintOverride(t, overrideOpts{params: huge}))))
			status, m := localJSON(t, host, id)
			if status != 403 || m["error"] != "policy_violation" {
				t.Errorf("reply %d %v", status, m)
			}
			if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
				t.Errorf("%d callouts: a denied call must not spend the override", n)
			}
			host.CompleteHttpContext(id)
		})

		t.Run("ignored when no approval is needed", func(t *testing.T) {
			small := `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`
			res := send(t, host, payment(agent, small, ov("not even a token")))
			if res.local != nil || res.action != types.ActionContinue {
				t.Errorf("refused: %+v", res.local)
			}
		})

		t.Run("given twice", func(t *testing.T) {
			res := send(t, host, payment(agent, bigPayment, ov(good), ov(good)))
			if m := res.localJSON(t); res.local.StatusCode != 400 || m["error"] != "override_invalid" {
				t.Errorf("reply %d %s", res.local.StatusCode, res.local.Data)
			}
		})
	})
}

// TestOverrideSanitizeStillApplies: an override lifts the approval of a
// call whose parameters also need redaction; the body is still rewritten.
func TestOverrideSanitizeStillApplies(t *testing.T) {
	memo := `{"amount":7500,"currency":"EUR","beneficiary_iban":"DE89370400440532013000","memo":"card 4111 1111 1111 1111"}`
	conf := pluginConfig(allBundles(), `"control_plane":{"cluster":"aegis-cp"}`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, conf)
		defer reset()
		agent := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		id := held(t, host, payment(agent, memo, [2]string{plugin.HeaderOverride, mintOverride(t, overrideOpts{params: memo})}))
		cs := host.GetCalloutAttributesFromContext(id)
		if len(cs) != 1 {
			r := host.GetSentLocalResponse(id)
			t.Fatalf("%d callouts; reply %+v", len(cs), r)
		}
		host.CallOnHttpCallResponse(cs[0].CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{"ok":true}`))
		if r := host.GetSentLocalResponse(id); r != nil {
			t.Fatalf("refused: %s", r.Data)
		}
		body := string(host.GetCurrentRequestBody(id))
		if strings.Contains(body, "4111") || !strings.Contains(body, "[card]") {
			t.Errorf("forwarded body %s", body)
		}
		host.CompleteHttpContext(id)
	})
}

// TestApprovalHold: with limits.approval_hold_ms the request waits while
// the filter polls the approval on tick; approved → its override token is
// redeemed and the call goes on; denied → approval_needed reply.
func TestApprovalHold(t *testing.T) {
	conf := pluginConfig(allBundles(), `"control_plane":{"cluster":"aegis-cp"},"limits":{"approval_hold_ms":60000},"audit":{"flush_interval_ms":100}`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, conf)
		defer reset()
		agent := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		// created starts a payment that needs approval and answers the
		// approval request; it returns the stream id.
		created := func() uint32 {
			id := held(t, host, payment(agent, bigPayment))
			cs := host.GetCalloutAttributesFromContext(id)
			if len(cs) != 1 || !hasHeader(cs[0].Headers, ":path", plugin.ApprovalsPath) {
				t.Fatalf("callouts %+v", cs)
			}
			host.CallOnHttpCallResponse(cs[0].CalloutID, [][2]string{{":status", "201"}}, nil, []byte(`{"approval_id":"ap-7","status":"pending"}`))
			if r := host.GetSentLocalResponse(id); r != nil {
				t.Fatalf("answered instead of held: %s", r.Data)
			}
			return id
		}
		// poll ticks and returns the newest approval status request.
		poll := func() proxytest.HttpCalloutAttribute {
			t.Helper()
			host.Tick()
			var last *proxytest.HttpCalloutAttribute
			for _, c := range host.GetCalloutAttributesFromContext(proxytest.PluginContextID) {
				if hasHeader(c.Headers, ":path", "/v1/approvals/ap-7") {
					last = &c
				}
			}
			if last == nil {
				t.Fatal("no approval poll after a tick")
			}
			if !hasHeader(last.Headers, ":method", "GET") || !hasHeader(last.Headers, "x-aegis-agent-token", agent) {
				t.Errorf("poll headers %q", last.Headers)
			}
			return *last
		}

		t.Run("approved", func(t *testing.T) {
			id := created()
			c := poll()
			host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{"status":"pending"}`))
			if host.GetSentLocalResponse(id) != nil {
				t.Fatal("answered while pending")
			}
			c = poll()
			body, _ := json.Marshal(map[string]string{"status": "approved", "override_token": mintOverride(t, overrideOpts{jti: "hold-1"})})
			host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "200"}}, nil, body)
			cs := host.GetCalloutAttributesFromContext(id)
			redeem := cs[len(cs)-1]
			if !hasHeader(redeem.Headers, ":path", plugin.RedeemPath) {
				t.Fatalf("no redemption after approval: %q", redeem.Headers)
			}
			host.CallOnHttpCallResponse(redeem.CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{"ok":true}`))
			if r := host.GetSentLocalResponse(id); r != nil {
				t.Fatalf("refused: %s", r.Data)
			}
			if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue {
				t.Errorf("stream action %v", a)
			}
			host.CompleteHttpContext(id)
		})

		t.Run("denied", func(t *testing.T) {
			id := created()
			c := poll()
			host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{"status":"denied"}`))
			status, m := localJSON(t, host, id)
			if status != 403 || m["error"] != "approval_needed" || m["approval_id"] != "ap-7" || !reasonsContain(m, "approval denied") {
				t.Errorf("reply %d %v", status, m)
			}
			host.CompleteHttpContext(id)
		})

		t.Run("client gone", func(t *testing.T) {
			id := created()
			host.CompleteHttpContext(id)
			before := len(host.GetCalloutAttributesFromContext(proxytest.PluginContextID))
			host.Tick()
			for _, c := range host.GetCalloutAttributesFromContext(proxytest.PluginContextID)[before:] {
				if hasHeader(c.Headers, ":path", "/v1/approvals/ap-7") {
					t.Error("a finished stream is still polled")
				}
			}
		})
	})
}
