//go:build !wasm

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
