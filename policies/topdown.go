package policies

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/aegis-mesh/aegis/dlp"
)

// RedactFunction registers aegis.dlp.redact with OPA's Go evaluator
// (topdown), implemented by package dlp, so that generated policies can be
// evaluated by OPA too: the reference the engine is tested against.
//
// # Notes
//
// Detectors are compiled on every call. That is fine for tests and the CLI;
// the engine compiles constant specs once per bundle load.
func RedactFunction() func(*rego.Rego) {
	return rego.Function2(&rego.Function{Name: RedactBuiltinName, Decl: RedactBuiltin().Decl},
		func(_ rego.BuiltinContext, text, specs *ast.Term) (*ast.Term, error) {
			s, ok := text.Value.(ast.String)
			if !ok {
				return nil, fmt.Errorf("%s: text must be a string", RedactBuiltinName)
			}
			raw, err := ast.JSON(specs.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: specs: %w", RedactBuiltinName, err)
			}
			sp, err := dlp.SpecsFromGo(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", RedactBuiltinName, err)
			}
			set, err := dlp.Compile(sp)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", RedactBuiltinName, err)
			}
			out, hits := set.Redact(string(s))
			hitTerms := make([]*ast.Term, len(hits))
			for i, h := range hits {
				hitTerms[i] = ast.StringTerm(h)
			}
			return ast.ObjectTerm(
				ast.Item(ast.StringTerm("hits"), ast.ArrayTerm(hitTerms...)),
				ast.Item(ast.StringTerm("text"), ast.StringTerm(out)),
			), nil
		})
}

// Topdown prepares OPA's own evaluator over the compiled Rego and data for
// one entrypoint ("aegis/decision" or "aegis/mcp_visible_tools"). It is the
// reference implementation for differential tests against the engine.
func (c *Compiled) Topdown(ctx context.Context, entrypoint string) (rego.PreparedEvalQuery, error) {
	g := &generated{rego: c.Rego, data: c.Data}
	doc, err := decodeData(c.Data)
	if err != nil {
		return rego.PreparedEvalQuery{}, err
	}
	g.doc = doc
	opts := []func(*rego.Rego){
		rego.Query("data." + dotted(entrypoint)),
		rego.Store(inmem.NewFromObject(g.doc)),
		rego.SetRegoVersion(ast.RegoV1),
		RedactFunction(),
	}
	for _, f := range c.Rego {
		opts = append(opts, rego.Module(f.Path, string(f.Data)))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return rego.PreparedEvalQuery{}, fmt.Errorf("prepare topdown for %s: %w", entrypoint, err)
	}
	return pq, nil
}

func dotted(entrypoint string) string {
	b := []byte(entrypoint)
	for i, c := range b {
		if c == '/' {
			b[i] = '.'
		}
	}
	return string(b)
}
