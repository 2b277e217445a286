package approvals

import (
	"net/http"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

// TestSharedGateway: a node enrolled in platform that also serves acme
// asks for, polls and redeems acme approvals; a node that does not serve
// acme, or a tenant the shared node does not serve, is refused.
func TestSharedGateway(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		gw := caller{sub: "gw-1", tenant: "platform", roles: "node", serves: "acme,platform"}
		platformNode := caller{sub: "node-p", tenant: "platform", roles: "node"}

		var a CreateResponse
		if st := e.call(t, gw, "POST", "/v1/approvals", request("billing-agent", "payments.create", "s1"), &a); st != http.StatusCreated {
			t.Fatalf("shared node creates an acme approval: %d", st)
		}
		unserved := request("billing-agent", "payments.create", "s2")
		unserved.Tenant = "globex"
		for _, tc := range []struct {
			name string
			as   caller
			req  CreateRequest
		}{
			{"unserved tenant", gw, unserved},
			{"ordinary node of another tenant", platformNode, request("billing-agent", "payments.create", "s3")},
		} {
			var eb errBody
			if st := e.call(t, tc.as, "POST", "/v1/approvals", tc.req, &eb); st != http.StatusForbidden || eb.Error != "forbidden" {
				t.Errorf("%s: %d %+v, want 403 forbidden", tc.name, st, eb)
			}
		}
		if st := e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, nil); st != 200 {
			t.Fatalf("approve: %d", st)
		}
		var view AgentView
		if st := e.call(t, gw, "GET", "/v1/approvals/"+a.ApprovalID, nil, &view); st != 200 || view.Status != StatusApproved || view.OverrideToken != "" {
			t.Fatalf("shared node polls: %d %+v", st, view)
		}
		if st := e.call(t, platformNode, "GET", "/v1/approvals/"+a.ApprovalID, nil, nil); st != http.StatusNotFound {
			t.Errorf("node not serving acme polls: %d, want 404", st)
		}
		// Polling in the agent's name hands the agent its override once.
		agent := e.agentToken(t, "billing-agent")
		fwd := gw
		fwd.fwd = agent.bearer
		if st := e.call(t, fwd, "GET", "/v1/approvals/"+a.ApprovalID, nil, &view); st != 200 || view.OverrideToken == "" {
			t.Fatalf("shared node polls for the agent: %d %+v", st, view)
		}
		fwdOther := platformNode
		fwdOther.fwd = agent.bearer
		if st := e.call(t, fwdOther, "GET", "/v1/approvals/"+a.ApprovalID, nil, nil); st != http.StatusNotFound {
			t.Errorf("node not serving acme forwards an acme agent token: %d, want 404", st)
		}

		redeem := RedeemRequest{Token: view.OverrideToken, Tenant: "acme", Agent: "billing-agent", Tool: "payments.create", ParamsDigest: digest("s1")}
		var eb errBody
		if st := e.call(t, platformNode, "POST", "/v1/overrides/redeem", redeem, &eb); st != http.StatusForbidden || eb.Error != "forbidden" {
			t.Errorf("node not serving acme redeems: %d %+v", st, eb)
		}
		other := redeem
		other.Tenant = "globex"
		if st := e.call(t, gw, "POST", "/v1/overrides/redeem", other, &eb); st != http.StatusForbidden || eb.Error != "forbidden" {
			t.Errorf("redeem for an unserved tenant: %d %+v", st, eb)
		}
		var ok struct {
			OK         bool
			ApprovalID string `json:"approval_id"`
		}
		if st := e.call(t, gw, "POST", "/v1/overrides/redeem", redeem, &ok); st != 200 || !ok.OK || ok.ApprovalID != a.ApprovalID {
			t.Fatalf("shared node redeems: %d %+v", st, ok)
		}
	})
}
