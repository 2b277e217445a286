// Command demo is `make demo`: a whole Aegis deployment on this machine —
// the control plane, an edge gateway hosting the filter, a payments API and
// an MCP server — and scripted agents going through every kind of
// decision, including the control plane going away and coming back. It
// prints a transcript and a summary, then stops everything it started.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aegis-mesh/aegis/e2e/internal/stack"
)

func main() {
	keep := flag.Bool("keep", false, "keep the working directory (logs, data) after the run")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: go run ./e2e/demo [--keep]\n\nRuns the Aegis demo: control plane, edge gateway, tools and scripted agents on loopback.")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "aegis-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	d := &demo{dir: dir, start: time.Now()}
	err = d.run(ctx)
	if d.s != nil {
		d.s.Close()
	}
	if *keep || err != nil {
		fmt.Printf("\nlogs and data kept in %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
}

type demo struct {
	dir   string
	start time.Time
	s     *stack.Stack
	step  int
	lat   []time.Duration // agent-observed round trips through the edge
}

func (d *demo) section(title string) {
	d.step++
	fmt.Printf("\n── %d. %s\n", d.step, title)
}

func (d *demo) say(format string, args ...any) {
	fmt.Printf("   "+format+"\n", args...)
}

// outcome prints one call's result in a line.
func (d *demo) outcome(who, what string, r *stack.Reply) map[string]any {
	d.lat = append(d.lat, r.Latency)
	m := r.JSON()
	verdict := fmt.Sprintf("%d", r.Status)
	if e, ok := m["error"].(string); ok {
		verdict += " " + e
	}
	fmt.Printf("   %-15s %-46s → %s\n", who, what, verdict)
	if rs, ok := m["reasons"].([]any); ok && len(rs) > 0 {
		fmt.Printf("   %15s reason: %v\n", "", rs[0])
	}
	return m
}

func (d *demo) run(ctx context.Context) error {
	fmt.Println("Aegis demo — runtime policy, identity and evidence for agent tool calls")
	opts := stack.Options{
		Dir: d.dir,
		Tenants: []stack.Tenant{
			{Name: "acme", Policy: "payments.yaml"},
			{Name: "platform", Policy: "mcp-devops.yaml"},
		},
		Logf: func(format string, args ...any) { fmt.Printf("   · "+format+"\n", args...) },
	}
	d.section("Start the control plane (embedded store), publish both tenants' signed policies")
	s, err := stack.Start(ctx, opts)
	if err != nil {
		return err
	}
	d.s = s
	d.section("Enroll and start one edge gateway shared by both tenants (the same filter .wasm Envoy runs)")
	gw, err := s.StartSharedEdge(ctx, "gateway", "acme", "platform")
	if err != nil {
		return err
	}
	d.say("edge %s serves acme and platform on %s; the agent token's tenant picks the policy", gw.NodeID, gw.Addr)
	acmeGW, platGW := gw, gw

	billing, err := s.AgentToken(ctx, "acme", "billing-agent")
	if err != nil {
		return err
	}
	support, err := s.AgentToken(ctx, "acme", "support-agent")
	if err != nil {
		return err
	}
	pay := func(amount float64, memo string) map[string]any {
		m := map[string]any{"amount": amount, "currency": "EUR", "beneficiary_iban": "DE89370400440532013000"}
		if memo != "" {
			m["memo"] = memo
		}
		return m
	}
	call := func(token string, body any, hdr http.Header) (*stack.Reply, error) {
		return s.Call(ctx, acmeGW, "POST", "payments.acme.internal", "/v1/payments", token, body, hdr)
	}

	d.section("Payments agents (tenant acme)")
	steps := []struct {
		who, what, token string
		body             map[string]any
	}{
		{"billing-agent", "pay €120.50", billing, pay(120.5, "")},
		{"billing-agent", "pay €60,000 (above the hard cap)", billing, pay(60000, "")},
		{"support-agent", "pay €10 (tool not granted)", support, pay(10, "")},
		{"(no token)", "pay €10", "", pay(10, "")},
	}
	for _, st := range steps {
		r, err := call(st.token, st.body, nil)
		if err != nil {
			return err
		}
		d.outcome(st.who, st.what, r)
	}
	r, err := call(billing, pay(10, "card 4111 1111 1111 1111, thanks"), nil)
	if err != nil {
		return err
	}
	d.outcome("billing-agent", "pay €10, memo carries a card number", r)
	calls := s.Payments.Calls()
	var got map[string]any
	_ = json.Unmarshal(calls[len(calls)-1].Body, &got)
	d.say("%15s the payments API received memo %q", "", got["memo"])

	d.section("Human approval and a one-time override")
	big := pay(7500, "")
	r, err = call(billing, big, nil)
	if err != nil {
		return err
	}
	m := d.outcome("billing-agent", "pay €7,500 (above the approval threshold)", r)
	id, _ := m["approval_id"].(string)
	if id == "" {
		return fmt.Errorf("no approval id in %s", r.Body)
	}
	// The policy names payments-leads as approvers: an approver outside
	// that group is refused, bob (whose API token carries it) decides.
	outsider, err := s.IssueAPIToken(ctx, "acme", "mallory@acme", []string{"approver"}, nil)
	if err != nil {
		return err
	}
	if err := s.Admin.With(outsider).JSON(ctx, "POST", "/v1/approvals/"+id+"/approve", nil, nil, http.StatusForbidden); err != nil {
		return fmt.Errorf("an approver outside payments-leads: %w", err)
	}
	d.say("%15s mallory (approver, not in payments-leads) → 403 not_an_approver", "")
	if err := s.Role("acme", "approver").JSON(ctx, "POST", "/v1/approvals/"+id+"/approve", nil, nil, http.StatusOK); err != nil {
		return err
	}
	d.say("%15s bob (approver, payments-leads) approved %s", "", id)
	var st struct {
		OverrideToken string `json:"override_token"`
	}
	if err := s.Admin.With(billing).JSON(ctx, "GET", "/v1/approvals/"+id, nil, &st, http.StatusOK); err != nil {
		return err
	}
	d.say("%15s the agent collected its one-time override token", "")
	ov := http.Header{"X-Aegis-Override": {st.OverrideToken}}
	for _, what := range []string{"retry €7,500 with the override", "replay the same override"} {
		if r, err = call(billing, big, ov); err != nil {
			return err
		}
		d.outcome("billing-agent", what, r)
	}

	d.section("MCP agents (tenant platform, official MCP Go SDK over streamable HTTP)")
	if err := d.mcp(ctx, platGW); err != nil {
		return err
	}

	d.section("Shadow mode: acme publishes a release in observe stage, then rolls back")
	rev, err := s.Publish(ctx, "acme", "payments.yaml", "observe")
	if err != nil {
		return err
	}
	if err := d.waitRevision(ctx, acmeGW, "acme", rev); err != nil {
		return err
	}
	support2, _ := s.AgentToken(ctx, "acme", "support-agent")
	if r, err = call(support2, pay(5, ""), nil); err != nil {
		return err
	}
	d.outcome("support-agent", "pay €5 (would be denied)", r)
	seen := s.Payments.Calls()
	d.say("%15s the call went through; the tool saw x-aegis-shadow-decision: %q", "", seen[len(seen)-1].Header.Get("X-Aegis-Shadow-Decision"))
	var rb struct {
		Revision int `json:"revision"`
	}
	if err := s.Role("acme", "publisher").JSON(ctx, "POST", "/v1/tenants/acme/releases/rollback", map[string]any{"to_revision": rev - 1}, &rb, http.StatusCreated); err != nil {
		return err
	}
	d.say("carol rolled back to revision %d (a signed rollback release)", rb.Revision)
	if err := d.waitRevision(ctx, acmeGW, "acme", rb.Revision); err != nil {
		return err
	}
	if r, err = call(support2, pay(5, ""), nil); err != nil {
		return err
	}
	d.outcome("support-agent", "pay €5 (enforced again)", r)

	d.section("The control plane goes away; the edge keeps enforcing and buffering evidence")
	if err := s.StopControlPlane(); err != nil {
		return err
	}
	d.say("control plane stopped")
	for _, c := range []struct {
		what string
		body map[string]any
	}{{"pay €60,000 while offline", pay(60000, "")}, {"pay €7,500 while offline (needs the control plane)", pay(7500, "")}} {
		if r, err = call(billing, c.body, nil); err != nil {
			return err
		}
		d.outcome("billing-agent", c.what, r)
	}
	r, err = s.Call(ctx, acmeGW, "GET", "billing.acme.internal", "/v1/invoices?limit=10", billing, nil, nil)
	if err != nil {
		return err
	}
	d.outcome("billing-agent", "list invoices while offline", r)
	if err := s.StartControlPlane(ctx); err != nil {
		return err
	}
	d.say("control plane restarted; the edge ships what it buffered")

	d.section("Budget: acme lowers billing-agent's budget to $1 a day; each payment costs $0.05")
	src, err := os.ReadFile(filepath.Join(s.Root, "policies", "examples", "payments.yaml"))
	if err != nil {
		return err
	}
	lowered := strings.Replace(string(src), "budget: {usd_per_day: 20}", "budget: {usd_per_day: 1}", 1)
	rev, err = s.PublishFiles(ctx, "acme", map[string]string{"payments.yaml": lowered}, "enforce")
	if err != nil {
		return err
	}
	if err := d.waitRevision(ctx, acmeGW, "acme", rev); err != nil {
		return err
	}
	n := 0
	for ; n < 1000; n++ {
		r, err := call(billing, pay(1, ""), nil)
		if err != nil {
			return err
		}
		d.lat = append(d.lat, r.Latency)
		if r.Status != http.StatusCreated {
			d.say("%d more payments went through; then:", n)
			d.outcome("billing-agent", "pay €1", r)
			break
		}
	}

	return d.summary(ctx)
}

// waitRevision waits until the edge runs the tenant's revision (and
// gives the filter's hot swap a moment to finish).
func (d *demo) waitRevision(ctx context.Context, e *stack.Edge, tenant string, rev int) error {
	err := d.s.WaitMetric(ctx, e, fmt.Sprintf("aegis_edge_bundle_revision{tenant=%q}", tenant), 30*time.Second,
		func(v float64) bool { return int(v) == rev })
	time.Sleep(1500 * time.Millisecond)
	return err
}

func (d *demo) mcp(ctx context.Context, gw *stack.Edge) error {
	s := d.s
	deploy, err := s.AgentToken(ctx, "platform", "deploy-bot")
	if err != nil {
		return err
	}
	oncall, err := s.AgentToken(ctx, "platform", "oncall-assistant")
	if err != nil {
		return err
	}
	for _, a := range []struct{ name, token string }{{"oncall-assistant", oncall}, {"deploy-bot", deploy}} {
		sess, err := s.MCPSession(ctx, gw, a.token, nil)
		if err != nil {
			return fmt.Errorf("%s: MCP connect through the gateway: %w", a.name, err)
		}
		list, err := sess.ListTools(ctx, nil)
		if err != nil {
			sess.Close()
			return err
		}
		var names []string
		for _, t := range list.Tools {
			names = append(names, t.Name)
		}
		sort.Strings(names)
		fmt.Printf("   %-15s %-46s → %s\n", a.name, "tools/list (server offers 4 tools)", strings.Join(names, ", "))
		calls := []struct {
			what string
			p    mcp.CallToolParams
		}{
			{"get_pods staging", mcp.CallToolParams{Name: "get_pods", Arguments: map[string]any{"namespace": "staging"}}},
			{"read_secret (granted to nobody)", mcp.CallToolParams{Name: "read_secret", Arguments: map[string]any{"path": "db/password"}}},
		}
		if a.name == "deploy-bot" {
			calls = append(calls, struct {
				what string
				p    mcp.CallToolParams
			}{"deploy to production (needs approval)", mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{
				"namespace": "production", "image": "registry.platform.internal/api@sha256:" + strings.Repeat("a", 64)}}})
		}
		for _, c := range calls {
			start := time.Now()
			res, err := sess.CallTool(ctx, &c.p)
			d.lat = append(d.lat, time.Since(start))
			verdict := "ok"
			switch {
			case err != nil:
				verdict = "error: " + err.Error()
			case res.IsError:
				verdict = "refused"
				if len(res.Content) > 0 {
					if t, ok := res.Content[0].(*mcp.TextContent); ok {
						verdict += ": " + firstLine(t.Text)
					}
				}
			default:
				if len(res.Content) > 0 {
					if t, ok := res.Content[0].(*mcp.TextContent); ok {
						verdict = "ok: " + firstLine(t.Text)
					}
				}
			}
			fmt.Printf("   %-15s %-46s → %s\n", a.name, c.what, verdict)
		}
		sess.Close()
	}
	d.say("%15s the MCP server received %d calls: only the allowed ones", "", len(s.MCP.Calls()))
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 90 {
		s = s[:90] + "…"
	}
	return s
}

type event struct {
	Action     string `json:"action"`
	DecisionNS int64  `json:"decision_ns"`
	Tenant     string `json:"tenant"`
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1))]
}

func (d *demo) summary(ctx context.Context) error {
	s := d.s
	d.section("Evidence: audit shipped, exported as a signed pack, verified offline")
	// The filter hands its queue to the edge's WAL every 100 ms; then the
	// WAL ships. Give the last calls' events time to reach the WAL first.
	time.Sleep(time.Second)
	for _, e := range s.Edges {
		// Everything the edges buffered while the control plane was away
		// has been acknowledged once their WAL depth is back to zero.
		if err := s.WaitMetric(ctx, e, "aegis_edge_wal_depth", 60*time.Second, func(v float64) bool { return v == 0 }); err != nil {
			return err
		}
	}
	var all []event
	deadline := time.Now().Add(60 * time.Second)
	var exportErr error
	for _, tenant := range []string{"acme", "platform"} {
		var out struct {
			Events []event `json:"events"`
		}
		for {
			err := s.Role(tenant, "auditor").JSON(ctx, "GET", "/v1/audit/events?tenant="+tenant+"&limit=1000", nil, &out)
			if err == nil && len(out.Events) > 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("audit events of %s not shipped: %v", tenant, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
		all = append(all, out.Events...)
		pack := filepath.Join(d.dir, tenant+"-evidence.tar.gz")
		tokFile := filepath.Join(d.dir, tenant+"-auditor.token")
		if err := os.WriteFile(tokFile, []byte(s.Role(tenant, "auditor").Token), 0o600); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, s.Bin.Aegis, "audit", "export", "--server", "https://"+s.CPAddr, "--token-file", tokFile,
			"--tenant", tenant, "--from", d.start.Add(-time.Minute).UTC().Format(time.RFC3339), "-o", pack)
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(d.dir, "cp", "ca.pem"))
		if msg, err := cmd.CombinedOutput(); err != nil {
			exportErr = errors.Join(exportErr, fmt.Errorf("export %s: %v: %s", tenant, err, msg))
			continue
		}
		report, err := exec.CommandContext(ctx, s.Bin.Aegis, "audit", "verify", pack).CombinedOutput()
		if err != nil {
			exportErr = errors.Join(exportErr, fmt.Errorf("verify %s: %v: %s", tenant, err, report))
			continue
		}
		d.say("%-9s %d events shipped; evidence pack verified offline: %s", tenant, len(out.Events), firstLine(string(report)))
	}
	if exportErr != nil {
		return exportErr
	}

	byAction := map[string]int{}
	var dec []time.Duration
	for _, e := range all {
		byAction[e.Action]++
		dec = append(dec, time.Duration(e.DecisionNS))
	}
	fmt.Println("\nSummary")
	fmt.Println("   decisions by action   ", fmtCounts(byAction))
	fmt.Printf("   filter decision time   p50 %v  p99 %v  (in the edge's wasm VM, from the audit events)\n", percentile(dec, 0.5).Round(time.Microsecond), percentile(dec, 0.99).Round(time.Microsecond))
	fmt.Printf("   agent round trip       p50 %v  p99 %v  (through the edge, %d calls)\n", percentile(d.lat, 0.5).Round(time.Microsecond), percentile(d.lat, 0.99).Round(time.Microsecond), len(d.lat))
	fmt.Printf("   audit events           %d shipped to the control plane, chains verified in the signed evidence packs\n", len(all))
	fmt.Printf("   took                   %v\n", time.Since(d.start).Round(time.Second))
	return nil
}

func fmtCounts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, " · ")
}
