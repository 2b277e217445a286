package approvals

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/tokens"
	"github.com/aegis-mesh/aegis/controlplane/webhook"
	"github.com/aegis-mesh/aegis/internal/testrun"
	"github.com/aegis-mesh/aegis/token"
)

// TestLifecycle: create, batch, list, approve, deliver the override once,
// redeem it once.
func TestLifecycle(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		var first, again, other CreateResponse
		if st := e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "p1"), &first); st != http.StatusCreated {
			t.Fatalf("create: %d", st)
		}
		if first.Status != StatusPending || !first.ExpiresAt.Equal(e.clock.Now().Add(900*time.Second)) || first.Batched != 1 {
			t.Errorf("create answered %+v", first)
		}
		e.clock.Add(time.Second)
		if st := e.call(t, node1, "POST", "/v1/approvals", request("support-agent", "email.send", "p2"), &other); st != http.StatusCreated {
			t.Fatalf("create other: %d", st)
		}
		if st := e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "p1"), &again); st != http.StatusOK {
			t.Fatalf("related request: %d, want 200", st)
		}
		if again.ApprovalID != first.ApprovalID || again.Batched != 2 {
			t.Errorf("related request not batched: %+v", again)
		}

		var list struct{ Approvals []Approval }
		if st := e.call(t, lead, "GET", "/v1/approvals?tenant=acme&status=pending", nil, &list); st != 200 {
			t.Fatalf("list: %d", st)
		}
		if len(list.Approvals) != 2 || list.Approvals[0].ID != first.ApprovalID || list.Approvals[1].ID != other.ApprovalID {
			t.Errorf("list order: %+v (want the batched one first)", list.Approvals)
		}
		if a := list.Approvals[0]; a.Agent != "billing-agent" || a.RequestedBy != "node-1" || a.PolicyRevision != 3 || a.Reasons[0] == "" {
			t.Errorf("listed approval %+v", a)
		}

		agent := e.agentToken(t, "billing-agent")
		var view AgentView
		if st := e.call(t, agent, "GET", "/v1/approvals/"+first.ApprovalID, nil, &view); st != 200 || view.Status != StatusPending || view.OverrideToken != "" {
			t.Fatalf("agent poll while pending: %d %+v", st, view)
		}
		e.clock.Add(42 * time.Second)
		var decided Approval
		if st := e.call(t, lead, "POST", "/v1/approvals/"+first.ApprovalID+"/approve", DecideRequest{Note: "ok for this invoice"}, &decided); st != 200 {
			t.Fatalf("approve: %d", st)
		}
		if decided.Status != StatusApproved || decided.DecidedBy != "lead-1" || decided.Note != "ok for this invoice" {
			t.Errorf("approve answered %+v", decided)
		}
		if n := histogramCount(t, e.svc.m.decideTime, StatusApproved); n != 1 {
			t.Errorf("time-to-approve samples %d, want 1", n)
		}
		if st := e.call(t, lead, "POST", "/v1/approvals/"+first.ApprovalID+"/deny", nil, nil); st != http.StatusConflict {
			t.Errorf("deciding twice: %d, want 409", st)
		}

		// Another agent of the tenant does not see it; a node sees no token.
		if st := e.call(t, e.agentToken(t, "support-agent"), "GET", "/v1/approvals/"+first.ApprovalID, nil, nil); st != http.StatusNotFound {
			t.Errorf("other agent polls: %d, want 404", st)
		}
		var nodeView AgentView
		if st := e.call(t, node1, "GET", "/v1/approvals/"+first.ApprovalID, nil, &nodeView); st != 200 || nodeView.OverrideToken != "" || nodeView.Status != StatusApproved {
			t.Errorf("node view: %d %+v", st, nodeView)
		}

		if st := e.call(t, agent, "GET", "/v1/approvals/"+first.ApprovalID, nil, &view); st != 200 || view.OverrideToken == "" || !view.OverrideIssued {
			t.Fatalf("agent poll after approval: %d %+v", st, view)
		}
		tok := view.OverrideToken
		ks, err := e.tokens.KeySet(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		c, err := token.VerifyOverride(tok, ks, token.VerifyOptions{Now: e.clock.Now(), Issuer: issuer, Tenant: "acme"})
		if err != nil {
			t.Fatalf("override does not verify with the filter's verifier: %v", err)
		}
		if c.Subject != "billing-agent" || c.Tool != "payments.create" || c.ParamsDigest != digest("p1") || c.ApprovalID != first.ApprovalID {
			t.Errorf("override claims %+v", c)
		}
		var view2 AgentView
		if st := e.call(t, agent, "GET", "/v1/approvals/"+first.ApprovalID, nil, &view2); st != 200 || view2.OverrideToken != "" || !view2.OverrideIssued {
			t.Errorf("second poll handed the override out again: %+v", view2)
		}

		redeem := RedeemRequest{Token: tok, Tenant: "acme", Agent: "billing-agent", Tool: "payments.create", ParamsDigest: digest("p1")}
		var ok struct {
			OK         bool
			ApprovalID string `json:"approval_id"`
		}
		if st := e.call(t, node1, "POST", "/v1/overrides/redeem", redeem, &ok); st != 200 || !ok.OK || ok.ApprovalID != first.ApprovalID {
			t.Fatalf("redeem: %d %+v", st, ok)
		}
		var eb errBody
		if st := e.call(t, caller{sub: "node-2", tenant: "acme", roles: "node"}, "POST", "/v1/overrides/redeem", redeem, &eb); st != http.StatusConflict || eb.Error != "already_redeemed" {
			t.Errorf("second redeem on another node: %d %+v", st, eb)
		}

		// The batch is closed: the same request now opens a new approval.
		var fresh CreateResponse
		if st := e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "p1"), &fresh); st != http.StatusCreated || fresh.ApprovalID == first.ApprovalID {
			t.Errorf("request after the decision: %d %+v", st, fresh)
		}

		for _, m := range []struct {
			c    prometheus.Counter
			want float64
		}{
			{e.svc.m.volume.WithLabelValues("created"), 3},
			{e.svc.m.volume.WithLabelValues("batched"), 1},
			{e.svc.m.volume.WithLabelValues("approved"), 1},
			{e.svc.m.redemptions.WithLabelValues("ok"), 1},
			{e.svc.m.redemptions.WithLabelValues("already_redeemed"), 1},
		} {
			if got := counter(t, m.c); got != m.want {
				t.Errorf("metric %s = %v, want %v", m.c.Desc(), got, m.want)
			}
		}
	})
}

// TestCreateRules: only nodes create, for their own tenant, with a valid body.
func TestCreateRules(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.SQLite), nil)
	valid, _ := json.Marshal(request("billing-agent", "payments.create", "p"))
	otherTenant := request("billing-agent", "payments.create", "p")
	otherTenant.Tenant = "globex"
	ot, _ := json.Marshal(otherTenant)
	for _, tc := range []struct {
		name   string
		as     caller
		body   string
		status int
	}{
		{"node", node1, string(valid), 201},
		{"anonymous", anonymous, string(valid), 401},
		{"approver", lead, string(valid), 403},
		{"admin", admin, string(valid), 403},
		{"node without tenant", caller{sub: "n", roles: "node"}, string(valid), 403},
		{"other tenant in body", node1, string(ot), 403},
		{"bad digest", node1, `{"decision_id":"d","agent":"a","tool":"t","params_digest":"XYZ"}`, 400},
		{"unknown field", node1, `{"decision_id":"d","agent":"a","tool":"t","params_digest":"` + digest("x") + `","priority":9}`, 400},
		{"chain not starting with agent", node1, `{"decision_id":"d","agent":"a","chain":["b","a"],"tool":"t","params_digest":"` + digest("x") + `"}`, 400},
		{"not json", node1, `decision_id=d`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, body := e.do(t, tc.as, "POST", "/v1/approvals", []byte(tc.body)); st != tc.status {
				t.Errorf("status %d %s, want %d", st, body, tc.status)
			}
		})
	}
}

// TestApproverRules: only approvers decide, and only those the policy
// names (payments-leads, by group or by name); the agent's owner may not
// decide its request (the payments policy's owners, self-approval
// forbidden), including the owner of a principal in the chain.
func TestApproverRules(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		var a, b CreateResponse
		e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "q1"), &a)
		delegated := request("billing-agent", "payments.create", "q2")
		delegated.Chain = []string{"billing-agent", "support-agent"}
		e.call(t, node1, "POST", "/v1/approvals", delegated, &b)
		for _, tc := range []struct {
			name   string
			as     caller
			id     string
			status int
			code   string
		}{
			{"anonymous", anonymous, a.ApprovalID, 401, "unauthenticated"},
			{"admin without approver role", admin, a.ApprovalID, 403, "forbidden"},
			{"node", node1, a.ApprovalID, 403, "forbidden"},
			{"agent", e.agentToken(t, "billing-agent"), a.ApprovalID, 403, "forbidden"},
			{"approver of another tenant", caller{sub: "lead-1", tenant: "globex", roles: "approver"}, a.ApprovalID, 404, "not_found"},
			{"approver outside the named groups", caller{sub: "lead-2", tenant: "acme", roles: "approver", groups: "release-managers,ops"}, a.ApprovalID, 403, "not_an_approver"},
			{"approver without groups", caller{sub: "lead-3", tenant: "acme", roles: "approver"}, a.ApprovalID, 403, "not_an_approver"},
			{"group name as a subject is not a group", caller{sub: "lead-4", tenant: "acme", roles: "approver", groups: "Payments-Leads"}, a.ApprovalID, 403, "not_an_approver"},
			{"owner of the agent", caller{sub: "payments-team", tenant: "acme", roles: "approver", groups: "payments-leads"}, a.ApprovalID, 403, "self_approval"},
			{"owner of the principal", caller{sub: "cx-team", tenant: "acme", roles: "approver", groups: "payments-leads"}, b.ApprovalID, 403, "self_approval"},
			{"unknown id", lead, "ap_missing", 404, "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var eb errBody
				if st := e.call(t, tc.as, "POST", "/v1/approvals/"+tc.id+"/approve", nil, &eb); st != tc.status || eb.Error != tc.code {
					t.Errorf("status %d %+v, want %d %s", st, eb, tc.status, tc.code)
				}
			})
		}
		// The owner of billing-agent may decide support-agent's requests.
		var c CreateResponse
		e.call(t, node1, "POST", "/v1/approvals", request("support-agent", "email.send", "q3"), &c)
		if st := e.call(t, caller{sub: "payments-team", tenant: "acme", roles: "approver", groups: "payments-leads"}, "POST", "/v1/approvals/"+c.ApprovalID+"/deny", nil, nil); st != 200 {
			t.Errorf("owner of another agent denies: %d", st)
		}
		// A person the policy names directly decides without the group, and
		// an approval that names nobody may be decided by any approver.
		named := request("billing-agent", "payments.create", "q4")
		named.Approvers = []string{"lead-5"}
		var nd CreateResponse
		e.call(t, node1, "POST", "/v1/approvals", named, &nd)
		if st := e.call(t, caller{sub: "lead-5", tenant: "acme", roles: "approver"}, "POST", "/v1/approvals/"+nd.ApprovalID+"/approve", nil, nil); st != 200 {
			t.Errorf("approver named by subject: %d", st)
		}
		open := request("billing-agent", "payments.create", "q5")
		open.Approvers = nil
		var o CreateResponse
		e.call(t, node1, "POST", "/v1/approvals", open, &o)
		if st := e.call(t, caller{sub: "lead-3", tenant: "acme", roles: "approver"}, "POST", "/v1/approvals/"+o.ApprovalID+"/approve", nil, nil); st != 200 {
			t.Errorf("approval naming nobody, approver without groups: %d", st)
		}
		var view AgentView
		if st := e.call(t, e.agentToken(t, "support-agent"), "GET", "/v1/approvals/"+c.ApprovalID, nil, &view); st != 200 || view.Status != StatusDenied || view.OverrideToken != "" {
			t.Errorf("agent view of a denied approval: %d %+v", st, view)
		}
		if st := e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, nil); st != 200 {
			t.Errorf("independent approver: %d", st)
		}
	})
}

// approved creates and approves a request and returns the override the
// agent receives.
func (e *env) approved(t *testing.T, params string) (string, CreateResponse) {
	t.Helper()
	var a CreateResponse
	if st := e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", params), &a); st != 201 {
		t.Fatalf("create: %d", st)
	}
	if st := e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, nil); st != 200 {
		t.Fatalf("approve: %d", st)
	}
	var view AgentView
	if st := e.call(t, e.agentToken(t, "billing-agent"), "GET", "/v1/approvals/"+a.ApprovalID, nil, &view); st != 200 || view.OverrideToken == "" {
		t.Fatalf("deliver: %d %+v", st, view)
	}
	return view.OverrideToken, a
}

// TestRedeemRefusals: overrides bind to tenant, agent, tool and params
// digest, are spent once, expire, and must be the token delivered.
func TestRedeemRefusals(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		tok, a := e.approved(t, "r1")
		good := RedeemRequest{Token: tok, Tenant: "acme", Agent: "billing-agent", Tool: "payments.create", ParamsDigest: digest("r1")}
		mod := func(f func(*RedeemRequest)) RedeemRequest { r := good; f(&r); return r }
		// An override minted with the tenant's key but never delivered
		// (so its jti is not the approval's) is refused too.
		stray, _, err := e.tokens.MintOverride(context.Background(), token.OverrideClaims{Subject: "billing-agent", Tenant: "acme",
			Tool: "payments.create", ParamsDigest: digest("r1"), ApprovalID: a.ApprovalID, ExpiresAt: e.clock.Now().Add(time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		globexNode := caller{sub: "node-9", tenant: "globex", roles: "node"}
		for _, tc := range []struct {
			name   string
			as     caller
			req    RedeemRequest
			status int
			code   string
		}{
			{"wrong digest", node1, mod(func(r *RedeemRequest) { r.ParamsDigest = digest("r2") }), 403, "mismatch"},
			{"wrong agent", node1, mod(func(r *RedeemRequest) { r.Agent = "support-agent" }), 403, "mismatch"},
			{"wrong tool", node1, mod(func(r *RedeemRequest) { r.Tool = "email.send" }), 403, "mismatch"},
			{"other tenant in body", node1, mod(func(r *RedeemRequest) { r.Tenant = "globex" }), 403, "forbidden"},
			{"node of another tenant", globexNode, mod(func(r *RedeemRequest) { r.Tenant = "globex" }), 403, "invalid_token"},
			{"not a node", lead, good, 403, "forbidden"},
			{"garbage token", node1, mod(func(r *RedeemRequest) { r.Token = "a.b.c" }), 403, "invalid_token"},
			{"tampered token", node1, mod(func(r *RedeemRequest) { r.Token = tok[:len(tok)-6] + "AAAAAA" }), 403, "invalid_token"},
			{"undelivered token", node1, mod(func(r *RedeemRequest) { r.Token = stray }), 403, "mismatch"},
			{"first use", node1, good, 200, ""},
			{"reuse", node1, good, 409, "already_redeemed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var eb errBody
				if st := e.call(t, tc.as, "POST", "/v1/overrides/redeem", tc.req, &eb); st != tc.status || eb.Error != tc.code {
					t.Errorf("status %d %+v, want %d %q", st, eb, tc.status, tc.code)
				}
			})
		}

		expiring, _ := e.approved(t, "r3")
		e.clock.Add(DefaultOverrideTTL + 2*token.DefaultSkew)
		var eb errBody
		if st := e.call(t, node1, "POST", "/v1/overrides/redeem", RedeemRequest{Token: expiring, Tenant: "acme", Agent: "billing-agent",
			Tool: "payments.create", ParamsDigest: digest("r3")}, &eb); st != http.StatusGone || eb.Error != "expired" {
			t.Errorf("expired override: %d %+v", st, eb)
		}
	})
}

// TestExpiry: pending approvals expire (sweep and on read), cannot be
// decided afterwards, and stop absorbing related requests.
func TestExpiry(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		req := request("billing-agent", "payments.create", "e1")
		req.ExpiresIn = 60
		var a, b CreateResponse
		e.call(t, node1, "POST", "/v1/approvals", req, &a)
		other := request("support-agent", "email.send", "e2")
		other.ExpiresIn = 3600
		e.call(t, node1, "POST", "/v1/approvals", other, &b)
		e.clock.Add(61 * time.Second)

		var eb errBody
		if st := e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, &eb); st != http.StatusGone || eb.Error != "expired" {
			t.Errorf("approving an expired approval: %d %+v", st, eb)
		}
		if n, err := e.svc.Sweep(context.Background()); err != nil || n != 0 {
			t.Errorf("sweep after the read expired it: %d %v", n, err)
		}
		// A huge expires_in is capped at MaxExpiry, never wrapped around.
		huge := request("billing-agent", "payments.create", "e3")
		huge.ExpiresIn = 1 << 62
		var h CreateResponse
		if st := e.call(t, node1, "POST", "/v1/approvals", huge, &h); st != 201 || !h.ExpiresAt.Equal(e.clock.Now().Add(DefaultMaxExpiry)) {
			t.Errorf("huge expires_in: %d, expires %s", st, h.ExpiresAt)
		}
		var list struct{ Approvals []Approval }
		e.call(t, lead, "GET", "/v1/approvals?status=expired", nil, &list)
		if len(list.Approvals) != 1 || list.Approvals[0].ID != a.ApprovalID {
			t.Errorf("expired list: %+v", list.Approvals)
		}
		if got := counter(t, e.svc.m.expiries); got != 1 {
			t.Errorf("expiries %v, want 1", got)
		}
		var c CreateResponse
		if st := e.call(t, node1, "POST", "/v1/approvals", req, &c); st != 201 || c.ApprovalID == a.ApprovalID {
			t.Errorf("request after expiry joined the expired approval: %d %+v", st, c)
		}
		e.clock.Add(time.Hour)
		if n, err := e.svc.Sweep(context.Background()); err != nil || n != 2 {
			t.Errorf("sweep: %d %v, want 2", n, err)
		}
		var view AgentView
		if st := e.call(t, node1, "GET", "/v1/approvals/"+b.ApprovalID, nil, &view); st != 200 || view.Status != StatusExpired {
			t.Errorf("expired approval read: %d %+v", st, view)
		}
	})
}

// TestSweeperRuns: Run expires approvals in the background.
func TestSweeperRuns(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.SQLite), nil)
	e.svc.cfg.SweepEvery = time.Millisecond
	req := request("billing-agent", "payments.create", "s1")
	req.ExpiresIn = 1
	e.call(t, node1, "POST", "/v1/approvals", req, nil)
	e.clock.Add(2 * time.Second)
	defer testrun.Background(t, e.svc.Run)()
	guard := time.After(10 * time.Second)
	for counter(t, e.svc.m.expiries) != 1 {
		select {
		case <-guard:
			t.Fatal("the sweeper expired nothing")
		case <-time.After(time.Millisecond):
		}
	}
}

// TestConcurrentRedeem: 100 nodes redeem one override at once against
// Postgres; exactly one succeeds.
func TestConcurrentRedeem(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.Postgres), nil)
	tok, _ := e.approved(t, "c1")
	body := RedeemRequest{Token: tok, Tenant: "acme", Agent: "billing-agent", Tool: "payments.create", ParamsDigest: digest("c1")}
	const n = 100
	var wg sync.WaitGroup
	statuses := make([]int, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = e.call(t, caller{sub: fmt.Sprintf("node-%d", i), tenant: "acme", roles: "node"}, "POST", "/v1/overrides/redeem", body, nil)
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[200] != 1 || count[409] != n-1 {
		t.Errorf("statuses %v, want one 200 and %d 409", count, n-1)
	}
	var rows int
	if err := e.svc.cfg.DB.QueryRow(`SELECT count(*) FROM override_redemptions`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("redemption rows %d %v", rows, err)
	}
}

// TestConcurrentBatching: identical requests racing on Postgres make one
// approval that counts them all.
func TestConcurrentBatching(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.Postgres), nil)
	const n = 20
	var wg sync.WaitGroup
	replies := make([]CreateResponse, n)
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "b1"), &replies[i])
		}()
	}
	wg.Wait()
	created, max := 0, 0
	for i := range n {
		if statuses[i] == 201 {
			created++
		}
		if replies[i].ApprovalID != replies[0].ApprovalID {
			t.Errorf("two approvals for one request: %s and %s", replies[0].ApprovalID, replies[i].ApprovalID)
		}
		max = maxInt(max, replies[i].Batched)
	}
	if created != 1 || max != n {
		t.Errorf("created %d (want 1), batched up to %d (want %d)", created, max, n)
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// TestNotifications: new and decided approvals reach a webhook receiver
// on loopback, signed.
func TestNotifications(t *testing.T) {
	secret := []byte("a-secret-of-at-least-16")
	got := make(chan webhook.Event, 4)
	recv := newHTTPReceiver(t, secret, got)
	n, err := webhook.New(context.Background(), webhook.Config{Targets: []webhook.Target{{Name: "ops", URL: recv, Format: webhook.FormatJSON, Secret: secret}},
		BaseDelay: time.Millisecond, Workers: 1, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer testrun.Background(t, n.Run)()

	e := newEnv(t, dbtest.New(t, db.SQLite), n)
	var a CreateResponse
	e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "n1"), &a)
	e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "n1"), nil) // batched: no event
	e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, nil)
	want := []string{"approval.created", "approval.approved"}
	for i, typ := range want {
		select {
		case ev := <-got:
			if ev.Type != typ || ev.ApprovalID != a.ApprovalID || ev.Tenant != "acme" {
				t.Errorf("event %d: %+v, want %s", i, ev, typ)
			}
			if typ == "approval.approved" && (ev.DecidedBy != "lead-1" || ev.Batched != 2) {
				t.Errorf("decision event %+v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %s did not arrive", typ)
		}
	}
}

// TestDeliverOnce: agents polling an approved approval at the same time
// get the override exactly once between them.
func TestDeliverOnce(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.Postgres), nil)
	var a CreateResponse
	e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "d1"), &a)
	if st := e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, nil); st != 200 {
		t.Fatalf("approve: %d", st)
	}
	agent := e.agentToken(t, "billing-agent")
	const n = 20
	views := make([]AgentView, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st := e.call(t, agent, "GET", "/v1/approvals/"+a.ApprovalID, nil, &views[i]); st != 200 {
				t.Errorf("poll: %d", st)
			}
		}()
	}
	wg.Wait()
	tokens := 0
	for _, v := range views {
		if v.OverrideToken != "" {
			tokens++
		}
	}
	if tokens != 1 {
		t.Errorf("%d polls received an override token, want 1", tokens)
	}
}

// TestOverrideAcrossRotation: an override signed before a key rotation is
// still redeemed after it.
func TestOverrideAcrossRotation(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.SQLite), nil)
	tok, _ := e.approved(t, "k1")
	if _, err := e.tokens.Rotate(context.Background(), "acme", ""); err != nil {
		t.Fatal(err)
	}
	var ok struct{ OK bool }
	if st := e.call(t, node1, "POST", "/v1/overrides/redeem", RedeemRequest{Token: tok, Tenant: "acme", Agent: "billing-agent",
		Tool: "payments.create", ParamsDigest: digest("k1")}, &ok); st != 200 || !ok.OK {
		t.Errorf("redeem after rotation: %d", st)
	}
}

func TestConfigValidate(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"empty", Config{}},
		{"no owners", Config{DB: d, Overrides: nil, Registerer: prometheus.NewRegistry()}},
		{"negative", Config{DB: d, Owners: SourceOwners(nil), Registerer: prometheus.NewRegistry(), OverrideTTL: -1}},
	} {
		if _, err := New(context.Background(), tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestNodePollsForAgent: the filter's approval hold polls as the node with
// the held request's agent token forwarded, and receives the override in
// the agent's place, once; other agents' or tenants' tokens do not work.
func TestNodePollsForAgent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		var a CreateResponse
		e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "h1"), &a)
		billing := e.agentToken(t, "billing-agent").bearer
		support := e.agentToken(t, "support-agent").bearer
		var m tokens.MintResponse
		if st := e.call(t, caller{sub: "root", roles: "admin"}, "POST", "/v1/tokens/agent", tokens.MintRequest{Tenant: "globex", Agent: "billing-agent"}, &m); st != 201 {
			t.Fatalf("mint globex token: %d", st)
		}
		asNode := func(fwd string) caller { c := node1; c.fwd = fwd; return c }
		var view AgentView
		if st := e.call(t, asNode(billing), "GET", "/v1/approvals/"+a.ApprovalID, nil, &view); st != 200 || view.Status != StatusPending {
			t.Fatalf("hold poll while pending: %d %+v", st, view)
		}
		e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, nil)
		for _, tc := range []struct {
			name   string
			as     caller
			status int
		}{
			{"other agent's token", asNode(support), 404},
			{"other tenant's token", asNode(m.Token), 404},
			{"garbage", asNode("a.b.c"), 403},
			{"approver forwarding", caller{sub: "lead-1", tenant: "acme", roles: "approver", fwd: billing}, 200},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var v AgentView
				if st := e.call(t, tc.as, "GET", "/v1/approvals/"+a.ApprovalID, nil, &v); st != tc.status || v.OverrideToken != "" {
					t.Errorf("status %d override %q, want %d and no override", st, v.OverrideToken, tc.status)
				}
			})
		}
		if st := e.call(t, asNode(billing), "GET", "/v1/approvals/"+a.ApprovalID, nil, &view); st != 200 || view.Status != StatusApproved || view.OverrideToken == "" {
			t.Fatalf("hold poll after approval: %d %+v", st, view)
		}
		var again AgentView
		if st := e.call(t, e.agentToken(t, "billing-agent"), "GET", "/v1/approvals/"+a.ApprovalID, nil, &again); st != 200 || again.OverrideToken != "" || !again.OverrideIssued {
			t.Errorf("the agent got the override a second time: %+v", again)
		}
	})
}
