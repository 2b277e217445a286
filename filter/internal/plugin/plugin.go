// Package plugin holds the filter's proxy-wasm contexts (VM → plugin →
// HTTP stream, see the SDK's types package) and turns host callbacks into
// decisions: it is the only package of the filter that makes host calls.
//
// Per request: the agent token is verified (401 when it is missing or
// invalid), the token's tenant picks the policy, the token header and every
// inbound x-aegis-* header are stripped, the body is buffered when there is
// one (bounded by limits.max_body_bytes), and package decide evaluates the
// policy in-process. The decision is enforced here: allow continues with
// x-aegis-decision-id, sanitize forwards the rewritten body, deny and
// approval_needed answer locally (as JSON-RPC results on MCP endpoints).
// Rate limits and spend are kept in shared data with compare-and-swap so
// that all worker VMs of a node agree.
package plugin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/decide"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/filter/internal/audit"
	"github.com/aegis-mesh/aegis/filter/internal/config"
	"github.com/aegis-mesh/aegis/filter/internal/mcplist"
	"github.com/aegis-mesh/aegis/filter/internal/quota"
	"github.com/aegis-mesh/aegis/filter/internal/reply"
	"github.com/aegis-mesh/aegis/filter/internal/trust"
	"github.com/aegis-mesh/aegis/input"
	"github.com/aegis-mesh/aegis/jcs"
	"github.com/aegis-mesh/aegis/state"
	"github.com/aegis-mesh/aegis/token"
)

// NoBundleBody is the local reply body sent when the tenant has no good
// bundle and the no_bundle setting does not let the method through.
const NoBundleBody = `{"error":"no_bundle","message":"no policy bundle is loaded; the request is denied"}`

// Headers the filter sets on forwarded requests.
const (
	HeaderDecisionID     = "x-aegis-decision-id"
	HeaderShadowDecision = "x-aegis-shadow-decision"
	headerPrefix         = "x-aegis-"
)

// PropertyDecision is the filter-state key the decision summary is written
// to, so that Envoy access logs can carry it.
const PropertyDecision = "aegis.decision"

// AuditPath is the control-plane endpoint audit batches are posted to.
const AuditPath = "/v1/audit/batches"

// runtimeLimits bound what a runtime bundle (plan + data + manifest) may
// take: much less than an archive bundle with its OPA wasm module.
var runtimeLimits = bundle.Limits{MaxArchiveBytes: 8 << 20, MaxTotalBytes: 32 << 20, MaxFileBytes: 16 << 20, MaxEntries: 64}

// NewVMContext returns the filter's root context.
func NewVMContext() types.VMContext {
	return &vmContext{good: map[string]*policy{}, states: map[string]*state.Document{}}
}

type vmContext struct {
	types.DefaultVMContext
	root trust.Root
	// good keeps the last good policy per tenant across plugin
	// reconfigurations of this VM: a rejected bundle in a new
	// configuration leaves the previous one in force.
	good map[string]*policy
	// states is each tenant's live state in force (see livestate.go).
	states map[string]*state.Document
	// chain is this VM's audit chain; it outlives plugin reconfigurations
	// so that seq keeps running.
	chain *audit.Chain
}

var _ types.VMContext = (*vmContext)(nil)

// OnVMStart implements types.VMContext. The trust root is read here: from
// the VM's environment (vm_config.environment_variables), or, for a
// variable the environment does not set, from the VM configuration
// (vm_config.configuration, a JSON object with the same variable names).
// Both belong to the operator's deployment, not to the plugin
// configuration.
func (v *vmContext) OnVMStart(int) types.OnVMStartStatus {
	vmConf, err := proxywasm.GetVMConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("aegis: reading the VM configuration: %v", err)
		return false
	}
	fromConf := map[string]string{}
	if len(strings.TrimSpace(string(vmConf))) > 0 {
		raw, err := decodeVMConfig(vmConf)
		if err != nil {
			proxywasm.LogCriticalf("aegis: VM configuration: %v", err)
			return false
		}
		for k, val := range map[string]string{trust.EnvBundleKey: raw.Bundle, trust.EnvStateKey: raw.State, trust.EnvNodeKey: raw.Node, trust.EnvNodeToken: raw.Token} {
			if val != "" {
				fromConf[k] = val
			}
		}
	}
	root, err := trust.Load(func(name string) (string, bool) {
		if val, ok := syscall.Getenv(name); ok {
			return val, true
		}
		val, ok := fromConf[name]
		return val, ok
	})
	if err != nil {
		proxywasm.LogCriticalf("aegis: trust root: %v", err)
		return false
	}
	if root.BundleKey == nil {
		proxywasm.LogWarnf("aegis: %s is not set: no bundle can be verified, no_bundle applies to every tenant", trust.EnvBundleKey)
	}
	v.root = root
	tuneGC()
	return true
}

// NewPluginContext implements types.VMContext.
func (v *vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{vm: v}
}

// policy is one tenant's loaded bundle.
type policy struct {
	decider  *decide.Decider
	eval     *engine.Policy
	manifest *bundle.Manifest
	version  string // name@revision, reported to clients
}

type pluginContext struct {
	types.DefaultPluginContext
	vm       *vmContext
	cfg      config.Config
	verifier *token.Verifier
	keys     *token.KeySet // the tenant token keys, for override tokens
	policies map[string]*policy
	m        metrics
	started  bool
	inFlight bool // an audit batch is on its way to the control plane
	// draining is set once the host retires the plugin (OnPluginDone):
	// the queue is shipped until drainUntil, then PluginDone is called
	// once (doneSent).
	draining, doneSent bool
	drainUntil         time.Time
	// ids caches the identity built from each accepted token: agents send
	// the same token on every call, and building the claims document is
	// the costliest part of identity after the (cached) signature check.
	// Entries are used only after the Verifier accepted the token again.
	ids map[string]input.Identity
	// digestBuf is reused by inputDigest, stateBuf by setState.
	digestBuf, stateBuf, batchBuf []byte
	// redeemed maps the override jtis this VM redeemed to their expiry: a
	// second use is refused without asking the control plane.
	redeemed map[string]int64
	// held are the requests waiting for an approval (approval hold).
	held map[uint32]*heldRequest
	// etags and fetching track control-plane fetches by key.
	etags    map[string]string
	fetching map[string]bool
	// ticks counts OnTick calls; each periodic job runs every so many.
	ticks                              uint64
	tickMs                             int
	auditEvery, stateEvery, fetchEvery uint64
}

var _ types.PluginContext = (*pluginContext)(nil)

// OnPluginStart implements types.PluginContext. A configuration that does
// not parse fails the start (Envoy then refuses the filter config); a bundle
// that does not verify is logged and counted, and the tenant keeps its last
// good bundle or falls back to no_bundle.
func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("aegis: reading the plugin configuration: %v", err)
		return false
	}
	cfg, err := config.Parse(data)
	if err != nil {
		proxywasm.LogCriticalf("aegis: %v", err)
		return false
	}
	ks, err := token.ParseJWKS(cfg.JWKS)
	if err != nil {
		proxywasm.LogCriticalf("aegis: configuration: jwks: %v", err)
		return false
	}
	p.cfg = cfg
	p.setKeys(ks)
	p.redeemed = map[string]int64{}
	p.held = map[uint32]*heldRequest{}
	p.etags = map[string]string{}
	p.fetching = map[string]bool{}
	p.m = defineMetrics()
	p.policies = map[string]*policy{}
	p.ids = map[string]input.Identity{}
	now := time.Now()
	for tenant, data := range cfg.Bundles {
		// Rejections are logged and counted inside.
		_ = p.installBundle(tenant, data, now)
	}
	for tenant, data := range cfg.State.Inline {
		if err := p.applyState(tenant, data); err != nil {
			p.stateRejected(tenant, "the configuration", err)
		}
	}
	// Tenants whose bundle was rejected now, or that a previous
	// configuration of this VM loaded, run on their last good bundle.
	for tenant, pol := range p.vm.good {
		if _, listed := cfg.Bundles[tenant]; listed || slices.Contains(cfg.Fetch.Tenants, tenant) {
			p.policies[tenant] = pol
			g := proxywasm.DefineGaugeMetric("aegis.bundle_revision.tenant." + tenant)
			g.Add(pol.manifest.Revision - g.Value())
		}
	}
	if len(p.policies) == 0 {
		proxywasm.LogWarn("aegis: no policy bundle loaded, no_bundle applies to every request")
	}
	if p.vm.chain == nil {
		// One chain per VM: the node id plus a random VM id, since Envoy
		// gives worker VMs no stable name of their own.
		p.vm.chain = audit.NewChain(cfg.Node.ID, cfg.Node.ID+"/"+newDecisionID()[:16], cfg.Audit.MaxQueue, p.vm.root.NodeKey)
	}
	if cfg.ControlPlane.Cluster != "" {
		if p.vm.root.NodeKey == nil {
			proxywasm.LogWarnf("aegis: %s is not set: audit batches go unsigned and the control plane will refuse them", trust.EnvNodeKey)
		}
		p.schedule()
		if err := proxywasm.SetTickPeriodMilliSeconds(uint32(p.tickMs)); err != nil {
			proxywasm.LogCriticalf("aegis: setting the tick: %v", err)
			return false
		}
	}
	p.started = true
	return true
}

// OnTick implements types.PluginContext: poll held approvals, refresh live
// state, bundles and keys when due, and ship the oldest audit batch.
// One batch is in flight at a time, so the control plane sees seq in
// order.
func (p *pluginContext) OnTick() {
	now := time.Now()
	if p.draining {
		// A retired plugin only ships its queue; the tick is the backstop
		// for a host that never answers a call.
		if now.After(p.drainUntil) {
			p.finishDrain()
		}
		return
	}
	n := p.ticks
	p.ticks++
	if len(p.held) > 0 {
		p.pollHeld(now)
	}
	if p.stateEvery > 0 && n%p.stateEvery == 0 {
		p.fetchStates()
	}
	if p.fetchEvery > 0 && n%p.fetchEvery == 0 {
		if p.cfg.Fetch.JWKS {
			p.fetchJWKS()
		}
		if p.cfg.Fetch.Bundles {
			p.fetchBundles(now)
		}
	}
	if p.auditEvery == 0 || n%p.auditEvery != 0 {
		return
	}
	p.m.runtime.update()
	p.m.auditQueue.Add(int64(p.vm.chain.Len()) - p.m.auditQueue.Value())
	if p.inFlight || p.cfg.ControlPlane.Cluster == "" {
		return
	}
	p.shipBatch()
}

// shipBatch posts the oldest queued audit batch to the control plane and
// reports whether a call is now in flight. When the answer arrives, a
// draining plugin goes on with the next batch (see OnPluginDone).
func (p *pluginContext) shipBatch() bool {
	b, ok := p.vm.chain.Next(p.cfg.Audit.BatchSize)
	if !ok {
		return false
	}
	body, err := b.AppendJSON(p.batchBuf[:0])
	if err != nil {
		p.m.errors.Increment(1)
		proxywasm.LogErrorf("aegis: encoding an audit batch: %v", err)
		return false
	}
	p.batchBuf = body // the host copies the body; the buffer is reused
	chain := p.vm.chain
	_, err = proxywasm.DispatchHttpCall(p.cfg.ControlPlane.Cluster, p.cpHeaders("POST", AuditPath, true), body, nil, uint32(p.cfg.ControlPlane.TimeoutMs),
		func(_, bodySize, _ int) {
			p.inFlight = false
			progress := false
			status := calloutStatus()
			switch status {
			case "200":
				chain.Ack(b.SeqLast)
				progress = true
			case "409":
				raw, _ := proxywasm.GetHttpCallResponseBody(0, min(bodySize, 4096))
				expected, err := decodeAuditConflict(raw)
				if err != nil || expected < 1 {
					proxywasm.LogErrorf("aegis: audit batch %d-%d: 409 without expected_seq: %q", b.SeqFirst, b.SeqLast, raw)
					break
				}
				if err := chain.Resume(expected); err != nil {
					p.m.errors.Increment(1)
					proxywasm.LogCriticalf("aegis: audit: %v", err)
					break
				}
				progress = true
			default:
				// Kept for the next tick.
				proxywasm.LogWarnf("aegis: audit batch %d-%d: control plane answered %q", b.SeqFirst, b.SeqLast, status)
			}
			if p.draining {
				p.drainStep(progress, time.Now())
			}
		})
	if err != nil {
		p.m.errors.Increment(1)
		proxywasm.LogErrorf("aegis: dispatching an audit batch: %v", err)
		return false
	}
	p.inFlight = true
	return true
}

// loadPolicy opens and verifies one tenant's runtime bundle: signature
// first (nothing in the manifest is trusted before it), then validity
// window, kind, tenant, builtins and no downgrade against the current one.
func loadPolicy(data []byte, tenant string, root trust.Root, current *policy, now time.Time) (*policy, error) {
	if root.BundleKey == nil {
		return nil, errs.Errorf("no %s in the trust root", trust.EnvBundleKey)
	}
	b, err := bundle.Open(data, runtimeLimits)
	if err != nil {
		return nil, err
	}
	if err := b.Verify(root.BundleKey, now); err != nil {
		return nil, err
	}
	if b.Manifest.Kind != bundle.KindRuntime {
		return nil, errs.Errorf("bundle kind %q, want %q", b.Manifest.Kind, bundle.KindRuntime)
	}
	if err := bundle.CheckTenant(&b.Manifest, tenant); err != nil {
		return nil, err
	}
	supported := map[string]bool{}
	for _, name := range engine.SupportedBuiltins() {
		supported[name] = true
	}
	if err := bundle.CheckBuiltins(&b.Manifest, func(n string) bool { return supported[n] }); err != nil {
		return nil, err
	}
	var cur *bundle.Manifest
	if current != nil {
		cur = current.manifest
	}
	if err := bundle.CheckUpgrade(cur, &b.Manifest); err != nil {
		return nil, err
	}
	if current != nil && current.manifest.Revision == b.Manifest.Revision {
		return current, nil // a re-delivery of the same bundle
	}
	// What decide.FromBundle does, keeping the evaluator: tools/list
	// filtering evaluates a second entrypoint of the same plan.
	plan, data := b.Files[decide.PlanPath], b.Files[decide.DataPath]
	if plan == nil || data == nil {
		return nil, errs.Errorf("bundle %s: no %s or %s", b.Manifest.Name, decide.PlanPath, decide.DataPath)
	}
	dv, err := engine.FromJSON(data)
	if err != nil {
		return nil, errs.Errorf("bundle %s: %w", decide.DataPath, err)
	}
	ev, err := engine.Load(plan, dv)
	if err != nil {
		return nil, errs.Errorf("bundle %s: %w", decide.PlanPath, err)
	}
	info, err := decide.ReadPolicyInfo(&b.Manifest)
	if err != nil {
		return nil, err
	}
	d := decide.New(ev, input.Options{MCPEndpoints: info.MCPEndpoints, MaxBodyBytes: info.MaxBodyBytes})
	m := b.Manifest
	return &policy{decider: d, eval: ev, manifest: &m, version: m.Name + "@" + strconv.FormatInt(m.Revision, 10)}, nil
}

// EntrypointVisibleTools is the plan entrypoint listing the MCP tools of a
// server every agent in the chain may call.
const EntrypointVisibleTools = "aegis/mcp_visible_tools"

// visibleTools evaluates EntrypointVisibleTools for a tools/list request.
func (pol *policy) visibleTools(doc engine.Value) (map[string]bool, error) {
	v, ok, err := pol.eval.EvalOne(context.Background(), EntrypointVisibleTools, doc)
	if err != nil {
		return nil, err
	}
	vis := map[string]bool{}
	if !ok {
		return vis, nil
	}
	arr, isArr := v.(*engine.Array)
	if !isArr {
		return nil, errs.Errorf("%s: %s, want an array", EntrypointVisibleTools, engine.TypeName(v))
	}
	for i := range arr.Len() {
		e := arr.Index(i)
		str, ok := engine.AsString(e)
		if !ok {
			return nil, errs.Errorf("%s: element %s, want a string", EntrypointVisibleTools, engine.TypeName(e))
		}
		vis[str] = true
	}
	return vis, nil
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{p: p, ctxID: contextID}
}

type metrics struct {
	allow, deny, sanitize, approval proxywasm.MetricCounter
	unauthorized, noBundle, errors  proxywasm.MetricCounter
	rateLimited, bundleRejected     proxywasm.MetricCounter
	auditDropped                    proxywasm.MetricCounter
	stateRejected, stateRefused     proxywasm.MetricCounter
	fetchErrors                     proxywasm.MetricCounter
	auditQueue                      proxywasm.MetricGauge
	runtime                         runtimeGauges
}

// defineMetrics defines every metric once per plugin start, as Envoy wants,
// never on first use.
func defineMetrics() metrics {
	return metrics{
		allow:          proxywasm.DefineCounterMetric("aegis.decisions.allow"),
		deny:           proxywasm.DefineCounterMetric("aegis.decisions.deny"),
		sanitize:       proxywasm.DefineCounterMetric("aegis.decisions.sanitize"),
		approval:       proxywasm.DefineCounterMetric("aegis.decisions.approval_needed"),
		unauthorized:   proxywasm.DefineCounterMetric("aegis.requests.unauthorized"),
		noBundle:       proxywasm.DefineCounterMetric("aegis.requests.no_bundle"),
		errors:         proxywasm.DefineCounterMetric("aegis.errors"),
		rateLimited:    proxywasm.DefineCounterMetric("aegis.requests.rate_limited"),
		bundleRejected: proxywasm.DefineCounterMetric("aegis.bundles.rejected"),
		auditDropped:   proxywasm.DefineCounterMetric("aegis.audit.dropped"),
		auditQueue:     proxywasm.DefineGaugeMetric("aegis.audit.queue_depth"),
		stateRejected:  proxywasm.DefineCounterMetric("aegis.state.rejected"),
		stateRefused:   proxywasm.DefineCounterMetric("aegis.requests.refused_by_state"),
		fetchErrors:    proxywasm.DefineCounterMetric("aegis.fetch.errors"),
		runtime:        defineRuntimeGauges(),
	}
}

func (m *metrics) count(a decide.Action) {
	switch a {
	case decide.Allow:
		m.allow.Increment(1)
	case decide.Sanitize:
		m.sanitize.Increment(1)
	case decide.ApprovalNeeded:
		m.approval.Increment(1)
	default:
		m.deny.Increment(1)
	}
}

// httpContext is one request. It decides once: in OnHttpRequestHeaders
// when there is no body, otherwise when the body is complete (or over the
// limit).
type httpContext struct {
	types.DefaultHttpContext
	p     *pluginContext
	ctxID uint32
	pol   *policy
	req   input.Request
	id    input.Identity
	ictx  input.Context
	tok   string // the verified token, key of pluginContext.ids
	// override is the x-aegis-override token, looked at only when the
	// decision is approval_needed.
	override string
	// event is the audit event of the decision, recorded once the status
	// is known: the local reply's, or the upstream response's.
	event *audit.Event
	held  *heldRequest
	// tools/list response filtering: request ids (JSON text) and the
	// tools the agent may see.
	listIDs   map[string]bool
	visible   map[string]bool
	respCT    string
	filtering bool
	pending   bool // waiting for the body
	done      bool // decided (or answered locally)
}

var _ types.HttpContext = (*httpContext)(nil)

// OnHttpRequestHeaders implements types.HttpContext.
func (h *httpContext) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	p := h.p
	if !p.started {
		// No configuration: nothing can be checked.
		return h.localReply(503, reply.Error(reply.CodeInternal, "the filter is not configured"))
	}
	hs, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		p.m.errors.Increment(1)
		return h.localReply(500, reply.Error(reply.CodeInternal, "reading request headers failed"))
	}
	now := time.Now()
	claims, why := h.verify(hs, now)
	if claims == nil {
		p.m.unauthorized.Increment(1)
		return h.localReply(401, reply.Error(reply.CodeUnauthorized, why))
	}
	// The request goes upstream without the credential and without any
	// header that claims to come from Aegis; only the values read above
	// (intent, override) reach the decision.
	kept := hs[:0:0]
	for _, kv := range hs {
		name := strings.ToLower(kv[0])
		if name == p.cfg.Token.Header || strings.HasPrefix(name, headerPrefix) {
			if err := proxywasm.RemoveHttpRequestHeader(kv[0]); err != nil {
				p.m.errors.Increment(1)
				return h.localReply(500, reply.Error(reply.CodeInternal, "stripping request headers failed"))
			}
			if name == p.cfg.Token.Header {
				continue
			}
		}
		kept = append(kept, kv)
	}
	for _, kv := range hs {
		if strings.EqualFold(kv[0], HeaderOverride) {
			if h.override != "" {
				return h.localReply(400, reply.Error(reply.CodeOverrideInvalid, HeaderOverride+" given more than once"))
			}
			h.override = kv[1]
		}
	}
	h.req = requestFrom(kept)
	h.id = p.identity(claims, h.tok)
	if a, answered := h.checkState(claims, now); answered {
		return a
	}

	pol := p.policies[claims.Tenant]
	if pol == nil {
		p.m.noBundle.Increment(1)
		m := h.req.Method
		if p.cfg.NoBundle.Read == config.Open && (m == "GET" || m == "HEAD" || m == "OPTIONS") {
			proxywasm.LogWarnf("aegis: tenant %s has no bundle; %s let through by no_bundle.read=open (agent %s)", claims.Tenant, m, h.id.Agent)
			id := newDecisionID()
			reasons := []string{"no_bundle: read open"}
			h.setState(stateRecord{ID: id, Action: "allow", Reasons: reasons, Tenant: claims.Tenant, Agent: h.id.Agent})
			h.record(audit.Event{ID: id, Time: now.UTC().Format(time.RFC3339Nano), Tenant: claims.Tenant, Agent: h.id.Agent,
				Chain: h.id.Chain, Action: "allow", Reasons: reasons})
			h.done = true
			return types.ActionContinue
		}
		return h.localReply(403, []byte(NoBundleBody))
	}
	h.pol = pol
	if endOfStream {
		return h.decide(nil, false, now)
	}
	h.pending = true
	// Hold the headers too: the decision may add or change them.
	return types.ActionPause
}

// OnHttpRequestBody implements types.HttpContext. The host buffers while
// this returns pause; bodySize is everything buffered so far, so a chunked
// body arrives here reassembled.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if h.done || !h.pending {
		return types.ActionContinue
	}
	limit := h.p.cfg.Limits.MaxBodyBytes
	if bodySize > limit {
		// Deciding now, on what is known, is a deny (body_too_large): the
		// rest is never buffered.
		body, err := proxywasm.GetHttpRequestBody(0, limit)
		if err != nil {
			return h.fail("reading the request body failed")
		}
		return h.decide(body, true, time.Now())
	}
	if !endOfStream {
		return types.ActionPause
	}
	return h.decideBuffered(bodySize)
}

// OnHttpRequestTrailers implements types.HttpContext: with trailers, the
// last body chunk does not carry end of stream; the trailers do.
func (h *httpContext) OnHttpRequestTrailers(int) types.Action {
	if h.done || !h.pending {
		return types.ActionContinue
	}
	return h.decideBuffered(-1)
}

func (h *httpContext) decideBuffered(size int) types.Action {
	var body []byte
	if size != 0 {
		if size < 0 {
			size = h.p.cfg.Limits.MaxBodyBytes + 1
		}
		b, err := proxywasm.GetHttpRequestBody(0, size)
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
		case err != nil:
			return h.fail("reading the request body failed")
		default:
			body = b
		}
	}
	truncated := len(body) > h.p.cfg.Limits.MaxBodyBytes
	if truncated {
		body = body[:h.p.cfg.Limits.MaxBodyBytes]
	}
	return h.decide(body, truncated, time.Now())
}

// decide evaluates the policy and enforces the decision.
func (h *httpContext) decide(body []byte, truncated bool, now time.Time) types.Action {
	h.done = true
	h.pending = false
	p := h.p
	h.req.Body = body
	h.req.BodyTruncated = truncated
	spent, err := quota.Read(sharedData{}, quota.SpendKey(h.id.Tenant, h.id.Agent), quota.Day(now))
	if err != nil {
		proxywasm.LogErrorf("aegis: %v", err)
		return h.fail("reading the spend counter failed")
	}
	h.ictx.Region, h.ictx.Time, h.ictx.SpentMicroUSD = p.cfg.Node.Region, now, spent
	start := time.Now()
	out, err := h.pol.decider.Decide(context.Background(), h.req, h.id, h.ictx)
	if err != nil {
		proxywasm.LogErrorf("aegis: deciding: %v", err)
		return h.fail("the policy could not be evaluated")
	}
	elapsed := time.Since(start)
	if h.override != "" && out.Decision.Action == decide.ApprovalNeeded && out.Decision.Mode != "observe" {
		return h.applyOverride(out, now)
	}
	return h.enforce(out, elapsed, now, nil)
}

// enforce applies a decision: obligations (rate, spend), filter state, the
// audit event, then the request goes on or is answered locally. ov is the
// redeemed override that lifted an approval, or nil.
func (h *httpContext) enforce(out decide.Outcome, elapsed time.Duration, now time.Time, ov *token.OverrideClaims) types.Action {
	p := h.p
	tenant := h.id.Tenant
	d := out.Decision
	id := newDecisionID()
	action, shadow := d.Action, d.ShadowAction
	if d.Mode == "observe" && action != decide.Allow {
		// Observe mode: record what would have happened, let it through.
		action, shadow = decide.Allow, d.Action
	}
	var status uint32
	reasons := d.Reasons
	through := action == decide.Allow || action == decide.Sanitize
	if through && p.vm.chain.Full() && p.cfg.OnAuditOverflow == config.OverflowDenyWrites && isWrite(d.Tool, h.req.Method) {
		// A write whose evidence cannot be kept is refused.
		action, through = decide.Deny, false
		reasons = []string{"audit: the audit queue is full; writes are refused until it drains"}
	}
	if through && d.Obligations.Rate != nil && d.Obligations.Rate.PerMinute > 0 {
		r := d.Obligations.Rate
		_, ok, err := quota.Add(sharedData{}, quota.RateKey(tenant, r.Key), quota.Minute(now), 1, r.PerMinute)
		if err != nil {
			proxywasm.LogErrorf("aegis: %v", err)
			return h.fail("the rate limit could not be checked")
		}
		if !ok {
			p.m.rateLimited.Increment(1)
			action, status, through = decide.Deny, 429, false
			reasons = []string{fmt.Sprintf("rate: %s allows %d calls per minute", r.Key, r.PerMinute)}
		}
	}
	if through && d.Obligations.CostMicroUSD > audit.MaxCostMicroUSD {
		// No event could carry it (the control plane refuses it), so the
		// charge could never reach the fleet's books.
		action, through = decide.Deny, false
		reasons = []string{fmt.Sprintf("budget: the call costs %d micro-USD, more than one call may (%d)", d.Obligations.CostMicroUSD, int64(audit.MaxCostMicroUSD))}
	}
	if through && d.Obligations.CostMicroUSD > 0 {
		if why, ok := p.fleetBudget(tenant, h.id.Agent, d.Obligations.CostMicroUSD, now); !ok {
			action, through = decide.Deny, false
			reasons = []string{why}
		}
	}
	if through && d.Obligations.CostMicroUSD > 0 {
		if _, _, err := quota.Add(sharedData{}, quota.SpendKey(tenant, h.id.Agent), quota.Day(now), d.Obligations.CostMicroUSD, 0); err != nil {
			proxywasm.LogErrorf("aegis: %v", err)
			return h.fail("the spend could not be recorded")
		}
	}
	p.m.count(action)
	rec := stateRecord{
		ID: id, Action: string(action), ShadowAction: string(shadow), Reasons: reasons,
		RuleIDs: d.RuleIDs, Tenant: tenant, Agent: h.id.Agent, Policy: h.pol.version, DecisionNS: elapsed.Nanoseconds(),
	}
	if d.Tool != nil {
		rec.Tool = d.Tool.Name
	}
	if action == decide.Deny || action == decide.ApprovalNeeded {
		if status == 0 {
			status = 403
		}
	}
	ev := audit.Event{
		ID: id, Time: now.UTC().Format(time.RFC3339Nano), Tenant: tenant, Agent: h.id.Agent, Chain: h.id.Chain,
		Tool: rec.Tool, Action: string(action), ShadowAction: string(shadow), Reasons: reasons, RuleIDs: d.RuleIDs,
		PolicyRevision: h.pol.manifest.Revision, InputDigest: p.inputDigest(out), Redactions: redactions(d),
		DecisionNS: elapsed.Nanoseconds(), Status: int(status),
	}
	if through && d.Obligations.CostMicroUSD > 0 {
		// What the spend counter was charged above; the control plane
		// sums it into the fleet budgets of the live state.
		ev.CostMicroUSD = d.Obligations.CostMicroUSD
	}
	if ov != nil {
		ev.ApprovalID, ev.OverrideJTI = ov.ApprovalID, ov.ID
		rec.ApprovalID, rec.OverrideJTI = ov.ApprovalID, ov.ID
	}
	h.setState(rec)
	// Recorded with the local reply's status, or with the upstream's when
	// the response starts (or the stream ends without one).
	h.event = &ev

	switch action {
	case decide.Allow, decide.Sanitize:
		if err := h.prepareListFilter(out); err != nil {
			proxywasm.LogErrorf("aegis: %s: %v", id, err)
			return h.fail("the visible tools could not be computed")
		}
		if action == decide.Sanitize {
			if err := proxywasm.ReplaceHttpRequestBody(out.Body); err != nil {
				return h.fail("rewriting the request body failed")
			}
			if cl, err := proxywasm.GetHttpRequestHeader("content-length"); err == nil && cl != "" {
				if err := proxywasm.ReplaceHttpRequestHeader("content-length", strconv.Itoa(len(out.Body))); err != nil {
					return h.fail("fixing content-length failed")
				}
			}
		}
		if err := proxywasm.ReplaceHttpRequestHeader(HeaderDecisionID, id); err != nil {
			return h.fail("setting the decision id failed")
		}
		if shadow != "" && shadow != action {
			if err := proxywasm.ReplaceHttpRequestHeader(HeaderShadowDecision, string(shadow)); err != nil {
				return h.fail("setting the shadow decision failed")
			}
		}
		return types.ActionContinue
	}

	// deny or approval_needed: answered locally.
	if action == decide.ApprovalNeeded && p.cfg.ControlPlane.Cluster != "" {
		return h.requestApproval(out, reasons, id)
	}
	return h.refuse(out, action, status, reasons, id, "")
}

// refuse answers a deny, rate limit or approval_needed locally.
func (h *httpContext) refuse(out decide.Outcome, action decide.Action, status uint32, reasons []string, id, approvalID string) types.Action {
	if body, ok := h.mcpReply(out, action, reasons, id, approvalID); ok {
		return h.localReply(200, body)
	}
	rd := reply.Decision{Error: reply.CodePolicyViolation, DecisionID: id, Reasons: reasons, PolicyVersion: h.pol.version}
	switch {
	case status == 429:
		rd.Error = reply.CodeRateLimited
	case action == decide.ApprovalNeeded:
		rd.Error = reply.CodeApprovalNeeded
		rd.RetryWith = "x-aegis-override"
		rd.ApprovalID = approvalID
		if approvalID == "" {
			rd.Message = "approval required; this node has no control plane to request it from"
		}
		status = 403
	default:
		status = 403
	}
	return h.localReply(status, rd.JSON())
}

// ApprovalsPath is the control-plane endpoint approvals are created at.
const ApprovalsPath = "/v1/approvals"

// approvalRequest is the body of POST /v1/approvals (API.md).
type approvalRequest struct {
	DecisionID     string   `json:"decision_id"`
	Tenant         string   `json:"tenant"`
	Agent          string   `json:"agent"`
	Chain          []string `json:"chain"`
	Tool           string   `json:"tool"`
	ParamsDigest   string   `json:"params_digest"`
	Reasons        []string `json:"reasons"`
	PolicyRevision int64    `json:"policy_revision"`
	Approvers      []string `json:"approvers"`
	ExpiresIn      int64    `json:"expires_in"`
	RequestSummary string   `json:"request_summary"`
}

// requestApproval asks the control plane to create an approval and holds
// the request until it answers; the reply then carries the approval id.
// When the control plane cannot be reached, the tool's fail mode decides:
// open lets the call through (recorded), closed refuses it with 503.
func (h *httpContext) requestApproval(out decide.Outcome, reasons []string, id string) types.Action {
	p := h.p
	d := out.Decision
	c := approvalCall(out)
	tool, digest, err := callDigest(h.id.Tenant, h.id.Agent, c)
	if err != nil {
		proxywasm.LogErrorf("aegis: %s: params digest: %v", id, err)
		return h.fail("the call's parameters could not be digested for the approval")
	}
	ar := approvalRequest{
		DecisionID: id, Tenant: h.id.Tenant, Agent: h.id.Agent, Chain: h.id.Chain, Tool: tool,
		Reasons: reasons, PolicyRevision: h.pol.manifest.Revision, ParamsDigest: digest,
		RequestSummary: h.req.Method + " " + h.req.Authority + h.req.Path,
	}
	if c.Decision.Approval != nil {
		ar.Approvers, ar.ExpiresIn = c.Decision.Approval.Approvers, c.Decision.Approval.ExpiresInS
	} else if d.Approval != nil {
		ar.Approvers, ar.ExpiresIn = d.Approval.Approvers, d.Approval.ExpiresInS
	}
	body := ar.appendJSON(nil)
	_, err = proxywasm.DispatchHttpCall(p.cfg.ControlPlane.Cluster, p.cpHeaders("POST", ApprovalsPath, true), body, nil, uint32(p.cfg.ControlPlane.TimeoutMs),
		func(_, bodySize, _ int) {
			raw, _ := proxywasm.GetHttpCallResponseBody(0, min(bodySize, 4096))
			if st := calloutStatus(); st == "201" || st == "200" {
				if approvalID, err := decodeApprovalCreated(raw); err == nil && approvalID != "" {
					if h.event != nil {
						h.event.ApprovalID = approvalID
					}
					if h.p.cfg.Limits.ApprovalHoldMs > 0 {
						h.hold(out, approvalID, reasons, id)
						return
					}
					h.refuse(out, decide.ApprovalNeeded, 0, reasons, id, approvalID)
					return
				}
			}
			proxywasm.LogErrorf("aegis: creating an approval for %s: control plane answered %q", id, calloutStatus())
			if h.controlPlaneDown(d, id, "the approval could not be requested") == types.ActionContinue {
				if err := proxywasm.ResumeHttpRequest(); err != nil {
					proxywasm.LogErrorf("aegis: resuming %s: %v", id, err)
				}
			}
		})
	if err != nil {
		proxywasm.LogErrorf("aegis: creating an approval for %s: %v", id, err)
		return h.controlPlaneDown(d, id, "the approval could not be requested")
	}
	h.done = true
	return types.ActionPause
}

// approvalCall is the call an approval (and so an override) is for: the
// first that needs one.
func approvalCall(out decide.Outcome) decide.Call {
	for _, c := range out.Calls {
		if c.Decision.Action == decide.ApprovalNeeded {
			return c
		}
	}
	if len(out.Calls) > 0 {
		return out.Calls[0]
	}
	return decide.Call{}
}

// controlPlaneDown applies the tool's fail mode to a decision that needed
// the control plane; what says what could not be done.
func (h *httpContext) controlPlaneDown(d decide.Decision, id, what string) types.Action {
	h.p.m.errors.Increment(1)
	if d.Fail == "open" {
		if err := proxywasm.ReplaceHttpRequestHeader(HeaderDecisionID, id); err == nil {
			proxywasm.LogWarnf("aegis: %s: control plane unreachable, let through by fail mode open", id)
			if h.event != nil {
				h.event.Reasons = append(h.event.Reasons, "control plane unreachable: let through by fail mode open")
			}
			return types.ActionContinue
		}
	}
	return h.localReply(503, reply.Error(reply.CodeControlPlaneUnavailable, what+"; the call is refused (fail mode closed)"))
}

// cpHeaders are the headers of a call to the control plane; every call
// carries the node credential when the deployment gives one.
func (p *pluginContext) cpHeaders(method, path string, body bool) [][2]string {
	hs := make([][2]string, 0, 6)
	hs = append(hs, [2]string{":method", method}, [2]string{":path", path}, [2]string{":authority", p.cfg.ControlPlane.Authority})
	if body {
		hs = append(hs, [2]string{"content-type", "application/json"})
	}
	if p.vm.root.NodeToken != "" {
		hs = append(hs, [2]string{"authorization", "Bearer " + p.vm.root.NodeToken})
	}
	return hs
}

func calloutStatus() string {
	hs, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		return ""
	}
	for _, h := range hs {
		if h[0] == ":status" {
			return h[1]
		}
	}
	return ""
}

// callDigest returns the tool of a call and the params digest that binds
// approvals and override tokens to it (jcs.ParamsDigest over the call's
// params as the policy saw them).
func callDigest(tenant, agent string, c decide.Call) (tool, digest string, err error) {
	var params []byte
	if in, ok := c.Input.(*engine.Object); ok {
		if t, ok := in.Get("tool"); ok {
			if to, ok := t.(*engine.Object); ok {
				if n, ok := to.Get("name"); ok {
					tool, _ = engine.AsString(n)
				}
			}
		}
		if v, ok := in.Get("params"); ok {
			if params, err = engine.ToJSON(v); err != nil {
				return "", "", err
			}
		}
	}
	if c.Decision.Tool != nil && c.Decision.Tool.Name != "" {
		tool = c.Decision.Tool.Name
	}
	digest, err = jcs.ParamsDigest(tenant, agent, tool, params)
	return tool, digest, err
}

// prepareListFilter remembers the tools/list requests of an MCP call that
// goes through, and which tools the agent may see, for the response.
func (h *httpContext) prepareListFilter(out decide.Outcome) error {
	for _, c := range out.Calls {
		if c.MCP == nil || c.MCP.Kind != input.KindRequest || c.MCP.Method != "tools/list" || c.MCP.ID == nil {
			continue
		}
		if h.listIDs == nil {
			vis, err := h.pol.visibleTools(c.Input)
			if err != nil {
				return err
			}
			h.visible, h.listIDs = vis, map[string]bool{}
		}
		h.listIDs[string(c.MCP.ID)] = true
	}
	return nil
}

// OnHttpResponseHeaders implements types.HttpContext: a response to a
// tools/list request is held until its body is filtered.
func (h *httpContext) OnHttpResponseHeaders(_ int, endOfStream bool) types.Action {
	if h.event != nil {
		if st, err := proxywasm.GetHttpResponseHeader(":status"); err == nil {
			h.event.Status, _ = strconv.Atoi(st)
		}
		h.record(*h.event)
		h.event = nil
	}
	if h.listIDs == nil || endOfStream {
		return types.ActionContinue
	}
	h.respCT, _ = proxywasm.GetHttpResponseHeader("content-type")
	if err := proxywasm.RemoveHttpResponseHeader("content-length"); err != nil {
		proxywasm.LogWarnf("aegis: removing the response content-length: %v", err)
	}
	h.filtering = true
	return types.ActionPause
}

// OnHttpResponseBody implements types.HttpContext.
func (h *httpContext) OnHttpResponseBody(bodySize int, endOfStream bool) types.Action {
	if !h.filtering {
		return types.ActionContinue
	}
	limit := h.p.cfg.Limits.MaxBodyBytes
	if !endOfStream && bodySize <= limit {
		return types.ActionPause
	}
	h.filtering = false
	var filtered []byte
	body, err := proxywasm.GetHttpResponseBody(0, bodySize)
	if err == nil && bodySize <= limit {
		filtered, err = mcplist.Filter(body, h.respCT, h.listIDs, h.visible)
	} else if err == nil {
		err = errs.Errorf("response larger than %d bytes", limit)
	}
	if err != nil {
		// Nothing unchecked reaches the agent: the list becomes an error.
		h.p.m.errors.Increment(1)
		proxywasm.LogErrorf("aegis: filtering a tools/list response: %v", err)
		filtered = listError(h.listIDs, h.respCT)
	}
	if err := proxywasm.ReplaceHttpResponseBody(filtered); err != nil {
		proxywasm.LogCriticalf("aegis: replacing a tools/list response: %v", err)
		// Not forwarding is the only closed option left.
		return types.ActionPause
	}
	return types.ActionContinue
}

// listError is the JSON-RPC error that replaces a tools/list response the
// filter could not check.
func listError(ids map[string]bool, contentType string) []byte {
	var msgs []string
	for id := range ids {
		msgs = append(msgs, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32603,"message":"aegis: the tools/list response could not be checked"}}`)
	}
	body := msgs[0]
	if len(msgs) > 1 {
		body = "[" + strings.Join(msgs, ",") + "]"
	}
	if strings.HasPrefix(contentType, "text/event-stream") {
		return []byte("data: " + body + "\n\n")
	}
	return []byte(body)
}

// record queues the audit event; when the queue is full the event is
// dropped and counted (writes were refused above under deny_writes).
func (h *httpContext) record(ev audit.Event) {
	for _, kv := range h.req.Headers {
		if kv[0] == "traceparent" {
			// version-traceid-spanid-flags (W3C Trace Context)
			if parts := strings.Split(kv[1], "-"); len(parts) == 4 && len(parts[1]) == 32 && len(parts[2]) == 16 {
				ev.TraceID, ev.SpanID = parts[1], parts[2]
			}
		}
	}
	if _, err := h.p.vm.chain.Append(ev); err != nil {
		h.p.m.auditDropped.Increment(1)
		if !errors.Is(err, audit.ErrFull) {
			proxywasm.LogErrorf("aegis: %v", err)
		}
	}
}

// isWrite reports whether a call changes something: the tool's kind when
// the policy matched one, else the HTTP method.
func isWrite(t *decide.Tool, method string) bool {
	if t != nil && t.Kind != "" {
		return t.Kind != "read"
	}
	return method != "GET" && method != "HEAD" && method != "OPTIONS"
}

// inputDigest is the hex SHA-256 of the input documents the policy saw,
// in a length-prefixed canonical binary form (see appendCanon) rather than
// JSON: rendering the document as JSON cost as much as evaluating the
// policy. The buffer is the plugin's, reused across requests.
func (p *pluginContext) inputDigest(out decide.Outcome) string {
	buf := p.digestBuf[:0]
	for _, c := range out.Calls {
		if c.Input != nil {
			buf = appendCanon(buf, c.Input)
		}
	}
	p.digestBuf = buf
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

// appendCanon encodes v unambiguously: a type tag, then for scalars the
// length-prefixed text (numbers keep their literal), for collections the
// element count and the elements in the engine's order (sorted keys).
func appendCanon(b []byte, v engine.Value) []byte {
	switch engine.TypeName(v) {
	case "null":
		return append(b, 'z')
	case "boolean":
		x, _ := engine.AsBool(v)
		if x {
			return append(b, 't')
		}
		return append(b, 'f')
	case "number":
		n, _ := engine.AsNumber(v)
		return appendLenString(append(b, 'n'), n)
	case "string":
		str, _ := engine.AsString(v)
		return appendLenString(append(b, 's'), str)
	case "array":
		a := v.(*engine.Array)
		b = binary.AppendUvarint(append(b, 'a'), uint64(a.Len()))
		for i := range a.Len() {
			b = appendCanon(b, a.Index(i))
		}
		return b
	case "object":
		o := v.(*engine.Object)
		b = binary.AppendUvarint(append(b, 'o'), uint64(o.Len()))
		o.Range(func(k, val engine.Value) bool {
			b = appendCanon(b, k)
			b = appendCanon(b, val)
			return true
		})
		return b
	case "set":
		st := v.(*engine.Set)
		b = binary.AppendUvarint(append(b, 'e'), uint64(st.Len()))
		st.Range(func(e engine.Value) bool {
			b = appendCanon(b, e)
			return true
		})
		return b
	}
	return append(b, '?')
}

func appendLenString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func redactions(d decide.Decision) []audit.Redaction {
	var rs []audit.Redaction
	for _, r := range d.Redactions {
		rs = append(rs, audit.Redaction{Path: r.Path, Detectors: r.Detectors})
	}
	return rs
}

// mcpReply answers a refused MCP request the way MCP clients surface it to
// the model: HTTP 200 with an isError result per JSON-RPC request id.
func (h *httpContext) mcpReply(out decide.Outcome, action decide.Action, reasons []string, id, approvalID string) ([]byte, bool) {
	if len(out.Calls) == 0 || out.Calls[0].MCP == nil {
		return nil, false
	}
	rpcs := make([]reply.RPC, 0, len(out.Calls))
	for _, c := range out.Calls {
		if c.MCP.Kind != input.KindRequest {
			continue
		}
		rs := c.Decision.Reasons
		a := string(c.Decision.Action)
		if c.Decision.Action == decide.Allow || len(rs) == 0 {
			// This element was fine; the batch is refused for another.
			rs, a = reasons, string(action)
		}
		rpcs = append(rpcs, reply.RPC{ID: c.MCP.ID, Text: reply.Reasons(a, rs)})
	}
	batch := false
	for _, b := range h.req.Body {
		if b != ' ' && b != '\t' && b != '\r' && b != '\n' {
			batch = b == '['
			break
		}
	}
	return reply.MCP(rpcs, batch, reply.Meta{DecisionID: id, Action: string(action), ApprovalID: approvalID})
}

// fail answers a request the filter could not decide: fail closed.
func (h *httpContext) fail(msg string) types.Action {
	h.p.m.errors.Increment(1)
	if h.event != nil {
		h.event.Action = string(decide.Deny)
		h.event.Reasons = append(h.event.Reasons, "internal: "+msg)
	}
	h.done = true
	return h.localReply(503, reply.Error(reply.CodeInternal, msg))
}

func (h *httpContext) localReply(status uint32, body []byte) types.Action {
	h.done = true
	if h.event != nil {
		h.event.Status = int(status)
		h.record(*h.event)
		h.event = nil
	}
	headers := [][2]string{{"content-type", "application/json"}, {"cache-control", "no-store"}}
	if err := proxywasm.SendHttpResponse(status, headers, body, -1); err != nil {
		// The local reply failed; pausing still keeps the request from the
		// upstream, so the failure stays closed.
		proxywasm.LogCriticalf("aegis: sending a %d reply: %v", status, err)
	}
	return types.ActionPause
}

// verify finds and verifies the agent token. It returns the claims, or nil
// and why.
func (h *httpContext) verify(hs [][2]string, now time.Time) (*token.Claims, string) {
	header := h.p.cfg.Token.Header
	var tok string
	n := 0
	for _, kv := range hs {
		if strings.EqualFold(kv[0], header) {
			tok = kv[1]
			n++
		}
	}
	switch {
	case n == 0:
		return nil, "missing agent token (" + header + ")"
	case n > 1:
		return nil, "agent token header given more than once"
	}
	if header == "authorization" {
		scheme, rest, ok := strings.Cut(tok, " ")
		if !ok || !strings.EqualFold(scheme, "bearer") {
			return nil, "authorization header is not a Bearer token"
		}
		tok = strings.TrimLeft(rest, " ")
	}
	c, err := h.p.verifier.Verify(tok, now)
	if err != nil {
		return nil, "invalid agent token: " + err.Error()
	}
	h.tok = tok
	if c.Tenant == "" {
		return nil, "invalid agent token: no tenant"
	}
	return c, ""
}

func requestFrom(hs [][2]string) input.Request {
	r := input.Request{Headers: hs}
	for _, kv := range hs {
		switch kv[0] {
		case ":method":
			r.Method = kv[1]
		case ":scheme":
			r.Scheme = kv[1]
		case ":authority":
			r.Authority = kv[1]
		case ":path":
			r.Path = kv[1]
		}
	}
	return r
}

// identity returns the identity for the token just verified, from the
// cache when possible.
func (p *pluginContext) identity(c *token.Claims, tok string) input.Identity {
	if id, ok := p.ids[tok]; ok {
		return id
	}
	if len(p.ids) >= p.cfg.Token.CacheEntries {
		clear(p.ids)
	}
	id := identityFrom(c)
	p.ids[tok] = id
	return id
}

func identityFrom(c *token.Claims) input.Identity {
	id := input.Identity{
		Agent:  token.Agent(c),
		Tenant: c.Tenant,
		Chain:  token.Chain(c),
		Region: c.Region,
		Scope:  c.Scopes(),
	}
	// Claims reach custom Rego as the token carried them.
	if v, err := engine.FromJSON(c.AppendJSON(nil)); err == nil {
		id.Claims = v
	}
	return id
}

func newDecisionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on wasip1 (random_get) or any host we
		// run on; an id is still needed, so fall back to the clock.
		return strconv.FormatInt(time.Now().UnixNano(), 16)
	}
	return hex.EncodeToString(b[:])
}

// stateRecord is the decision summary written to filter state for access
// logs (and, later, the audit event).
type stateRecord struct {
	ID           string   `json:"id,omitempty"`
	Action       string   `json:"action"`
	ShadowAction string   `json:"shadow_action,omitempty"`
	Reasons      []string `json:"reasons,omitempty"`
	RuleIDs      []string `json:"rule_ids,omitempty"`
	Tenant       string   `json:"tenant"`
	Agent        string   `json:"agent"`
	Tool         string   `json:"tool,omitempty"`
	Policy       string   `json:"policy_version,omitempty"`
	DecisionNS   int64    `json:"decision_ns,omitempty"`
	ApprovalID   string   `json:"approval_id,omitempty"`
	OverrideJTI  string   `json:"override_jti,omitempty"`
}

func (h *httpContext) setState(r stateRecord) {
	// The host copies the value, so the plugin's buffer is reused; the
	// record is written by hand because encoding/json cost ~5% of the
	// allow path.
	h.p.stateBuf = r.appendJSON(h.p.stateBuf[:0])
	if err := proxywasm.SetProperty(propertyDecisionPath, h.p.stateBuf); err != nil {
		proxywasm.LogWarnf("aegis: setting filter state: %v", err)
	}
}

var propertyDecisionPath = []string{PropertyDecision}

// appendJSON writes the JSON value encoding/json would write for r (same
// members and omissions; TestStateRecordJSON holds it to that).
func (r *stateRecord) appendJSON(b []byte) []byte {
	b = append(b, '{')
	b = appendField(b, "id", r.ID, true)
	b = appendField(b, "action", r.Action, false)
	b = appendField(b, "shadow_action", r.ShadowAction, true)
	b = appendList(b, "reasons", r.Reasons)
	b = appendList(b, "rule_ids", r.RuleIDs)
	b = appendField(b, "tenant", r.Tenant, false)
	b = appendField(b, "agent", r.Agent, false)
	b = appendField(b, "tool", r.Tool, true)
	b = appendField(b, "policy_version", r.Policy, true)
	if r.DecisionNS != 0 {
		b = strconv.AppendInt(append(b, `,"decision_ns":`...), r.DecisionNS, 10)
	}
	b = appendField(b, "approval_id", r.ApprovalID, true)
	b = appendField(b, "override_jti", r.OverrideJTI, true)
	return append(b, '}')
}

// appendField and appendList write one member of the object b holds so
// far. They stay out of line: inlined at each of their eleven calls they
// cost the module 11 kB, and a call per member is nothing beside the
// request.
//
//go:noinline
func appendField(b []byte, key, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	if len(b) > 1 {
		b = append(b, ',')
	}
	b = append(append(append(b, '"'), key...), '"', ':')
	return jcs.AppendString(b, v)
}

//go:noinline
func appendList(b []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	if len(b) > 1 {
		b = append(b, ',')
	}
	b = append(append(append(b, '"'), key...), '"', ':', '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = jcs.AppendString(b, v)
	}
	return append(b, ']')
}

// sharedData is quota.Store over proxy-wasm shared data.
type sharedData struct{}

func (sharedData) Get(key string) ([]byte, uint32, error) {
	v, cas, err := proxywasm.GetSharedData(key)
	if errors.Is(err, types.ErrorStatusNotFound) {
		return nil, 0, quota.ErrNotFound
	}
	return v, cas, err
}

func (sharedData) Set(key string, value []byte, cas uint32) error {
	err := proxywasm.SetSharedData(key, value, cas)
	if errors.Is(err, types.ErrorStatusCasMismatch) {
		return quota.ErrCasMismatch
	}
	return err
}

// OnHttpStreamDone implements types.HttpContext: an event still waiting
// for a status (the stream ended without a response) is recorded with
// status 0, and a held request stops being polled.
func (h *httpContext) OnHttpStreamDone() {
	if h.held != nil {
		delete(h.p.held, h.ctxID)
		h.held = nil
	}
	if h.event != nil {
		h.record(*h.event)
		h.event = nil
	}
}

// setKeys puts a token key set in force: agent tokens (through a fresh
// Verifier, whose cache belonged to the old keys) and override tokens.
func (p *pluginContext) setKeys(ks *token.KeySet) {
	p.keys = ks
	p.verifier = token.NewVerifier(ks, token.VerifyOptions{
		Skew:     time.Duration(p.cfg.Token.SkewSeconds) * time.Second,
		Issuer:   p.cfg.Token.Issuer,
		Audience: p.cfg.Token.Audience,
	}, p.cfg.Token.CacheEntries)
}

// schedule picks one tick period for every periodic job (the shortest
// interval) and runs each job every interval/period ticks. Counting ticks
// rather than reading the clock keeps the jobs in step with the host's
// timer, and testable.
func (p *pluginContext) schedule() {
	p.tickMs = p.cfg.Audit.FlushIntervalMs
	if r := p.cfg.State.RefreshMs; r > 0 {
		p.tickMs = min(p.tickMs, r)
	}
	fetching := p.cfg.Fetch.Bundles || p.cfg.Fetch.JWKS
	if fetching {
		p.tickMs = min(p.tickMs, p.cfg.Fetch.RefreshMs)
	}
	if p.cfg.Limits.ApprovalHoldMs > 0 {
		// Poll held approvals at least every second.
		p.tickMs = min(p.tickMs, 1000)
	}
	every := func(ms int) uint64 { return uint64(max(1, (ms+p.tickMs/2)/p.tickMs)) }
	p.auditEvery = every(p.cfg.Audit.FlushIntervalMs)
	p.stateEvery, p.fetchEvery = 0, 0
	if p.cfg.State.RefreshMs > 0 {
		p.stateEvery = every(p.cfg.State.RefreshMs)
	}
	if fetching {
		p.fetchEvery = every(p.cfg.Fetch.RefreshMs)
	}
}
