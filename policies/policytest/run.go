package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/decide"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input"
)

// Result is the outcome of one case.
type Result struct {
	Case     *Case
	Outcome  decide.Outcome
	Failures []string // empty when the case passed
}

// Passed reports whether the case met every expectation.
func (r Result) Passed() bool { return len(r.Failures) == 0 }

// Target is what the cases run against: a decider for the compiled policy
// and the policy's tenant (the default token tenant).
type Target struct {
	Decider *decide.Decider
	Tenant  string
}

// Run runs every case of f. An error means a case could not be run at all
// (a bad URL, an unparsable time); failed expectations are in the results.
func Run(ctx context.Context, f *File, t Target) ([]Result, error) {
	results := make([]Result, 0, len(f.Cases))
	for i := range f.Cases {
		c := &f.Cases[i]
		r, err := runCase(ctx, f, c, t)
		if err != nil {
			return results, fmt.Errorf("%s:%d:%d: case %q: %w", c.File, c.Line, c.Col, c.Name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

// ProxyView builds the proxy's view of a case: the HTTP request, the verified
// identity and the node context.
func ProxyView(f *File, c *Case, tenant string) (input.Request, input.Identity, input.Context, error) {
	var req input.Request
	// The URL is split by hand, not with net/url, so that the path reaches
	// the input builder byte for byte as a proxy would see it (hostile
	// encodings included).
	scheme, rest, ok := strings.Cut(c.Request.URL, "://")
	if !ok || scheme == "" {
		return req, input.Identity{}, input.Context{}, fmt.Errorf("request.url %q: want an absolute URL such as https://host/path", c.Request.URL)
	}
	rest, _, _ = strings.Cut(rest, "#")
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		i = len(rest)
	}
	req.Method = c.Request.Method
	req.Scheme = scheme
	req.Authority = rest[:i]
	req.Path = rest[i:]
	if req.Path == "" || req.Path[0] == '?' {
		req.Path = "/" + req.Path
	}
	if req.Authority == "" {
		return req, input.Identity{}, input.Context{}, fmt.Errorf("request.url %q: no host", c.Request.URL)
	}
	switch {
	case c.Request.JSON != nil:
		req.Body = c.Request.JSON
	case c.Request.Body != nil:
		req.Body = c.Request.Body
	}
	hasCT := false
	for _, h := range append(slices.Clone(c.Headers), c.Request.Headers...) {
		if strings.EqualFold(h[0], "content-type") {
			hasCT = true
		}
		req.Headers = append(req.Headers, h)
	}
	if c.Request.HasBody && !hasCT {
		req.Headers = append(req.Headers, [2]string{"content-type", "application/json"})
	}
	if c.Intent != "" {
		req.Headers = append(req.Headers, [2]string{"x-aegis-intent", c.Intent})
	}

	if c.Tenant != "" {
		tenant = c.Tenant
	} else if f.Defaults.Tenant != "" {
		tenant = f.Defaults.Tenant
	}
	region := first(c.Region, f.Defaults.Region)
	tokenRegion := first(c.TokenRegion, f.Defaults.TokenRegion, region)
	id := input.Identity{
		Agent:  c.Agent,
		Tenant: tenant,
		Chain:  append([]string{c.Agent}, c.ActingFor...),
		Region: tokenRegion,
	}
	// The claims a real token would carry, so custom Rego sees the same shape.
	claims := engine.NewObject(4)
	claims.Set("sub", engine.String(id.Chain[len(id.Chain)-1]))
	claims.Set("tenant", engine.String(tenant))
	if tokenRegion != "" {
		claims.Set("region", engine.String(tokenRegion))
	}
	if len(c.ActingFor) > 0 {
		claims.Set("act", actClaim(id.Chain[:len(id.Chain)-1]))
	}
	id.Claims = claims

	ts := first(c.Time, f.Defaults.Time)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ts != "" {
		var err error
		now, err = time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return req, id, input.Context{}, fmt.Errorf("time %q: want RFC 3339, e.g. 2026-11-24T10:00:00Z", ts)
		}
	}
	spent, err := microUSD(c.SpentUSDToday)
	if err != nil {
		return req, id, input.Context{}, err
	}
	return req, id, input.Context{Region: region, Time: now.UTC(), SpentMicroUSD: spent}, nil
}

// actClaim nests the actors per RFC 8693: the current actor outermost.
func actClaim(actors []string) engine.Value {
	var inner engine.Value
	for i := len(actors) - 1; i >= 0; i-- {
		o := engine.NewObject(2)
		o.Set("sub", engine.String(actors[i]))
		if inner != nil {
			o.Set("act", inner)
		}
		inner = o
	}
	return inner
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// microUSD converts an exact decimal dollar amount to integer micro-dollars.
func microUSD(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() < 0 {
		return 0, fmt.Errorf("spent_usd_today %q: want a non-negative decimal", s)
	}
	r.Mul(r, big.NewRat(1_000_000, 1))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, fmt.Errorf("spent_usd_today %q: more than 6 decimal places or out of range", s)
	}
	return r.Num().Int64(), nil
}

func runCase(ctx context.Context, f *File, c *Case, t Target) (Result, error) {
	req, id, nctx, err := ProxyView(f, c, t.Tenant)
	if err != nil {
		return Result{}, err
	}
	out, err := t.Decider.Decide(ctx, req, id, nctx)
	if err != nil {
		return Result{}, err
	}
	res := Result{Case: c, Outcome: out}
	d := out.Decision
	e := c.Expect
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	if string(d.Action) != e.Action {
		fail("action: want %s, got %s", e.Action, d.Action)
	}
	if e.HasReasons && !slices.Equal(e.Reasons, d.Reasons) {
		fail("reasons: want %q, got %q", e.Reasons, d.Reasons)
	}
	for _, want := range e.ReasonsInclude {
		if !anyContains(d.Reasons, want) {
			fail("reasons: want one containing %q, got %q", want, d.Reasons)
		}
	}
	for _, bad := range e.ReasonsExclude {
		if anyContains(d.Reasons, bad) {
			fail("reasons: want none containing %q, got %q", bad, d.Reasons)
		}
	}
	if e.HasShadowAction && string(d.ShadowAction) != e.ShadowAction {
		fail("shadow_action: want %s, got %q", e.ShadowAction, d.ShadowAction)
	}
	for _, want := range e.ShadowReasonsInclude {
		if !anyContains(d.ShadowReasons, want) {
			fail("shadow_reasons: want one containing %q, got %q", want, d.ShadowReasons)
		}
	}
	for _, want := range e.RuleIDsInclude {
		if !slices.Contains(d.RuleIDs, want) {
			fail("rule_ids: want %q, got %q", want, d.RuleIDs)
		}
	}
	if e.ForwardedJSON != nil {
		if eq, err := jsonEqual(e.ForwardedJSON, out.Body); err != nil || !eq {
			fail("forwarded body: want %s, got %s", e.ForwardedJSON, out.Body)
		}
	}
	return res, nil
}

func anyContains(list []string, sub string) bool {
	sub = strings.ToLower(sub)
	for _, s := range list {
		if strings.Contains(strings.ToLower(s), sub) {
			return true
		}
	}
	return false
}

// jsonEqual compares two JSON documents by value; numbers compare by their
// exact text after normalisation by the engine's value model.
func jsonEqual(a, b []byte) (bool, error) {
	va, err := engine.FromJSON(a)
	if err != nil {
		return false, err
	}
	vb, err := engine.FromJSON(bytes.TrimSpace(b))
	if err != nil {
		return false, err
	}
	return engine.Equal(va, vb), nil
}

// Summary renders failures for people: the case, where it is, what was
// expected and what happened, with the reasons.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "FAIL %s:%d: %s\n", r.Case.File, r.Case.Line, r.Case.Name)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "    %s\n", f)
	}
	d := r.Outcome.Decision
	js, _ := json.Marshal(d.Reasons)
	fmt.Fprintf(&b, "    decision: %s reasons=%s", d.Action, js)
	if d.ShadowAction != "" {
		sj, _ := json.Marshal(d.ShadowReasons)
		fmt.Fprintf(&b, " shadow=%s shadow_reasons=%s", d.ShadowAction, sj)
	}
	b.WriteByte('\n')
	return b.String()
}
