//go:build !wasm

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log"
	"os"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/filter/internal/audit"
	"github.com/aegis-mesh/aegis/jcs"
	"github.com/aegis-mesh/aegis/keys"
)

// auditVMConf is a VM configuration with the bundle key and a fresh node
// signing key.
func auditVMConf(t *testing.T) ([]byte, ed25519.PublicKey) {
	t.Helper()
	nodeKey, err := keys.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nodePEM, err := keys.MarshalPrivatePEM(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	vmConf, err := json.Marshal(map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": fx.bundlePubPEM, "AEGIS_NODE_SIGNING_KEY": string(nodePEM)})
	if err != nil {
		t.Fatal(err)
	}
	return vmConf, nodeKey.Public().(ed25519.PublicKey)
}

// rawBatch is a batch as the control plane reads it: events stay raw, and
// their hash covers their canonical form.
type rawBatch struct {
	PrevHash  string            `json:"prev_hash"`
	Events    []json.RawMessage `json:"events"`
	BatchHash string            `json:"batch_hash"`
}

// checkRawBatch checks what the control plane checks of the bytes on the
// wire: each event is already canonical (jcs.Canonicalize changes
// nothing) and the chain of sha256(prev || event) ends at batch_hash.
func checkRawBatch(t *testing.T, body []byte) rawBatch {
	t.Helper()
	var rb rawBatch
	if err := json.Unmarshal(body, &rb); err != nil {
		t.Fatalf("batch %s: %v", body, err)
	}
	prev, err := hex.DecodeString(rb.PrevHash)
	if err != nil {
		t.Fatal(err)
	}
	for i, raw := range rb.Events {
		canon, err := jcs.Canonicalize(raw)
		if err != nil || !bytes.Equal(canon, raw) {
			t.Errorf("event %d is not canonical (%v):\n sent %s\n  jcs %s", i, err, raw, canon)
		}
		h := sha256.New()
		h.Write(prev)
		h.Write(canon)
		prev = h.Sum(nil)
	}
	if hex.EncodeToString(prev) != rb.BatchHash {
		t.Errorf("batch_hash %s, the events chain to %x", rb.BatchHash, prev)
	}
	return rb
}

// TestAuditCost: an event carries the spend its call was charged
// (cost_micro_usd), 0 for a refused call and for a tool without cost, so
// that the control plane's fleet budgets count what the nodes let through.
func TestAuditCost(t *testing.T) {
	vmConf, pub := auditVMConf(t)
	conf := pluginConfig(allBundles(), `"control_plane":{"cluster":"aegis-cp"},"audit":{"batch_size":10,"flush_interval_ms":100}`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := start(t, vm, vmConf, conf)
		defer reset()
		if host.StartPlugin() != types.OnPluginStartStatusOK {
			t.Fatalf("StartPlugin: %q", host.GetCriticalLogs())
		}
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		calls := []struct {
			name string
			req  request
			cost int64
		}{
			{"allowed payment", payment(tok, `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`), 50000},
			{"refused payment", payment(tok, `{"amount":60000,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`), 0},
			{"sanitized payment", payment(tok, `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000","memo":"mail bob@example.com"}`), 50000},
			{"read without cost", request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}}, 0},
		}
		for _, c := range calls {
			send(t, host, c.req)
		}
		host.Tick()
		cs := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
		if len(cs) != 1 {
			t.Fatalf("%d callouts after a tick", len(cs))
		}
		var b audit.Batch
		if err := json.Unmarshal(cs[0].Body, &b); err != nil {
			t.Fatal(err)
		}
		if err := audit.VerifyBatch(b, pub); err != nil {
			t.Errorf("batch does not verify: %v", err)
		}
		rb := checkRawBatch(t, cs[0].Body)
		if len(b.Events) != len(calls) || len(rb.Events) != len(calls) {
			t.Fatalf("%d events, want %d", len(b.Events), len(calls))
		}
		for i, c := range calls {
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(rb.Events[i], &fields); err != nil {
				t.Fatal(err)
			}
			if got := string(fields["cost_micro_usd"]); got != jsonInt(c.cost) || b.Events[i].CostMicroUSD != c.cost {
				t.Errorf("%s (%s): cost_micro_usd %s, want %d", c.name, b.Events[i].Action, got, c.cost)
			}
		}
		if b.Events[1].Action != "deny" || b.Events[2].Action != "sanitize" {
			t.Errorf("actions %s, %s; want deny, sanitize", b.Events[1].Action, b.Events[2].Action)
		}
	})
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// proxyDoneLog is what the SDK's emulator logs (through the log package)
// when the guest calls proxy_done; it implements nothing else for it.
const proxyDoneLog = "ProxyDone not implemented in the host emulator yet"

// captureLog sends the log package's output to a buffer for the test.
func captureLog(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	log.SetOutput(&buf)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	return &buf
}

// TestAuditDrain: a retired plugin (proxy_on_done) answers false while it
// holds audit events, ships them batch by batch without waiting for a
// tick, and calls proxy_done when the queue is empty, when the control
// plane stops acknowledging, or at once when there is nothing to ship.
func TestAuditDrain(t *testing.T) {
	vmConf, pub := auditVMConf(t)
	// A flush interval far beyond the test: only the drain ships.
	conf := pluginConfig(allBundles(), `"control_plane":{"cluster":"aegis-cp"},"audit":{"batch_size":2,"flush_interval_ms":600000}`)
	pay := func(tok string) request {
		return payment(tok, `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`)
	}
	cases := []struct {
		name    string
		calls   int
		answers []string // the control plane's status per batch
		batches [][2]int64
		left    bool // events remain unacknowledged
	}{
		{"empty queue", 0, nil, nil, false},
		{"all shipped", 3, []string{"200", "200"}, [][2]int64{{1, 2}, {3, 3}}, false},
		{"resume after 409", 3, []string{"409", "200"}, [][2]int64{{1, 2}, {2, 3}}, false},
		{"control plane fails", 3, []string{"503"}, [][2]int64{{1, 2}}, true},
	}
	for _, tc := range cases {
		// A fresh VM per case: the chain (and its seq) belongs to the VM.
		t.Run(tc.name, func(t *testing.T) {
			vmTest(t, func(t *testing.T, vm types.VMContext) {
				host, reset := start(t, vm, vmConf, conf)
				defer reset()
				if host.StartPlugin() != types.OnPluginStartStatusOK {
					t.Fatalf("StartPlugin: %q", host.GetCriticalLogs())
				}
				logs := captureLog(t)
				tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
				for range tc.calls {
					if res := send(t, host, pay(tok)); res.local != nil {
						t.Fatalf("payment refused: %s", res.local.Data)
					}
				}
				if done := host.FinishVM(); done != (tc.calls == 0) {
					t.Fatalf("OnPluginDone = %v with %d events queued", done, tc.calls)
				}
				for i, want := range tc.batches {
					if strings.Contains(logs.String(), proxyDoneLog) {
						t.Fatalf("proxy_done before batch %d", i)
					}
					cs := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
					if len(cs) != i+1 {
						t.Fatalf("%d callouts, want %d", len(cs), i+1)
					}
					c := cs[i]
					var b audit.Batch
					if err := json.Unmarshal(c.Body, &b); err != nil {
						t.Fatal(err)
					}
					if err := audit.VerifyBatch(b, pub); err != nil {
						t.Errorf("batch %d does not verify: %v", i, err)
					}
					if b.SeqFirst != want[0] || b.SeqLast != want[1] {
						t.Errorf("batch %d: seq %d-%d, want %d-%d", i, b.SeqFirst, b.SeqLast, want[0], want[1])
					}
					body := []byte(`{"accepted":2,"duplicates":0}`)
					if tc.answers[i] == "409" {
						body = []byte(`{"error":"gap","expected_seq":2}`)
					}
					host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", tc.answers[i]}}, nil, body)
				}
				if tc.calls > 0 && !strings.Contains(logs.String(), proxyDoneLog) {
					t.Errorf("proxy_done not called after the drain; logs %q %q", host.GetWarnLogs(), host.GetInfoLogs())
				}
				if n := strings.Count(logs.String(), proxyDoneLog); n > 1 {
					t.Errorf("proxy_done called %d times", n)
				}
				if got := len(host.GetCalloutAttributesFromContext(proxytest.PluginContextID)); got != len(tc.batches) {
					t.Errorf("%d callouts, want %d", got, len(tc.batches))
				}
				warned := false
				for _, l := range host.GetWarnLogs() {
					warned = warned || strings.Contains(l, "did not acknowledge")
				}
				if warned != tc.left {
					t.Errorf("unacknowledged events reported %v, want %v: %q", warned, tc.left, host.GetWarnLogs())
				}
			})
		})
	}
}
