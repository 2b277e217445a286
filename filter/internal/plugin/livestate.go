package plugin

import (
	"fmt"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/decide"
	"github.com/aegis-mesh/aegis/filter/internal/audit"
	"github.com/aegis-mesh/aegis/filter/internal/reply"
	"github.com/aegis-mesh/aegis/filter/internal/trust"
	"github.com/aegis-mesh/aegis/state"
	"github.com/aegis-mesh/aegis/token"
)

// Live state (API.md): per tenant, the signed document in force. It is
// kept on the VM so that a reconfiguration does not forget a revocation.
// Once in force a document is only replaced by one with a seq at least
// as high; when it expires, revocations and the kill switch stay (they
// never loosen anything) while its budgets stop counting.

// StatePath is the control-plane endpoint a tenant's live state is
// fetched from; %s is the tenant.
const StatePath = "/v1/tenants/%s/state"

// applyState verifies a signed state envelope for tenant and puts it in
// force when it is not older than the current one.
func (p *pluginContext) applyState(tenant string, data []byte) error {
	if p.vm.root.StateKey == nil {
		return errs.Errorf("no %s in the trust root", trust.EnvStateKey)
	}
	doc, err := state.Open(data, p.vm.root.StateKey)
	if err != nil {
		return err
	}
	if err := state.Check(p.vm.states[tenant], doc, tenant); err != nil {
		return err
	}
	p.vm.states[tenant] = doc
	g := proxywasm.DefineGaugeMetric("aegis.state_seq.tenant." + tenant)
	g.Add(doc.Seq - g.Value())
	return nil
}

func (p *pluginContext) stateRejected(tenant, from string, err error) {
	p.m.stateRejected.Increment(1)
	if cur := p.vm.states[tenant]; cur != nil {
		proxywasm.LogErrorf("aegis: tenant %s: live state from %s rejected, keeping seq %d: %v", tenant, from, cur.Seq, err)
	} else {
		proxywasm.LogErrorf("aegis: tenant %s: live state from %s rejected: %v", tenant, from, err)
	}
}

// checkState refuses a call the tenant's live state forbids: the kill
// switch, a revoked party anywhere in the delegation chain, a revoked
// token. It returns true when it answered the request.
func (h *httpContext) checkState(c *token.Claims, now time.Time) (types.Action, bool) {
	st := h.p.vm.states[c.Tenant]
	if st == nil {
		return 0, false
	}
	h.ictx.StateSeq = st.Seq
	var status uint32
	var code, why string
	switch who, revoked := st.Revoked(h.id.Chain); {
	case st.KillSwitch:
		status, code, why = 403, reply.CodeKillSwitch, "kill_switch: every call of tenant "+c.Tenant+" is refused"
	case revoked:
		status, code, why = 403, reply.CodeRevoked, "revoked: agent "+who+" is revoked"
	case st.RevokedJTI(c.ID):
		status, code, why = 401, reply.CodeUnauthorized, "revoked: this agent token is revoked"
	default:
		return 0, false
	}
	h.p.m.stateRefused.Increment(1)
	id := newDecisionID()
	h.event = &audit.Event{ID: id, Time: now.UTC().Format(time.RFC3339Nano), Tenant: c.Tenant, Agent: h.id.Agent,
		Chain: h.id.Chain, Action: string(decide.Deny), Reasons: []string{why}, RuleIDs: []string{"state." + code}}
	rd := reply.Decision{Error: code, DecisionID: id, Reasons: []string{why}, Message: why}
	return h.localReply(status, rd.JSON()), true
}

// fleetBudget refuses a call whose cost exceeds the fleet's remaining
// budget for the agent, as the live state in force says; ok is false with
// the reason. A stale (expired) state or one without a budget for the
// agent leaves the node's own spend counters, which the policy sees in
// context.budget, as the only check.
func (p *pluginContext) fleetBudget(tenant, agent string, cost int64, now time.Time) (string, bool) {
	st := p.vm.states[tenant]
	if st == nil || st.Expired(now) {
		return "", true
	}
	rem, ok := st.RemainingMicroUSD(agent)
	if !ok || cost <= rem {
		return "", true
	}
	return fmt.Sprintf("budget: %s has %d micro-USD left today across the fleet (state seq %d) and this call costs %d", agent, rem, st.Seq, cost), false
}

// fetchStates asks the control plane for every tenant's live state; one
// request per tenant in flight, answered 304 when nothing changed.
func (p *pluginContext) fetchStates() {
	for _, tenant := range p.cfg.Tenants() {
		if p.fetching["state/"+tenant] {
			continue
		}
		tenant := tenant
		p.fetch("state/"+tenant, fmt.Sprintf(StatePath, tenant), func(body []byte) error {
			err := p.applyState(tenant, body)
			if err != nil {
				p.stateRejected(tenant, "the control plane", err)
			}
			return err
		})
	}
}

// fetch GETs path from the control plane with the ETag of the last good
// answer for key; deliver gets a 200 body. The ETag is remembered only
// when deliver accepted the body, so a rejected one is fetched again.
func (p *pluginContext) fetch(key, path string, deliver func([]byte) error) {
	headers := p.cpHeaders("GET", path, false)
	if etag := p.etags[key]; etag != "" {
		headers = append(headers, [2]string{"if-none-match", etag})
	}
	_, err := proxywasm.DispatchHttpCall(p.cfg.ControlPlane.Cluster, headers, nil, nil, uint32(p.cfg.ControlPlane.TimeoutMs),
		func(_, bodySize, _ int) {
			p.fetching[key] = false
			hs, _ := proxywasm.GetHttpCallResponseHeaders()
			var status, etag string
			for _, h := range hs {
				switch h[0] {
				case ":status":
					status = h[1]
				case "etag":
					etag = h[1]
				}
			}
			switch status {
			case "304":
				return
			case "200":
			default:
				p.m.fetchErrors.Increment(1)
				proxywasm.LogWarnf("aegis: fetching %s: control plane answered %q; keeping what is in force", path, status)
				return
			}
			if bodySize > maxFetchBytes {
				p.m.fetchErrors.Increment(1)
				proxywasm.LogErrorf("aegis: fetching %s: %d bytes, limit %d", path, bodySize, maxFetchBytes)
				return
			}
			body, err := proxywasm.GetHttpCallResponseBody(0, bodySize)
			if err != nil {
				p.m.fetchErrors.Increment(1)
				proxywasm.LogErrorf("aegis: fetching %s: reading the body: %v", path, err)
				return
			}
			if deliver(body) == nil && len(etag) <= 256 {
				p.etags[key] = etag
			}
		})
	if err != nil {
		p.m.fetchErrors.Increment(1)
		proxywasm.LogWarnf("aegis: fetching %s: %v", path, err)
		return
	}
	p.fetching[key] = true
}

// maxFetchBytes bounds what a fetch reads: the largest runtime bundle.
const maxFetchBytes = 8 << 20

// Control-plane endpoints for fetched bundles and keys.
const (
	BundlePath = "/v1/tenants/%s/bundle"
	JWKSPath   = "/.well-known/jwks.json"
)

// fetchBundles asks for the runtime bundle of every fetched tenant; a
// fetched bundle goes through the same checks as an inline one.
func (p *pluginContext) fetchBundles(now time.Time) {
	for _, tenant := range p.cfg.Fetch.Tenants {
		if p.fetching["bundle/"+tenant] {
			continue
		}
		tenant := tenant
		p.fetch("bundle/"+tenant, fmt.Sprintf(BundlePath, tenant), func(body []byte) error {
			return p.installBundle(tenant, body, now)
		})
	}
}

// installBundle verifies and loads a tenant's bundle; a rejected one is
// logged and counted, and the last good one stays in force.
func (p *pluginContext) installBundle(tenant string, data []byte, now time.Time) error {
	pol, err := loadPolicy(data, tenant, p.vm.root, p.vm.good[tenant], now)
	if err != nil {
		p.m.bundleRejected.Increment(1)
		if prev := p.vm.good[tenant]; prev != nil {
			proxywasm.LogErrorf("aegis: tenant %s: bundle rejected, keeping %s: %v", tenant, prev.version, err)
		} else {
			proxywasm.LogErrorf("aegis: tenant %s: bundle rejected, no_bundle applies: %v", tenant, err)
		}
		return err
	}
	if prev := p.vm.good[tenant]; prev != pol {
		proxywasm.LogInfof("aegis: tenant %s: loaded %s", tenant, pol.version)
	}
	p.vm.good[tenant] = pol
	p.policies[tenant] = pol
	g := proxywasm.DefineGaugeMetric("aegis.bundle_revision.tenant." + tenant)
	g.Add(pol.manifest.Revision - g.Value())
	return nil
}

// fetchJWKS refreshes the token keys. A JWKS that does not parse leaves
// the current keys in force.
func (p *pluginContext) fetchJWKS() {
	if p.fetching["jwks"] {
		return
	}
	p.fetch("jwks", JWKSPath, func(body []byte) error {
		ks, err := token.ParseJWKS(body)
		if err != nil {
			p.m.fetchErrors.Increment(1)
			proxywasm.LogErrorf("aegis: fetched JWKS rejected, keeping the current keys: %v", err)
			return err
		}
		p.setKeys(ks)
		return nil
	})
}
