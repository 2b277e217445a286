package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/audit"
	"github.com/aegis-mesh/aegis/controlplane/config"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
	"github.com/aegis-mesh/aegis/controlplane/notify"
	"github.com/aegis-mesh/aegis/controlplane/oteltrace/otlptest"
	"github.com/aegis-mesh/aegis/controlplane/webhook"
	"github.com/aegis-mesh/aegis/jcs"
	"github.com/aegis-mesh/aegis/keys"
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

// decisionIDs are the aegis.decision_id attributes of the spans received.
func decisionIDs(r *otlptest.Receiver) map[string]string {
	out := map[string]string{}
	for _, s := range r.Spans() {
		var id, tool string
		for _, kv := range s.Attributes {
			switch kv.Key {
			case "aegis.decision_id":
				id = kv.Value.GetStringValue()
			case "aegis.tool":
				tool = kv.Value.GetStringValue()
			}
		}
		out[id] = s.Name + " " + tool
	}
	return out
}

// signedBatch makes n audit events of node's chain vm0 from seq 1, hash
// chained and signed with the node's enrolled key, as the filter does.
func signedBatch(t *testing.T, nodeID, tenant string, key ed25519.PrivateKey, n int) ([]byte, []string) {
	t.Helper()
	var head [32]byte
	var evs []json.RawMessage
	var ids []string
	now := time.Now().UTC()
	for seq := 1; seq <= n; seq++ {
		id := fmt.Sprintf("dec-%s-%d", nodeID, seq)
		raw, err := json.Marshal(map[string]any{
			"id": id, "seq": seq, "node_id": nodeID, "tenant": tenant, "time": now.Add(time.Duration(seq) * time.Millisecond).Format(time.RFC3339Nano),
			"agent": "billing-agent", "chain": []string{"billing-agent"}, "tool": "payments.create", "action": "allow", "shadow_action": "",
			"reasons": []string{}, "rule_ids": []string{"r1"}, "policy_revision": 1, "input_digest": strings.Repeat("a", 64), "redactions": []any{},
			"decision_ns": 1500, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "status": 200, "approval_id": "", "override_jti": "",
		})
		if err != nil {
			t.Fatal(err)
		}
		canon, err := jcs.Canonicalize(raw)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		h.Write(head[:])
		h.Write(canon)
		h.Sum(head[:0])
		evs = append(evs, raw)
		ids = append(ids, id)
	}
	var zero [32]byte
	body, err := json.Marshal(audit.Batch{NodeID: nodeID, Tenant: tenant, ChainID: "vm0", SeqFirst: 1, SeqLast: int64(n),
		PrevHash: hex.EncodeToString(zero[:]), Events: evs, BatchHash: hex.EncodeToString(head[:]),
		Signature: hex.EncodeToString(ed25519.Sign(key, head[:]))})
	if err != nil {
		t.Fatal(err)
	}
	return body, ids
}

// A control plane with a collector and a webhook configured exports a span
// per ingested decision (flushed when it stops), posts a signed notification
// when a node creates an approval and when it is decided, and puts the
// decided approval into the evidence pack.
func TestStandardSpansAndWebhooks(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dsn, dir string) {
		rcv, otlpAddr := otlptest.StartGRPC(t)
		secret := []byte("webhook-secret-0123456789abcdef")
		secretFile := filepath.Join(dir, "hook.secret")
		if err := os.WriteFile(secretFile, append(append([]byte{}, secret...), '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		type delivery struct {
			event string
			body  []byte
			err   error
		}
		deliveries := make(chan delivery, 16)
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err == nil {
				err = webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute)
			}
			deliveries <- delivery{event: r.Header.Get(webhook.HeaderEvent), body: body, err: err}
			w.WriteHeader(http.StatusNoContent)
		}))
		t.Cleanup(hook.Close)

		h := startWith(t, dsn, dir, func(c *Config) {
			c.Settings.OTelEndpoint = otlpAddr
			c.Settings.OTelProtocol = "grpc"
			c.Settings.OTelInsecure = true
			c.Settings.Webhooks = []config.Webhook{{URL: hook.URL + "/approvals", Format: config.WebhookGeneric, SecretFile: secretFile}}
			c.Extend = Standard(StandardOptions{})
		})
		h.tenant("acme", false, 1)
		n := h.enroll("acme", "eu-west-1", "edge")
		key := n.client.Transport.(*http.Transport).TLSClientConfig.Certificates[0].PrivateKey.(ed25519.PrivateKey)

		batch, ids := signedBatch(t, n.id, "acme", key, 3)
		h.expect(h.req(n.client, "POST", "/v1/audit/batches", "", batch), 200, "")

		sum := sha256.Sum256([]byte("amount=9000"))
		created := h.expect(h.req(n.client, "POST", "/v1/approvals", "", map[string]any{
			"decision_id": "dec-approval-1", "agent": "billing-agent", "chain": []string{"billing-agent"}, "tool": "payments.create",
			"params_digest": hex.EncodeToString(sum[:]), "reasons": []string{"approval: amount above 5000"}, "policy_revision": 1,
			"approvers": []string{"payments-leads"}, "request_summary": "POST payments.acme.internal/v1/payments",
		}), 201, "").json(t)
		select {
		case d := <-deliveries:
			if d.err != nil {
				t.Fatalf("webhook delivery does not verify: %v", d.err)
			}
			var ev webhook.Event
			if err := json.Unmarshal(d.body, &ev); err != nil {
				t.Fatal(err)
			}
			if d.event != "approval.created" || ev.Type != "approval.created" || ev.ApprovalID != created["approval_id"] || ev.Tenant != "acme" || ev.Agent != "billing-agent" {
				t.Fatalf("webhook delivery %s: %+v", d.event, ev)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no webhook delivery for the new approval")
		}

		// An approver decides it under the published policy; the evidence
		// pack of the window carries the decided approval and verifies
		// against the evidence key.
		author := h.token("alice", "acme", "author", "publisher")
		h.expect(h.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"payments.yaml": examplePolicy(t)}}), 201, "")
		lead := h.token("lead-1", "acme", "approver")
		h.expect(h.do("POST", "/v1/tenants/acme/policies/1/approve", lead, nil), 200, "")
		h.expect(h.do("POST", "/v1/tenants/acme/releases", author, map[string]any{"version": 1}), 201, "")
		id := created["approval_id"].(string)
		// The policy names payments-leads: an approver outside the group
		// is refused, one whose API token carries it decides.
		h.expect(h.do("POST", "/v1/approvals/"+id+"/approve", lead, map[string]any{"note": "checked"}), 403, "not_an_approver")
		paymentsLead := h.groupToken("lead-2", "acme", []string{"payments-leads"}, "approver")
		h.expect(h.do("POST", "/v1/approvals/"+id+"/approve", paymentsLead, map[string]any{"note": "checked"}), 200, "")
		for got := false; !got; {
			select {
			case d := <-deliveries:
				got = d.err == nil && d.event == "approval.approved"
			case <-time.After(30 * time.Second):
				t.Fatal("no webhook delivery for the decision")
			}
		}
		from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano), time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
		pack := h.expect(h.do("GET", "/v1/audit/export?tenant=acme&from="+url.QueryEscape(from)+"&to="+url.QueryEscape(to), h.admin, nil), 200, "").body
		kd := h.expect(h.do("GET", "/v1/audit/evidence-key", h.admin, nil), 200, "").json(t)
		evPub, err := keys.ParsePublicPEM([]byte(kd["public_key_pem"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := evidence.Verify(bytes.NewReader(pack), evidence.VerifyOptions{Key: evPub})
		if err != nil {
			t.Fatalf("evidence pack: %v", err)
		}
		if rep.Approvals != 1 || rep.Events != int64(len(ids)) {
			t.Fatalf("evidence pack holds %d approvals and %d events, want 1 and %d", rep.Approvals, rep.Events, len(ids))
		}

		// Stopping the control plane flushes the spans of every accepted
		// batch to the collector.
		h.stop()
		got := decisionIDs(rcv)
		for _, id := range ids {
			if got[id] != "aegis.decision payments.create" {
				t.Errorf("span of decision %s: %q (received %v)", id, got[id], got)
			}
		}
	})
}

// The standard OTEL_EXPORTER_OTLP_ENDPOINT form, an http:// URL with a
// base path, reaches an OTLP/HTTP collector at <path>/v1/traces without
// TLS.
func TestStandardSpansOverHTTP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rcv := &otlptest.Receiver{}
	col := httptest.NewServer(rcv.HTTPHandler("/collector/v1/traces"))
	t.Cleanup(col.Close)
	h := startWith(t, "sqlite:"+filepath.Join(dir, "aegis.db"), dir, func(c *Config) {
		c.Settings = c.Settings.WithEnv(func(k string) string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL + "/collector/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}[k]
		})
		c.Extend = Standard(StandardOptions{})
	})
	h.tenant("acme", false, 1)
	n := h.enroll("acme", "eu-west-1", "edge")
	key := n.client.Transport.(*http.Transport).TLSClientConfig.Certificates[0].PrivateKey.(ed25519.PrivateKey)
	batch, ids := signedBatch(t, n.id, "acme", key, 2)
	h.expect(h.req(n.client, "POST", "/v1/audit/batches", "", batch), 200, "")
	h.stop()
	got := decisionIDs(rcv)
	if len(got) != len(ids) {
		t.Fatalf("collector received %v, want spans of %v", got, ids)
	}
	for _, id := range ids {
		if got[id] != "aegis.decision payments.create" {
			t.Errorf("span of decision %s: %q", id, got[id])
		}
	}
}

// A webhook whose secret file is missing stops the control plane from
// starting: deliveries are never sent unsigned.
func TestStandardWebhookSecretMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := New(context.Background(), Config{
		Settings: config.Config{Listen: "127.0.0.1:0", Database: "sqlite:" + filepath.Join(dir, "aegis.db"), DataDir: dir,
			Webhooks: []config.Webhook{{URL: "http://127.0.0.1:1/hook", Format: config.WebhookSlack, SecretFile: filepath.Join(dir, "absent")}}},
		Extend: Standard(StandardOptions{}),
	})
	if err == nil || !strings.Contains(err.Error(), "webhook-1") || !strings.Contains(err.Error(), "secret file") {
		t.Fatalf("start with a missing webhook secret: %v", err)
	}
}
