// Package decide turns a request into a decision: it builds the input
// document(s) with package input, evaluates the compiled policy with package
// engine, combines the decisions of a JSON-RPC batch, and rewrites the body
// when the policy sanitizes it. The CLI, the policy test runner, the filter
// and the edge all decide through this package, so a policy behaves the same
// everywhere.
package decide

import (
	"fmt"
	"slices"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/internal/errs"
)

// Action is what the data plane does with a call.
type Action string

// The four actions, in increasing strictness.
const (
	Allow          Action = "allow"
	Sanitize       Action = "sanitize"
	ApprovalNeeded Action = "approval_needed"
	Deny           Action = "deny"
)

// rank orders actions by precedence: deny > approval_needed > sanitize > allow.
// Unknown actions rank above deny so that they can never loosen a decision.
func (a Action) rank() int {
	switch a {
	case "":
		return -1
	case Allow:
		return 0
	case Sanitize:
		return 1
	case ApprovalNeeded:
		return 2
	case Deny:
		return 3
	}
	return 4
}

// Valid reports whether a is one of the four actions.
func (a Action) Valid() bool { r := a.rank(); return r >= 0 && r <= 3 }

// Stricter returns the stricter of a and b.
func Stricter(a, b Action) Action {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Tool is the tool the policy matched.
type Tool struct {
	Name   string `json:"name"`
	Kind   string `json:"kind,omitempty"`
	Risk   string `json:"risk,omitempty"`
	Server string `json:"server,omitempty"`
}

// Redaction is a new value for one parameter, computed by the policy's DLP
// detectors. Path is relative to the call's parameters.
type Redaction struct {
	Path      []string `json:"path"`
	Value     string   `json:"value"`
	Detectors []string `json:"detectors,omitempty"`
}

// Approval says who must approve a call and how long the request stays open.
type Approval struct {
	Approvers  []string `json:"approvers"`
	ExpiresInS int64    `json:"expires_in_s,omitempty"`
}

// Rate is a per-minute limit the data plane enforces for Key.
type Rate struct {
	Key       string `json:"key"`
	PerMinute int64  `json:"per_minute"`
}

// Obligations are what the data plane must do when the call goes through.
type Obligations struct {
	CostMicroUSD int64 `json:"cost_micro_usd,omitempty"`
	Rate         *Rate `json:"rate,omitempty"`
}

// Decision is the policy's answer for one call (see docs/policy-reference.md,
// "The decision").
type Decision struct {
	Action        Action      `json:"action"`
	Reasons       []string    `json:"reasons"`
	RuleIDs       []string    `json:"rule_ids,omitempty"`
	ShadowAction  Action      `json:"shadow_action,omitempty"`
	ShadowReasons []string    `json:"shadow_reasons,omitempty"`
	Tool          *Tool       `json:"tool,omitempty"`
	Redactions    []Redaction `json:"redactions,omitempty"`
	Approval      *Approval   `json:"approval,omitempty"`
	Obligations   Obligations `json:"obligations"`
	Fail          string      `json:"fail,omitempty"`
	Mode          string      `json:"mode,omitempty"`
}

// FromValue reads the decision object a compiled policy returns. Anything
// malformed is an error: a caller must deny rather than guess.
func FromValue(v engine.Value) (Decision, error) {
	var d Decision
	obj, ok := v.(*engine.Object)
	if !ok {
		return d, errs.Errorf("decision: want an object, got %s", engine.TypeName(v))
	}
	r := reader{obj: obj}
	d.Action = Action(r.str("action", true))
	if r.err == nil && !d.Action.Valid() {
		r.fail("action: unknown action %q", d.Action)
	}
	d.Reasons = r.strs(obj, "reasons")
	d.RuleIDs = r.strs(obj, "rule_ids")
	d.ShadowAction = Action(r.str("shadow_action", false))
	if r.err == nil && d.ShadowAction != "" && !d.ShadowAction.Valid() {
		r.fail("shadow_action: unknown action %q", d.ShadowAction)
	}
	d.ShadowReasons = r.strs(obj, "shadow_reasons")
	d.Fail = r.str("fail", false)
	d.Mode = r.str("mode", false)
	if t, ok := r.object(obj, "tool"); ok {
		tr := reader{obj: t, prefix: "tool."}
		d.Tool = &Tool{Name: tr.str("name", true), Kind: tr.str("kind", false), Risk: tr.str("risk", false), Server: tr.str("server", false)}
		r.take(tr.err)
	}
	if a, ok := r.object(obj, "approval"); ok {
		ar := reader{obj: a, prefix: "approval."}
		d.Approval = &Approval{Approvers: ar.strs(a, "approvers"), ExpiresInS: ar.int("expires_in_s")}
		r.take(ar.err)
	}
	if o, ok := r.object(obj, "obligations"); ok {
		or := reader{obj: o, prefix: "obligations."}
		d.Obligations.CostMicroUSD = or.int("cost_micro_usd")
		if rt, ok := or.object(o, "rate"); ok {
			rr := reader{obj: rt, prefix: "obligations.rate."}
			d.Obligations.Rate = &Rate{Key: rr.str("key", true), PerMinute: rr.int("per_minute")}
			or.take(rr.err)
		}
		r.take(or.err)
	}
	if rv, ok := obj.Get("redactions"); ok {
		d.Redactions = r.redactions(rv)
	}
	if d.Reasons == nil {
		d.Reasons = []string{} // "reasons": [] in JSON, never null
	}
	return d, r.err
}

// reader extracts typed fields and keeps the first error, so FromValue reads
// straight through without an if after every field.
type reader struct {
	obj    *engine.Object
	prefix string
	err    error
}

//go:noinline
func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = errs.Errorf("decision: "+r.prefix+format, args...)
	}
}

func (r *reader) take(err error) {
	if r.err == nil && err != nil {
		r.err = err
	}
}

func (r *reader) str(key string, required bool) string {
	v, ok := r.obj.Get(key)
	if !ok {
		if required {
			r.fail("%s: missing", key)
		}
		return ""
	}
	s, ok := engine.AsString(v)
	if !ok {
		r.fail("%s: want a string, got %s", key, engine.TypeName(v))
	}
	return s
}

func (r *reader) int(key string) int64 {
	v, ok := r.obj.Get(key)
	if !ok {
		return 0
	}
	n, ok := engine.AsInt64(v)
	if !ok {
		r.fail("%s: want an integer, got %s", key, engine.TypeName(v))
	}
	return n
}

func (r *reader) object(obj *engine.Object, key string) (*engine.Object, bool) {
	v, ok := obj.Get(key)
	if !ok {
		return nil, false
	}
	o, ok := v.(*engine.Object)
	if !ok {
		r.fail("%s: want an object, got %s", key, engine.TypeName(v))
	}
	return o, ok
}

// strs reads an array or set of strings. Sets come out in OPA's order, which
// for strings is sorted.
func (r *reader) strs(obj *engine.Object, key string) []string {
	v, ok := obj.Get(key)
	if !ok {
		return nil
	}
	out, err := stringList(v)
	if err != nil {
		r.fail("%s: %v", key, err)
	}
	return out
}

func stringList(v engine.Value) ([]string, error) {
	var out []string
	var err error
	add := func(e engine.Value) bool {
		s, ok := engine.AsString(e)
		if !ok {
			err = errs.Errorf("want strings, got a %s", engine.TypeName(e))
			return false
		}
		out = append(out, s)
		return true
	}
	switch c := v.(type) {
	case *engine.Array:
		for i := 0; i < c.Len() && add(c.Index(i)); i++ {
		}
	case *engine.Set:
		c.Range(add)
	default:
		return nil, errs.Errorf("want an array of strings, got %s", engine.TypeName(v))
	}
	return out, err
}

func (r *reader) redactions(v engine.Value) []Redaction {
	var items []engine.Value
	switch c := v.(type) {
	case *engine.Array:
		for i := 0; i < c.Len(); i++ {
			items = append(items, c.Index(i))
		}
	case *engine.Set:
		c.Range(func(e engine.Value) bool { items = append(items, e); return true })
	default:
		r.fail("redactions: want an array, got %s", engine.TypeName(v))
		return nil
	}
	out := make([]Redaction, 0, len(items))
	for i, it := range items {
		o, ok := it.(*engine.Object)
		if !ok {
			r.fail("redactions[%d]: want an object, got %s", i, engine.TypeName(it))
			return nil
		}
		rr := reader{obj: o, prefix: fmt.Sprintf("redactions[%d].", i)}
		red := Redaction{Value: rr.str("value", true), Detectors: rr.strs(o, "detectors")}
		if p, ok := o.Get("path"); ok {
			path, err := stringList(p)
			if err != nil {
				rr.fail("path: %v", err)
			}
			red.Path = path
		}
		if len(red.Path) == 0 {
			rr.fail("path: missing or empty")
		}
		r.take(rr.err)
		out = append(out, red)
	}
	return out
}

// Combine folds the decisions of a JSON-RPC batch into one: the strictest
// action wins, every reason is kept (prefixed with the element's label), and
// obligations add up.
func Combine(labels []string, ds []Decision) Decision {
	if len(ds) == 1 {
		return ds[0]
	}
	out := Decision{Action: Allow, Reasons: []string{}}
	for i, d := range ds {
		out.Action = Stricter(out.Action, d.Action)
		if d.ShadowAction != "" {
			out.ShadowAction = Stricter(out.ShadowAction, d.ShadowAction)
		}
		for _, r := range d.Reasons {
			out.Reasons = append(out.Reasons, labels[i]+": "+r)
		}
		for _, r := range d.ShadowReasons {
			out.ShadowReasons = append(out.ShadowReasons, labels[i]+": "+r)
		}
		out.RuleIDs = append(out.RuleIDs, d.RuleIDs...)
		out.Obligations.CostMicroUSD += d.Obligations.CostMicroUSD
		if out.Obligations.Rate == nil {
			out.Obligations.Rate = d.Obligations.Rate
		}
		if d.Approval != nil && out.Approval == nil {
			out.Approval = d.Approval
		}
		if d.Fail == "closed" || out.Fail == "" {
			out.Fail = d.Fail
		}
		if out.Mode == "" {
			out.Mode = d.Mode
		}
	}
	slices.Sort(out.RuleIDs)
	out.RuleIDs = slices.Compact(out.RuleIDs)
	return out
}
