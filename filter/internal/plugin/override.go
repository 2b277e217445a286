package plugin

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/decide"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/filter/internal/audit"
	"github.com/aegis-mesh/aegis/filter/internal/reply"
	"github.com/aegis-mesh/aegis/token"
)

// Override handling: an agent whose call needed approval retries it with
// the one-time token the approval produced. The token only matters when
// the policy answers approval_needed; it is then verified, bound to this
// exact call (agent, tool, params digest), the policy is asked again with
// the verified claims in context.override (so it lifts the approval and
// nothing else), and the token is redeemed at the control plane, once
// across the fleet, before the call goes on.

// Control-plane endpoints for overrides and approvals.
const (
	HeaderOverride   = "x-aegis-override"
	RedeemPath       = "/v1/overrides/redeem"
	headerAgentToken = "x-aegis-agent-token"
	// maxRedeemed bounds the per-VM cache of spent override jtis.
	maxRedeemed = 4096
)

type redeemRequest struct {
	Token        string `json:"token"`
	Tenant       string `json:"tenant"`
	Agent        string `json:"agent"`
	Tool         string `json:"tool"`
	ParamsDigest string `json:"params_digest"`
}

// applyOverride is called for a decision of approval_needed when the
// request carries an override token.
func (h *httpContext) applyOverride(first decide.Outcome, now time.Time) types.Action {
	p := h.p
	oc, err := token.VerifyOverride(h.override, p.keys, token.VerifyOptions{
		Now: now, Skew: time.Duration(p.cfg.Token.SkewSeconds) * time.Second,
		Issuer: p.cfg.Token.Issuer, Tenant: h.id.Tenant,
	})
	if err != nil {
		code := reply.CodeOverrideInvalid
		if errors.Is(err, token.ErrExpired) {
			code = reply.CodeOverrideExpired
		}
		return h.overrideRefused(first, code, "override token: "+err.Error(), "", "")
	}
	if st := p.vm.states[h.id.Tenant]; st != nil && st.RevokedJTI(oc.ID) {
		return h.overrideRefused(first, reply.CodeOverrideInvalid, "override token: revoked", oc.ApprovalID, oc.ID)
	}
	if oc.Subject != h.id.Agent {
		return h.overrideRefused(first, reply.CodeOverrideMismatch, "override token is for agent "+strconv.Quote(oc.Subject), oc.ApprovalID, oc.ID)
	}
	needing := 0
	for _, c := range first.Calls {
		if c.Decision.Action == decide.ApprovalNeeded {
			needing++
		}
	}
	if needing != 1 {
		return h.overrideRefused(first, reply.CodeOverrideMismatch,
			"an override token lifts one call's approval; "+strconv.Itoa(needing)+" calls of this request need one", oc.ApprovalID, oc.ID)
	}
	tool, digest, err := callDigest(h.id.Tenant, h.id.Agent, approvalCall(first))
	if err != nil {
		return h.fail("the call's parameters could not be digested for the override")
	}
	switch {
	case tool != oc.Tool:
		return h.overrideRefused(first, reply.CodeOverrideMismatch, "override token is for tool "+strconv.Quote(oc.Tool), oc.ApprovalID, oc.ID)
	case digest != oc.ParamsDigest:
		return h.overrideRefused(first, reply.CodeOverrideMismatch, "override token was approved for other parameters", oc.ApprovalID, oc.ID)
	}
	if p.spent(oc.ID, now) {
		return h.overrideRefused(first, reply.CodeOverrideRedeemed, "override token was already used", oc.ApprovalID, oc.ID)
	}
	ictx := h.ictx
	ictx.Override = overrideValue(oc)
	start := time.Now()
	out, err := h.pol.decider.Decide(context.Background(), h.req, h.id, ictx)
	if err != nil {
		proxywasm.LogErrorf("aegis: deciding with an override: %v", err)
		return h.fail("the policy could not be evaluated")
	}
	elapsed := time.Since(start)
	switch out.Decision.Action {
	case decide.Deny:
		// Deny wins; the token stays unspent.
		return h.enforce(out, elapsed, now, nil)
	case decide.ApprovalNeeded:
		return h.overrideRefused(first, reply.CodeOverrideMismatch, "the policy does not let this override lift the approval", oc.ApprovalID, oc.ID)
	}
	if p.cfg.ControlPlane.Cluster == "" {
		// Single use across the fleet needs the control plane.
		return h.overrideRefused(first, reply.CodeControlPlaneUnavailable, "override tokens are redeemed at the control plane and this node has none", oc.ApprovalID, oc.ID)
	}
	rr := redeemRequest{Token: h.override, Tenant: h.id.Tenant, Agent: h.id.Agent, Tool: tool, ParamsDigest: digest}
	body := rr.appendJSON(nil)
	_, err = proxywasm.DispatchHttpCall(p.cfg.ControlPlane.Cluster, p.cpHeaders("POST", RedeemPath, true), body, nil, uint32(p.cfg.ControlPlane.TimeoutMs),
		func(int, int, int) {
			// Dispatched from a poll callback (approval hold) the SDK
			// credits the call to the plugin context: act on the stream.
			st := calloutStatus()
			if err := proxywasm.SetEffectiveContext(h.ctxID); err != nil {
				return // the stream is gone
			}
			switch st {
			case "200":
				p.remember(oc.ID, oc.ExpiresAt)
				h.resume(h.enforce(out, elapsed, now, oc))
			case "409":
				p.remember(oc.ID, oc.ExpiresAt)
				h.overrideRefused(first, reply.CodeOverrideRedeemed, "override token was already used", oc.ApprovalID, oc.ID)
			case "403":
				h.overrideRefused(first, reply.CodeOverrideMismatch, "the control plane says the override token does not match this call", oc.ApprovalID, oc.ID)
			case "410":
				h.overrideRefused(first, reply.CodeOverrideExpired, "the control plane says the override token has expired", oc.ApprovalID, oc.ID)
			default:
				proxywasm.LogErrorf("aegis: redeeming override %s: control plane answered %q", oc.ID, st)
				h.p.m.errors.Increment(1)
				h.overrideRefused(first, reply.CodeControlPlaneUnavailable, "the override could not be redeemed; the call is refused", oc.ApprovalID, oc.ID)
			}
		})
	if err != nil {
		proxywasm.LogErrorf("aegis: redeeming override %s: %v", oc.ID, err)
		h.p.m.errors.Increment(1)
		return h.overrideRefused(first, reply.CodeControlPlaneUnavailable, "the override could not be redeemed; the call is refused", oc.ApprovalID, oc.ID)
	}
	h.done = true
	return types.ActionPause
}

// resume lets a held request go on when a callback decided it may.
func (h *httpContext) resume(a types.Action) {
	if a != types.ActionContinue {
		return
	}
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		proxywasm.LogErrorf("aegis: resuming a held request: %v", err)
	}
}

// overrideRefused answers a call whose override could not be used. The
// call still needs its approval, so the event says approval_needed with
// why the override did not count.
func (h *httpContext) overrideRefused(first decide.Outcome, code, why, approvalID, jti string) types.Action {
	id := newDecisionID()
	reasons := append(append([]string(nil), first.Decision.Reasons...), why)
	h.p.m.count(decide.ApprovalNeeded)
	ev := h.baseEvent(id, first, decide.ApprovalNeeded, reasons)
	ev.ApprovalID, ev.OverrideJTI = approvalID, jti
	h.event = &ev
	if body, ok := h.mcpReply(first, decide.ApprovalNeeded, reasons, id, approvalID); ok {
		return h.localReply(200, body)
	}
	status := uint32(403)
	if code == reply.CodeControlPlaneUnavailable {
		status = 503
	}
	rd := reply.Decision{Error: code, DecisionID: id, Reasons: reasons, PolicyVersion: h.pol.version,
		ApprovalID: approvalID, Message: why}
	return h.localReply(status, rd.JSON())
}

// baseEvent is the audit event of a decision answered outside enforce.
func (h *httpContext) baseEvent(id string, out decide.Outcome, action decide.Action, reasons []string) audit.Event {
	ev := audit.Event{
		ID: id, Time: h.ictx.Time.UTC().Format(time.RFC3339Nano), Tenant: h.id.Tenant, Agent: h.id.Agent, Chain: h.id.Chain,
		Action: string(action), Reasons: reasons, RuleIDs: out.Decision.RuleIDs, InputDigest: h.p.inputDigest(out),
	}
	if h.pol != nil {
		ev.PolicyRevision = h.pol.manifest.Revision
	}
	if out.Decision.Tool != nil {
		ev.Tool = out.Decision.Tool.Name
	}
	return ev
}

// overrideValue is context.override: the verified claims.
func overrideValue(c *token.OverrideClaims) engine.Value {
	o := engine.NewObject(9)
	o.Set("iss", engine.String(c.Issuer))
	o.Set("sub", engine.String(c.Subject))
	o.Set("tenant", engine.String(c.Tenant))
	o.Set("tool", engine.String(c.Tool))
	o.Set("params_digest", engine.String(c.ParamsDigest))
	o.Set("approval_id", engine.String(c.ApprovalID))
	o.Set("jti", engine.String(c.ID))
	o.Set("iat", engine.Int(c.IssuedAt))
	o.Set("exp", engine.Int(c.ExpiresAt))
	return o
}

// spent reports whether this VM already redeemed jti (and forgets those
// past their expiry, which no verifier accepts any more).
func (p *pluginContext) spent(jti string, now time.Time) bool {
	exp, ok := p.redeemed[jti]
	return ok && exp+int64(p.cfg.Token.SkewSeconds) >= now.Unix()
}

func (p *pluginContext) remember(jti string, exp int64) {
	if len(p.redeemed) >= maxRedeemed {
		now := time.Now().Unix() - int64(p.cfg.Token.SkewSeconds)
		for k, e := range p.redeemed {
			if e < now {
				delete(p.redeemed, k)
			}
		}
		// Still full: forget one. The control plane refuses its second
		// use anyway; the cache only saves the round trip.
		for k := range p.redeemed {
			if len(p.redeemed) < maxRedeemed {
				break
			}
			delete(p.redeemed, k)
		}
	}
	p.redeemed[jti] = exp
}

// Approval hold (limits.approval_hold_ms > 0): instead of answering
// approval_needed at once, the request waits while the filter polls the
// approval on each tick; approved → its override token is applied as if
// the agent had sent it; denied, expired or out of time → the
// approval_needed answer.

type heldRequest struct {
	h          *httpContext
	out        decide.Outcome
	approvalID string
	reasons    []string
	decisionID string
	deadline   time.Time
	polling    bool
}

// hold parks the request; it is called from the approval callback.
func (h *httpContext) hold(out decide.Outcome, approvalID string, reasons []string, id string) {
	hr := &heldRequest{h: h, out: out, approvalID: approvalID, reasons: reasons, decisionID: id,
		deadline: time.Now().Add(time.Duration(h.p.cfg.Limits.ApprovalHoldMs) * time.Millisecond)}
	h.held = hr
	h.p.held[h.ctxID] = hr
}

// pollHeld runs on tick: one status request per held request at a time.
func (p *pluginContext) pollHeld(now time.Time) {
	for ctxID, hr := range p.held {
		if hr.polling {
			continue
		}
		if !now.Before(hr.deadline) {
			delete(p.held, ctxID)
			if err := proxywasm.SetEffectiveContext(ctxID); err != nil {
				continue // the stream is gone
			}
			hr.h.held = nil
			hr.h.refuse(hr.out, decide.ApprovalNeeded, 0, append(hr.reasons, "approval still pending after the hold time"), hr.decisionID, hr.approvalID)
			continue
		}
		headers := p.cpHeaders("GET", "/v1/approvals/"+hr.approvalID, false)
		headers = append(headers, [2]string{headerAgentToken, hr.h.tok})
		_, err := proxywasm.DispatchHttpCall(p.cfg.ControlPlane.Cluster, headers, nil, nil, uint32(p.cfg.ControlPlane.TimeoutMs),
			func(_, bodySize, _ int) {
				hr.polling = false
				if p.held[ctxID] != hr {
					return // answered or gone meanwhile
				}
				raw, _ := proxywasm.GetHttpCallResponseBody(0, min(bodySize, 16<<10))
				r, err := decodeApprovalStatus(raw)
				if calloutStatus() != "200" || err != nil {
					proxywasm.LogWarnf("aegis: polling approval %s: control plane answered %q", hr.approvalID, calloutStatus())
					return // try again on the next tick, until the deadline
				}
				var why string
				switch {
				case r.Status == "pending":
					return
				case r.Status == "approved" && r.OverrideToken != "":
				case r.Status == "approved":
					why = "approval granted without an override token"
				default:
					why = "approval " + r.Status
				}
				delete(p.held, ctxID)
				if err := proxywasm.SetEffectiveContext(ctxID); err != nil {
					return
				}
				h := hr.h
				h.held = nil
				if why != "" {
					h.refuse(hr.out, decide.ApprovalNeeded, 0, append(hr.reasons, why), hr.decisionID, hr.approvalID)
					return
				}
				h.override = r.OverrideToken
				h.resume(h.applyOverride(hr.out, time.Now()))
			})
		if err != nil {
			proxywasm.LogWarnf("aegis: polling approval %s: %v", hr.approvalID, err)
			continue
		}
		hr.polling = true
	}
}
