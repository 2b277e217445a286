package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/e2e/internal/stack"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver for the outage switch
)

// TestMCPThroughTheEdge: real MCP traffic (the official SDK's client and
// server over streamable HTTP) through the edge: tools/list is filtered per
// agent, allowed calls reach the server, forbidden ones are answered as
// JSON-RPC errors the model can read and never reach it.
func TestMCPThroughTheEdge(t *testing.T) {
	s := startStack(t, stack.Tenant{Name: "platform", Policy: "mcp-devops.yaml"})
	ctx := context.Background()
	gw, err := s.StartEdge(ctx, "gw", "platform")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		agent string
		tools []string
	}{
		{"oncall-assistant", []string{"get_logs", "get_pods"}},
		{"deploy-bot", []string{"deploy", "get_logs", "get_pods"}},
	} {
		tok, err := s.AgentToken(ctx, "platform", tc.agent)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := s.MCPSession(ctx, gw, tok, nil)
		if err != nil {
			t.Fatalf("%s: connect: %v", tc.agent, err)
		}
		list, err := sess.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range list.Tools {
			names = append(names, tool.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, tc.tools) {
			t.Errorf("%s sees tools %v, want %v", tc.agent, names, tc.tools)
		}
		before := s.MCP.Count("k8s.read_secret")
		res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "read_secret", Arguments: map[string]any{"path": "db"}})
		if err != nil || !res.IsError {
			t.Errorf("%s: read_secret not refused as a tool error: %v %+v", tc.agent, err, res)
		}
		if s.MCP.Count("k8s.read_secret") != before {
			t.Fatal("a denied MCP call reached the server")
		}
		res, err = sess.CallTool(ctx, &mcp.CallToolParams{Name: "get_pods", Arguments: map[string]any{"namespace": "staging"}})
		if err != nil || res.IsError {
			t.Errorf("%s: get_pods: %v %+v", tc.agent, err, res)
		}
		res, err = sess.CallTool(ctx, &mcp.CallToolParams{Name: "get_pods", Arguments: map[string]any{"namespace": "Bad Namespace!"}})
		if err != nil || !res.IsError {
			t.Errorf("%s: get_pods with a bad namespace not refused: %v %+v", tc.agent, err, res)
		}
		sess.Close()
	}
}

// TestControlPlaneOutage: with the control plane stopped the edge keeps
// enforcing the last good bundle, fails closed for what needs the control
// plane, buffers evidence, and ships it all once the control plane is back;
// the exported evidence pack then verifies offline.
func TestControlPlaneOutage(t *testing.T) {
	s := startStack(t, stack.Tenant{Name: "acme", Policy: "payments.yaml"})
	ctx := context.Background()
	gw, err := s.StartEdge(ctx, "gw", "acme")
	if err != nil {
		t.Fatal(err)
	}
	billing, err := s.AgentToken(ctx, "acme", "billing-agent")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if r := pay(t, s, gw, billing, 10); r.Status != http.StatusCreated {
		t.Fatalf("online allow: %d %s", r.Status, r.Body)
	}
	if err := s.StopControlPlane(); err != nil {
		t.Fatal(err)
	}
	if r := pay(t, s, gw, billing, 20); r.Status != http.StatusCreated {
		t.Errorf("offline allow: %d %s", r.Status, r.Body)
	}
	if r := pay(t, s, gw, billing, 60000); r.Status != http.StatusForbidden {
		t.Errorf("offline deny: %d %s", r.Status, r.Body)
	}
	if r := pay(t, s, gw, billing, 7500); r.Status != http.StatusServiceUnavailable {
		t.Errorf("offline approval for a write tool must fail closed: %d %s", r.Status, r.Body)
	}
	// Reads stay open while offline (the policy's fail mode read: open).
	if r, err := s.Call(ctx, gw, "GET", "billing.acme.internal", "/v1/invoices?limit=10", billing, nil, nil); err != nil || r.Status != http.StatusOK {
		t.Errorf("offline read: %v %+v", err, r)
	}
	if err := s.WaitMetric(ctx, gw, "aegis_edge_wal_depth", 20*time.Second, func(v float64) bool { return v >= 3 }); err != nil {
		t.Fatalf("offline decisions not buffered in the WAL: %v", err)
	}
	if err := s.StartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitMetric(ctx, gw, "aegis_edge_wal_depth", 60*time.Second, func(v float64) bool { return v == 0 }); err != nil {
		t.Fatalf("buffered evidence not shipped after the control plane came back: %v", err)
	}

	dir := t.TempDir()
	tok := filepath.Join(dir, "auditor.token")
	if err := os.WriteFile(tok, []byte(s.Role("acme", "auditor").Token), 0o600); err != nil {
		t.Fatal(err)
	}
	pack := filepath.Join(dir, "pack.tar.gz")
	export := exec.CommandContext(ctx, s.Bin.Aegis, "audit", "export", "--server", "https://"+s.CPAddr, "--token-file", tok,
		"--tenant", "acme", "--from", start.Add(-time.Minute).UTC().Format(time.RFC3339), "-o", pack)
	export.Env = append(os.Environ(), "SSL_CERT_FILE="+s.CAFile())
	if out, err := export.CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, s.Bin.Aegis, "audit", "verify", pack).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK") {
		t.Fatalf("evidence pack does not verify: %v\n%s", err, out)
	}
	// The node's own WAL verifies offline too.
	walOut, err := exec.CommandContext(ctx, s.Bin.Aegis, "audit", "verify", "--dir", filepath.Join(gw.Dir, "state", "audit")).CombinedOutput()
	if err != nil {
		t.Fatalf("edge WAL does not verify: %v\n%s", err, walOut)
	}
}

// TestSharedGateway: two tenants behind one edge. The agent token's tenant
// picks the policy; neither tenant's agents can use the other's tools, and
// each tenant's evidence lands under that tenant.
func TestSharedGateway(t *testing.T) {
	s := startStack(t, stack.Tenant{Name: "acme", Policy: "payments.yaml"}, stack.Tenant{Name: "platform", Policy: "mcp-devops.yaml"})
	ctx := context.Background()
	gw, err := s.StartSharedEdge(ctx, "shared", "acme", "platform")
	if err != nil {
		t.Fatal(err)
	}
	billing, err := s.AgentToken(ctx, "acme", "billing-agent")
	if err != nil {
		t.Fatal(err)
	}
	deploy, err := s.AgentToken(ctx, "platform", "deploy-bot")
	if err != nil {
		t.Fatal(err)
	}
	if r := pay(t, s, gw, billing, 10); r.Status != http.StatusCreated {
		t.Fatalf("acme agent on acme tool: %d %s", r.Status, r.Body)
	}
	before := s.Payments.Count("payments.create")
	if r := pay(t, s, gw, deploy, 10); r.Status != http.StatusForbidden {
		t.Fatalf("platform agent on acme tool: %d %s", r.Status, r.Body)
	}
	if s.Payments.Count("payments.create") != before {
		t.Fatal("another tenant's agent reached acme's tool")
	}
	sess, err := s.MCPSession(ctx, gw, deploy, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "get_pods", Arguments: map[string]any{"namespace": "staging"}})
	sess.Close()
	if err != nil || res.IsError {
		t.Fatalf("platform agent on platform tool: %v %+v", err, res)
	}
	if sess, err := s.MCPSession(ctx, gw, billing, nil); err == nil {
		// The session may open (initialize is allowed); the call must not.
		res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "get_pods", Arguments: map[string]any{"namespace": "staging"}})
		sess.Close()
		if err == nil && !res.IsError {
			t.Fatal("acme agent called platform's MCP tool")
		}
	}
	if s.MCP.Count("k8s.get_pods") != 1 {
		t.Fatalf("MCP server saw %d get_pods calls, want 1", s.MCP.Count("k8s.get_pods"))
	}
	for tenant, wantTool := range map[string]string{"acme": "payments.create", "platform": "k8s.get_pods"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var out struct {
				Events []struct {
					Tenant string `json:"tenant"`
					Tool   string `json:"tool"`
					Action string `json:"action"`
				} `json:"events"`
			}
			err := s.Role(tenant, "auditor").JSON(ctx, "GET", "/v1/audit/events?tenant="+tenant, nil, &out)
			found := false
			for _, e := range out.Events {
				if e.Tenant != tenant {
					t.Fatalf("%s's query returned an event of %s", tenant, e.Tenant)
				}
				found = found || (e.Tool == wantTool && e.Action == "allow")
			}
			if err == nil && found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: allowed %s not in its audit events: %v", tenant, wantTool, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// TestReleaseAndRollbackPropagate: a new release (observe stage) reaches
// the running edge without a restart, and so does a signed rollback to the
// earlier enforced revision.
func TestReleaseAndRollbackPropagate(t *testing.T) {
	s := startStack(t, stack.Tenant{Name: "acme", Policy: "payments.yaml"})
	ctx := context.Background()
	gw, err := s.StartEdge(ctx, "gw", "acme")
	if err != nil {
		t.Fatal(err)
	}
	support, err := s.AgentToken(ctx, "acme", "support-agent")
	if err != nil {
		t.Fatal(err)
	}
	waitRevision := func(rev int) {
		t.Helper()
		if err := s.WaitMetric(ctx, gw, `aegis_edge_bundle_revision{tenant="acme"}`, 30*time.Second, func(v float64) bool { return int(v) == rev }); err != nil {
			t.Fatal(err)
		}
	}
	if r := pay(t, s, gw, support, 5); r.Status != http.StatusForbidden {
		t.Fatalf("revision 1 (enforce): support-agent payment %d %s", r.Status, r.Body)
	}
	rev, err := s.Publish(ctx, "acme", "payments.yaml", "observe")
	if err != nil {
		t.Fatal(err)
	}
	waitRevision(rev)
	eventually(t, 20*time.Second, func() (bool, string) {
		r := pay(t, s, gw, support, 5)
		return r.Status == http.StatusCreated, fmt.Sprintf("observe release not in force: %d %s", r.Status, r.Body)
	})
	calls := s.Payments.Calls()
	if got := calls[len(calls)-1].Header.Get("X-Aegis-Shadow-Decision"); got != "deny" {
		t.Fatalf("observe release: tool saw shadow decision %q, want deny", got)
	}
	var rb struct {
		Revision int `json:"revision"`
	}
	if err := s.Role("acme", "publisher").JSON(ctx, "POST", "/v1/tenants/acme/releases/rollback", map[string]any{"to_revision": rev - 1}, &rb, http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	waitRevision(rb.Revision)
	eventually(t, 20*time.Second, func() (bool, string) {
		r := pay(t, s, gw, support, 5)
		return r.Status == http.StatusForbidden, fmt.Sprintf("rollback not in force: %d %s", r.Status, r.Body)
	})
}

// TestTokenKeyRotation: after the tenant's agent-token key is rotated,
// tokens signed by the new key are accepted by the running edge (it
// refreshes the keys from the control plane) and tokens signed by the old
// key keep working until they expire.
func TestTokenKeyRotation(t *testing.T) {
	s := startStack(t, stack.Tenant{Name: "acme", Policy: "payments.yaml"})
	ctx := context.Background()
	gw, err := s.StartEdge(ctx, "gw", "acme")
	if err != nil {
		t.Fatal(err)
	}
	old, err := s.AgentToken(ctx, "acme", "billing-agent")
	if err != nil {
		t.Fatal(err)
	}
	var rot struct {
		Kid string `json:"kid"`
	}
	if err := s.Role("acme", "admin").JSON(ctx, "POST", "/v1/tenants/acme/keys/rotate", map[string]any{"region": stack.Region}, &rot, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	fresh, err := s.AgentToken(ctx, "acme", "billing-agent")
	if err != nil {
		t.Fatal(err)
	}
	if fresh == old || rot.Kid == "" {
		t.Fatalf("rotation gave no new key: kid %q", rot.Kid)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		r := pay(t, s, gw, fresh, 10)
		return r.Status == http.StatusCreated, fmt.Sprintf("token signed by the rotated key still refused: %d %s", r.Status, r.Body)
	})
	if r := pay(t, s, gw, old, 10); r.Status != http.StatusCreated {
		t.Fatalf("token signed by the previous key refused before it expired: %d %s", r.Status, r.Body)
	}
}

// TestDatabaseOutage: the control plane's database goes away (connections
// to it refused and cut) while the edge keeps deciding; audit shipping
// fails and retries, and once the database is back every buffered event
// arrives exactly once.
func TestDatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dsn := dbtest.NewDSN(t, db.Postgres)
	name := dsn[strings.LastIndex(dsn, "/")+1:]
	if i := strings.IndexByte(name, '?'); i >= 0 {
		name = name[:i]
	}
	s := startStackOn(t, dsn, stack.Tenant{Name: "acme", Policy: "payments.yaml"})
	ctx := context.Background()
	gw, err := s.StartEdge(ctx, "gw", "acme")
	if err != nil {
		t.Fatal(err)
	}
	billing, err := s.AgentToken(ctx, "acme", "billing-agent")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", dbtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	setDB := func(allow bool) {
		t.Helper()
		if _, err := admin.ExecContext(ctx, fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS %t`, name, allow)); err != nil {
			t.Fatal(err)
		}
		if !allow {
			if _, err := admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name); err != nil {
				t.Fatal(err)
			}
		}
	}
	setDB(false)
	const calls = 12
	for i := range calls {
		if r := pay(t, s, gw, billing, float64(10+i)); r.Status != http.StatusCreated {
			t.Fatalf("call %d during the database outage: %d %s", i, r.Status, r.Body)
		}
	}
	if err := s.WaitMetric(ctx, gw, "aegis_edge_audit_ship_failures_total", 30*time.Second, func(v float64) bool { return v > 0 }); err != nil {
		t.Fatalf("shipping did not fail while the database was away: %v", err)
	}
	setDB(true)
	if err := s.WaitMetric(ctx, gw, "aegis_edge_wal_depth", 90*time.Second, func(v float64) bool { return v == 0 }); err != nil {
		t.Fatalf("buffered events not shipped after the database came back: %v", err)
	}
	var out struct {
		Events []struct {
			ID string `json:"id"`
		} `json:"events"`
	}
	if err := s.Role("acme", "auditor").JSON(ctx, "GET", "/v1/audit/events?tenant=acme&limit=1000", nil, &out); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range out.Events {
		if seen[e.ID] {
			t.Fatalf("event %s stored twice", e.ID)
		}
		seen[e.ID] = true
	}
	if len(out.Events) < calls {
		t.Fatalf("%d events stored, want at least %d", len(out.Events), calls)
	}
}

// TestBundleKeyRotation: the control plane switches to a new bundle signing
// key. A node that still trusts only the old key refuses the new release and
// keeps enforcing the last good one; once its operator deploys the new
// public key, it accepts the new release.
func TestBundleKeyRotation(t *testing.T) {
	s := startStack(t, stack.Tenant{Name: "acme", Policy: "payments.yaml"})
	ctx := context.Background()
	gw, err := s.StartEdge(ctx, "gw", "acme")
	if err != nil {
		t.Fatal(err)
	}
	support, err := s.AgentToken(ctx, "acme", "support-agent")
	if err != nil {
		t.Fatal(err)
	}
	// A new signing key for the control plane (what `aegis keys generate` writes).
	keyDir := t.TempDir()
	if out, err := exec.CommandContext(ctx, s.Bin.Aegis, "keys", "generate", "--out", keyDir).CombinedOutput(); err != nil {
		t.Fatalf("keys generate: %v\n%s", err, out)
	}
	if err := s.StopControlPlane(); err != nil {
		t.Fatal(err)
	}
	s.CPArgs = []string{"--bundle-signing-key", filepath.Join(keyDir, "aegis.key")}
	if err := s.StartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	// Revision 2 lets support-agent's call through (observe stage), so the
	// test can tell which release is in force.
	rev, err := s.Publish(ctx, "acme", "payments.yaml", "observe")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitMetric(ctx, gw, "aegis_edge_bundles_refused_total", 30*time.Second, func(v float64) bool { return v > 0 }); err != nil {
		t.Fatalf("a release signed by an untrusted key was not refused: %v", err)
	}
	if v, _, _ := s.Metric(ctx, gw, `aegis_edge_bundle_revision{tenant="acme"}`); int(v) != 1 {
		t.Fatalf("edge runs revision %v, want the last good one (1)", v)
	}
	if r := pay(t, s, gw, support, 5); r.Status != http.StatusForbidden {
		t.Fatalf("last good (enforcing) release not in force: %d %s", r.Status, r.Body)
	}
	if err := s.TrustBundleKey(ctx, gw); err != nil {
		t.Fatal(err)
	}
	if err := s.RestartEdge(ctx, gw); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitMetric(ctx, gw, `aegis_edge_bundle_revision{tenant="acme"}`, 30*time.Second, func(v float64) bool { return int(v) == rev }); err != nil {
		t.Fatalf("new release not accepted after the operator deployed the new key: %v", err)
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		r := pay(t, s, gw, support, 5)
		return r.Status == http.StatusCreated, fmt.Sprintf("observe release not in force after the key rotation: %d %s", r.Status, r.Body)
	})
}

// TestBudgetExhaustion: with a $1 daily budget and $0.05 per payment, the
// 21st payment of the day is denied for the budget, and never reaches the
// tool.
func TestBudgetExhaustion(t *testing.T) {
	s := startStack(t, stack.Tenant{Name: "acme", Policy: "payments.yaml"})
	ctx := context.Background()
	src, err := os.ReadFile(filepath.Join(s.Root, "policies", "examples", "payments.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lowered := strings.Replace(string(src), "budget: {usd_per_day: 20}", "budget: {usd_per_day: 1}", 1)
	if lowered == string(src) {
		t.Fatal("the example's budget line changed; update this test")
	}
	if _, err := s.PublishFiles(ctx, "acme", map[string]string{"payments.yaml": lowered}, "enforce"); err != nil {
		t.Fatal(err)
	}
	gw, err := s.StartEdge(ctx, "gw", "acme")
	if err != nil {
		t.Fatal(err)
	}
	billing, err := s.AgentToken(ctx, "acme", "billing-agent")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 21; i++ {
		r := pay(t, s, gw, billing, 1)
		switch {
		case i <= 20 && r.Status != http.StatusCreated:
			t.Fatalf("payment %d within budget: %d %s", i, r.Status, r.Body)
		case i == 21 && (r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "budget")):
			t.Fatalf("payment 21 over budget: %d %s", r.Status, r.Body)
		}
	}
	if n := s.Payments.Count("payments.create"); n != 20 {
		t.Fatalf("the tool received %d payments, want 20", n)
	}
}
