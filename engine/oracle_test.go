package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// outcome is what one evaluation produced, in a form both evaluators can
// be compared on: the JSON text of the result, or undefined, or an error
// code.
type outcome struct {
	defined bool
	result  string
	errCode string
}

func (o outcome) String() string {
	switch {
	case o.errCode != "":
		return "error " + o.errCode
	case !o.defined:
		return "undefined"
	}
	return o.result
}

// opaOracle is OPA's topdown evaluator prepared for one entrypoint.
type opaOracle struct {
	pq rego.PreparedEvalQuery
}

func newOPAOracle(t testing.TB, modules map[string]string, data map[string]any, entrypoint string) *opaOracle {
	t.Helper()
	opts := []func(*rego.Rego){
		rego.Query("data." + strings.ReplaceAll(entrypoint, "/", ".")),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Store(inmem.NewFromObject(data)),
	}
	for name, src := range modules {
		opts = append(opts, rego.Module(name, src))
	}
	pq, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("OPA prepare: %v", err)
	}
	return &opaOracle{pq: pq}
}

func (o *opaOracle) eval(ctx context.Context, input any) outcome {
	var opts []rego.EvalOption
	if input != nil {
		opts = append(opts, rego.EvalInput(input))
	}
	rs, err := o.pq.Eval(ctx, opts...)
	if err != nil {
		var te *topdown.Error
		if errors.As(err, &te) {
			return outcome{errCode: te.Code}
		}
		return outcome{errCode: "opa: " + err.Error()}
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return outcome{}
	}
	b, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		return outcome{errCode: "marshal: " + err.Error()}
	}
	return outcome{defined: true, result: string(b)}
}

func engineOutcome(ctx context.Context, p *Policy, entrypoint string, input Value) outcome {
	v, ok, err := p.EvalOne(ctx, entrypoint, input)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return outcome{errCode: e.Code}
		}
		return outcome{errCode: err.Error()}
	}
	if !ok {
		return outcome{}
	}
	b, err := ToJSON(v)
	if err != nil {
		return outcome{errCode: "marshal: " + err.Error()}
	}
	return outcome{defined: true, result: string(b)}
}

// normalizeJSON re-encodes JSON through OPA's own value model so that both
// sides print numbers and key order identically.
func normalizeJSON(t testing.TB, s string) string {
	t.Helper()
	v, err := FromJSON([]byte(s))
	if err != nil {
		t.Fatalf("normalizing %s: %v", s, err)
	}
	b, _ := ToJSON(v)
	return string(b)
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
