package decide

import (
	"context"
	"errors"
	"strconv"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input"
	"github.com/aegis-mesh/aegis/internal/errs"
)

// Entrypoint is the plan every compiled Aegis policy exposes.
const Entrypoint = "aegis/decision"

// Evaluator evaluates a compiled policy's entrypoint for one input
// document, returning (nil, false, nil) when the result is undefined.
// *engine.Policy is the production implementation; tests plug in OPA's own
// evaluator to run the same tables against both.
type Evaluator interface {
	EvalOne(ctx context.Context, entrypoint string, input engine.Value) (engine.Value, bool, error)
}

var _ Evaluator = (*engine.Policy)(nil)

// Decider evaluates one compiled policy. It is safe for concurrent use when
// its Evaluator is.
type Decider struct {
	policy Evaluator
	opts   input.Options
}

// New returns a Decider for a loaded policy. opts tells the input builder
// the policy's MCP endpoints and body limits.
func New(p Evaluator, opts input.Options) *Decider {
	return &Decider{policy: p, opts: opts}
}

// Call is the outcome for one decision unit: the whole request for plain
// HTTP, one element of a JSON-RPC batch for MCP.
type Call struct {
	Label    string // "request", or "rpc[2] id=7" for batch elements
	MCP      *input.MCPCall
	Input    engine.Value
	Decision Decision
}

// Outcome is the full answer for one request.
type Outcome struct {
	// Decision is the combined decision: the strictest of Calls, or a deny
	// built from Violations.
	Decision   Decision
	Calls      []Call
	Violations []input.Violation
	// Body is what to forward upstream: the original body, or the rewritten
	// one when Decision.Action is sanitize.
	Body []byte
}

// Decide builds the input documents for a request, evaluates each, and
// combines the results. Input the builder cannot check unambiguously is
// denied with the builder's reasons; the policy is not consulted, because
// nothing it could say would make an ambiguous request safe.
func (d *Decider) Decide(ctx context.Context, req input.Request, id input.Identity, c input.Context) (Outcome, error) {
	res, err := input.Build(req, id, c, d.opts)
	if err != nil {
		return Outcome{}, errs.Errorf("building input: %w", err)
	}
	out := Outcome{Body: req.Body, Violations: res.Violations}
	if len(res.Violations) > 0 {
		out.Decision = violationDecision(res.Violations)
		return out, nil
	}
	labels := make([]string, len(res.Calls))
	decisions := make([]Decision, len(res.Calls))
	for i, call := range res.Calls {
		dec, err := d.Eval(ctx, call.Input)
		if err != nil {
			return Outcome{}, err
		}
		labels[i] = label(call.MCP, res.Batch)
		decisions[i] = dec
		out.Calls = append(out.Calls, Call{Label: labels[i], MCP: call.MCP, Input: call.Input, Decision: dec})
	}
	if len(decisions) == 0 {
		return Outcome{}, errors.New("input builder returned neither calls nor violations")
	}
	out.Decision = Combine(labels, decisions)
	if out.Decision.Action == Sanitize {
		body, err := Rewrite(res.Body, res.Batch, out.Calls)
		if err != nil {
			// The policy asked for redaction and we cannot apply it: the
			// unredacted body must not go through.
			out.Decision = Decision{Action: Deny, Reasons: []string{"sanitize: " + err.Error()}, RuleIDs: []string{"aegis.sanitize_failed"}}
			return out, nil
		}
		out.Body = body
	}
	return out, nil
}

// Eval evaluates the policy for one input document.
func (d *Decider) Eval(ctx context.Context, doc engine.Value) (Decision, error) {
	v, ok, err := d.policy.EvalOne(ctx, Entrypoint, doc)
	if err != nil {
		return Decision{}, errs.Errorf("evaluating %s: %w", Entrypoint, err)
	}
	if !ok {
		return Decision{}, errs.Errorf("evaluating %s: the policy returned no decision", Entrypoint)
	}
	return FromValue(v)
}

func label(m *input.MCPCall, batch bool) string {
	if m == nil || !batch {
		return "request"
	}
	l := "rpc[" + strconv.Itoa(m.Index) + "]"
	if len(m.ID) > 0 {
		l += " id=" + string(m.ID)
	}
	return l
}

func violationDecision(vs []input.Violation) Decision {
	d := Decision{Action: Deny}
	for _, v := range vs {
		d.Reasons = append(d.Reasons, v.Error())
		d.RuleIDs = append(d.RuleIDs, "input."+v.Code)
	}
	return d
}
