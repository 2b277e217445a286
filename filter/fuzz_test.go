//go:build !wasm

package main

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/filter/internal/plugin"
)

// fuzzHost is one native plugin shared by every input of a fuzz run:
// starting a plugin compiles policies, far too slow per input.
var fuzzHost struct {
	once sync.Once
	host proxytest.HostEmulator
	toks []string
}

// FuzzRequest drives hostile requests through the plugin and checks the
// filter's invariants: a request either gets a local reply (a JSON body
// and a status the filter uses) or goes upstream carrying a decision id,
// without the agent token and without any x-aegis-* header the caller sent.
func FuzzRequest(f *testing.F) {
	f.Add(uint8(0), "POST", "/v1/payments", "x-aegis-intent", "pay_invoice", []byte(`{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`), true)
	f.Add(uint8(1), "POST", "/mcp", "content-type", "application/json", []byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_pods","arguments":{"namespace":"a"}}}]`), true)
	f.Add(uint8(2), "GET", "/v1/invoices/%2F..", "x-aegis-override", "x", []byte(nil), false)
	f.Add(uint8(3), "POST", "/mcp", "content-encoding", "gzip", []byte(`{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call"}`), true)
	f.Add(uint8(0), "POST", "/v1/payments", "x-aegis-override", "eyJhbGciOiJFZERTQSJ9.e30.AAAA", []byte(`{"amount":7500,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`), true)
	f.Add(uint8(4), "DELETE", "/mcp?x=1&x=2", "authorization", "Bearer forged", []byte(`{"a":1,"a":2}`), true)
	f.Fuzz(func(t *testing.T, sel uint8, method, path, hname, hvalue string, body []byte, hasBody bool) {
		fuzzHost.once.Do(func() {
			host, _ := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(plugin.NewVMContext()).
				WithVMConfiguration(vmConfig()).WithPluginConfiguration(pluginConfig(allBundles(), `"limits":{"max_body_bytes":4096}`)))
			if !host.StartVM() || host.StartPlugin() != types.OnPluginStartStatusOK {
				panic("fuzz host did not start")
			}
			fuzzHost.host = host
			fuzzHost.toks = []string{
				mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"}),
				mint(t, tokenOpts{agent: "deploy-bot", tenant: "platform"}),
				mint(t, tokenOpts{agent: "stranger", tenant: "shadow"}),
			}
		})
		host := fuzzHost.host
		authorities := []string{"payments.acme.internal", "mcp-k8s.platform.internal", "billing.acme.internal", "status.shadow.internal"}
		hs := [][2]string{{":method", method}, {":scheme", "https"}, {":authority", authorities[int(sel)%len(authorities)]}, {":path", path},
			{"authorization", "Bearer " + fuzzHost.toks[int(sel/4)%len(fuzzHost.toks)]}, {strings.ToLower(hname), hvalue}}
		if hasBody {
			hs = append(hs, [2]string{"content-type", "application/json"})
		}
		id := host.InitializeHttpContext()
		defer host.CompleteHttpContext(id)
		action := host.CallOnRequestHeaders(id, hs, !hasBody)
		if hasBody && host.GetSentLocalResponse(id) == nil {
			if action != types.ActionPause {
				t.Fatalf("body not held for the decision: %v", action)
			}
			half := len(body) / 2
			if host.CallOnRequestBody(id, body[:half], false) == types.ActionContinue {
				t.Fatal("continued before the body was complete")
			}
			if host.GetSentLocalResponse(id) == nil {
				action = host.CallOnRequestBody(id, body[half:], true)
			}
		}
		if r := host.GetSentLocalResponse(id); r != nil {
			switch r.StatusCode {
			case 200, 400, 401, 403, 429, 503:
			default:
				t.Fatalf("status %d", r.StatusCode)
			}
			if !json.Valid(r.Data) {
				t.Fatalf("reply body %q is not JSON", r.Data)
			}
			return
		}
		if action != types.ActionContinue {
			t.Fatalf("neither answered nor continued: %v", action)
		}
		fwd := host.GetCurrentRequestHeaders(id)
		sawID := false
		for _, h := range fwd {
			name := strings.ToLower(h[0])
			switch {
			case name == plugin.HeaderDecisionID:
				sawID = len(h[1]) == 32
			case name == plugin.HeaderShadowDecision:
			case name == "authorization", strings.HasPrefix(name, "x-aegis-"):
				t.Fatalf("forwarded %q", h)
			}
		}
		if !sawID {
			t.Fatalf("forwarded without a decision id: %q", fwd)
		}
	})
}
