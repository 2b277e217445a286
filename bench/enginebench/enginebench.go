// Package enginebench measures one decision on three evaluators of the
// same compiled policy, in one process and one run: our plan engine, OPA's
// Go evaluator (a prepared query) and OPA's wasm module under wazero. All
// three see the same generated inputs (difftest's mix of allowed, denied,
// sanitized and approval-bound calls), and every input's three decisions
// are compared before timing starts: a disagreement is a bug, and a
// latency number for an evaluator that decides differently means nothing.
package enginebench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/aegis-mesh/aegis/bench/gen"
	"github.com/aegis-mesh/aegis/bench/hist"
	"github.com/aegis-mesh/aegis/bench/internal/opawasm"
	"github.com/aegis-mesh/aegis/bench/machine"
	"github.com/aegis-mesh/aegis/bench/measure"
	"github.com/aegis-mesh/aegis/bench/report"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/policies"
	"github.com/aegis-mesh/aegis/policies/difftest"
)

// Entrypoint is the decision every evaluator computes.
const Entrypoint = "aegis/decision"

// Series names, also the JSON keys.
const (
	Aegis   = "aegis"
	OPA     = "opa"
	OPAWasm = "opa_wasm"
)

// Config is one engine benchmark.
type Config struct {
	Plan measure.Plan
	// Inputs is how many distinct generated inputs the timed calls cycle
	// through.
	Inputs int
	Seed   uint64
	// PolicyName labels the policy in the report (its path).
	PolicyName string
	// Scaling lists generated policy-set sizes (agents = tools = n) to
	// measure p99 on, after the main policy, with Plan.Lighter(); empty
	// skips scaling.
	Scaling []int
	// ScalingWasm includes OPA's wasm in the scaling runs (compiling wasm
	// for 1,000 tools takes about a minute).
	ScalingWasm bool
	// Progress, if set, gets one line per step (long runs on a busy
	// machine should show they are alive).
	Progress io.Writer
}

func (c Config) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "bench engine: "+format+"\n", args...)
	}
}

// Validate checks the counts.
func (c Config) Validate() error {
	var errs []error
	if err := c.Plan.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Inputs < 1 {
		errs = append(errs, fmt.Errorf("input count %d: need at least 1", c.Inputs))
	}
	for _, n := range c.Scaling {
		if n < 1 {
			errs = append(errs, fmt.Errorf("scaling size %d: need at least 1", n))
		}
	}
	return errors.Join(errs...)
}

// Result is the report plus the merged histograms, for plots.
type Result struct {
	Report *report.Report
	Curves map[string]*hist.Histogram
	// Disagreements is the number of inputs on which the evaluators did
	// not all decide the same (0 unless something is broken).
	Disagreements int
}

// evaluators is one compiled policy loaded three ways, plus its inputs in
// the form each evaluator takes.
type evaluators struct {
	pol  *engine.Policy
	pq   rego.PreparedEvalQuery
	wasm *opawasm.Instance
	ep   int32

	docs  []engine.Value
	asts  []ast.Value
	jsons [][]byte
}

func (e *evaluators) close(ctx context.Context) {
	if e.wasm != nil {
		_ = e.wasm.Close(ctx)
	}
}

// load compiles ps and prepares all three evaluators and n inputs.
func load(ctx context.Context, ps *policies.PolicySet, n int, seed uint64, withWasm bool) (*evaluators, error) {
	c, err := policies.Compile(ctx, ps, policies.Options{SkipWasm: !withWasm})
	if err != nil {
		return nil, fmt.Errorf("compiling %s: %w", ps.Metadata.Name, err)
	}
	data, err := engine.FromJSON(c.Data)
	if err != nil {
		return nil, fmt.Errorf("data.json: %w", err)
	}
	e := &evaluators{}
	if e.pol, err = engine.Load(c.Plan, data); err != nil {
		return nil, fmt.Errorf("loading the plan: %w", err)
	}
	if e.pq, err = c.Topdown(ctx, Entrypoint); err != nil {
		return nil, err
	}
	if withWasm {
		if e.wasm, err = opawasm.New(ctx, c.Wasm, c.Data); err != nil {
			return nil, fmt.Errorf("OPA wasm: %w", err)
		}
		var ok bool
		if e.ep, ok = e.wasm.Entrypoint(Entrypoint); !ok {
			e.close(ctx)
			return nil, fmt.Errorf("OPA wasm: no %s entrypoint", Entrypoint)
		}
	}
	g := difftest.New(ps, seed)
	for range n {
		doc := g.Next()
		raw, err := engine.ToJSON(doc)
		if err != nil {
			e.close(ctx)
			return nil, fmt.Errorf("input to JSON: %w", err)
		}
		// OPA gets its input already parsed (ast.Value), as a server that
		// keeps inputs in OPA's form would: its numbers are not charged
		// with a conversion ours does not pay either.
		av, err := ast.ValueFromReader(bytesReader(raw))
		if err != nil {
			e.close(ctx)
			return nil, fmt.Errorf("input to OPA value: %w", err)
		}
		e.docs = append(e.docs, doc)
		e.asts = append(e.asts, av)
		e.jsons = append(e.jsons, raw)
	}
	return e, nil
}

func (e *evaluators) evalAegis(ctx context.Context, i int) (engine.Value, error) {
	v, ok, err := e.pol.EvalOne(ctx, Entrypoint, e.docs[i%len(e.docs)])
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("aegis: decision undefined")
	}
	return v, nil
}

func (e *evaluators) evalOPA(ctx context.Context, i int) (rego.ResultSet, error) {
	rs, err := e.pq.Eval(ctx, rego.EvalParsedInput(e.asts[i%len(e.asts)]))
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("opa: %d results", len(rs))
	}
	return rs, nil
}

func (e *evaluators) evalWasm(ctx context.Context, i int) ([]byte, error) {
	return e.wasm.Eval(ctx, e.ep, e.jsons[i%len(e.jsons)])
}

// check evaluates every input on every evaluator and compares decisions.
// It returns the number of inputs that disagree and the action mix.
func (e *evaluators) check(ctx context.Context) (int, map[string]int, []string, error) {
	bad := 0
	mix := map[string]int{}
	var examples []string
	for i := range e.docs {
		a, err := e.evalAegis(ctx, i)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("input %d: %w", i, err)
		}
		rs, err := e.evalOPA(ctx, i)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("input %d: opa: %w", i, err)
		}
		o, err := toValue(rs[0].Expressions[0].Value)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("input %d: opa result: %w", i, err)
		}
		agree := engine.Equal(a, o)
		if e.wasm != nil {
			raw, err := e.evalWasm(ctx, i)
			if err != nil {
				return 0, nil, nil, fmt.Errorf("input %d: opa wasm: %w", i, err)
			}
			w, err := wasmDecision(raw)
			if err != nil {
				return 0, nil, nil, fmt.Errorf("input %d: opa wasm result: %w", i, err)
			}
			agree = agree && engine.Equal(a, w)
		}
		if !agree {
			bad++
			if len(examples) < 3 {
				examples = append(examples, fmt.Sprintf("input %d: %s", i, e.jsons[i]))
			}
		}
		if obj, ok := a.(*engine.Object); ok {
			if act, ok := obj.Get("action"); ok {
				if s, ok := engine.ToGo(act).(string); ok {
					mix[s]++
				}
			}
		}
	}
	return bad, mix, examples, nil
}

func toValue(x any) (engine.Value, error) {
	raw, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	return engine.FromJSON(raw)
}

// wasmDecision reads the decision out of opa_eval's result set.
func wasmDecision(raw []byte) (engine.Value, error) {
	var set []struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	if len(set) != 1 {
		return nil, fmt.Errorf("%d results", len(set))
	}
	return engine.FromJSON(set[0].Result)
}

// measureAll times each evaluator for every run; runs interleave the
// evaluators so that a slow phase of a shared machine hits all of them.
func (e *evaluators) measureAll(ctx context.Context, plan measure.Plan, cfg Config, label string) ([]measure.Series, error) {
	series := []measure.Series{{Name: Aegis}, {Name: OPA}}
	ops := []measure.Op{
		func(ctx context.Context, i int) error { _, err := e.evalAegis(ctx, i); return err },
		func(ctx context.Context, i int) error { _, err := e.evalOPA(ctx, i); return err },
	}
	if e.wasm != nil {
		series = append(series, measure.Series{Name: OPAWasm})
		ops = append(ops, func(ctx context.Context, i int) error { _, err := e.evalWasm(ctx, i); return err })
	}
	for run := range plan.Runs {
		for k, op := range ops {
			cfg.progress("%s: run %d/%d, %s, %d requests", label, run+1, plan.Runs, series[k].Name, plan.Requests)
			h, err := measure.Time(ctx, plan.Warmup, plan.Requests, op)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", series[k].Name, err)
			}
			series[k].Runs = append(series[k].Runs, h)
		}
	}
	return series, nil
}

// Run measures ps (and the scaling sizes, if any) and builds the report.
func Run(ctx context.Context, ps *policies.PolicySet, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &report.Report{Scenario: "engine", Machine: machine.Current(), Plan: cfg.Plan,
		Params: map[string]any{"policy": cfg.PolicyName, "inputs": cfg.Inputs, "seed": cfg.Seed, "entrypoint": Entrypoint}}
	r.Started = now()
	cfg.progress("compiling %s (plan and wasm)", cfg.PolicyName)
	e, err := load(ctx, ps, cfg.Inputs, cfg.Seed, true)
	if err != nil {
		return nil, err
	}
	defer e.close(ctx)
	cfg.progress("comparing decisions on %d inputs", len(e.docs))
	bad, mix, examples, err := e.check(ctx)
	if err != nil {
		return nil, err
	}
	series, err := e.measureAll(ctx, cfg.Plan, cfg, cfg.PolicyName)
	if err != nil {
		return nil, err
	}
	res := &Result{Report: r, Curves: map[string]*hist.Histogram{}, Disagreements: bad}
	for _, s := range series {
		r.Series = append(r.Series, measure.Summarize(s))
		res.Curves[s.Name] = s.Merged()
	}
	byName := func(name string) measure.Summary {
		for _, s := range r.Series {
			if s.Name == name {
				return s
			}
		}
		return measure.Summary{}
	}
	r.Set("p99_ratio_vs_opa", report.Ratio(byName(OPA).P99US, byName(Aegis).P99US))
	r.Set("p50_ratio_vs_opa", report.Ratio(byName(OPA).P50US, byName(Aegis).P50US))
	r.Set("p99_ratio_vs_opa_wasm", report.Ratio(byName(OPAWasm).P99US, byName(Aegis).P99US))
	r.Set("disagreements", bad)
	r.Set("decisions", mix)
	for _, ex := range examples {
		r.Notes = append(r.Notes, "disagreement on "+ex)
	}
	r.Notes = append(r.Notes,
		"aegis: engine.Policy.EvalOne on an engine.Value input; opa: rego.PreparedEvalQuery.Eval on a pre-parsed ast.Value input; "+
			"opa_wasm: opa_eval on JSON input text under wazero (OPA's own SDK path), host builtins through topdown")
	if len(cfg.Scaling) > 0 {
		scaling, err := runScaling(ctx, cfg)
		if err != nil {
			return nil, err
		}
		r.Set("scaling", scaling)
		for _, p := range scaling {
			res.Disagreements += p.Disagreements
		}
		r.Set("disagreements", res.Disagreements)
	}
	return res, nil
}

// ScalingPoint is p99 (µs, median of runs) per evaluator at one size.
type ScalingPoint struct {
	Agents        int     `json:"agents"`
	Tools         int     `json:"tools"`
	AegisP50US    float64 `json:"aegis_p50_us"`
	AegisP99US    float64 `json:"aegis_p99_us"`
	OPAP99US      float64 `json:"opa_p99_us"`
	OPAWasmP99US  float64 `json:"opa_wasm_p99_us,omitempty"`
	Disagreements int     `json:"disagreements"`
}

// scalingInputs caps the distinct inputs per scaling size: each is first
// evaluated by every evaluator, which for OPA on 1,000 tools is slow.
const scalingInputs = 256

func runScaling(ctx context.Context, cfg Config) (map[string]ScalingPoint, error) {
	out := map[string]ScalingPoint{}
	for _, n := range cfg.Scaling {
		src, err := gen.PolicySet(n)
		if err != nil {
			return nil, err
		}
		ps, errs := policies.Load(fmt.Sprintf("generated-%d.yaml", n), src)
		if len(errs) > 0 {
			return nil, fmt.Errorf("generated set of %d: %w", n, errs)
		}
		cfg.progress("scaling %d: compiling", n)
		e, err := load(ctx, ps, min(cfg.Inputs, scalingInputs), cfg.Seed, cfg.ScalingWasm)
		if err != nil {
			return nil, fmt.Errorf("scaling %d: %w", n, err)
		}
		bad, _, _, err := e.check(ctx)
		if err != nil {
			e.close(ctx)
			return nil, fmt.Errorf("scaling %d: %w", n, err)
		}
		series, err := e.measureAll(ctx, cfg.Plan.Lighter(), cfg, "scaling "+strconv.Itoa(n))
		e.close(ctx)
		if err != nil {
			return nil, fmt.Errorf("scaling %d: %w", n, err)
		}
		p := ScalingPoint{Agents: n, Tools: n, Disagreements: bad}
		for _, s := range series {
			sum := measure.Summarize(s)
			switch s.Name {
			case Aegis:
				p.AegisP50US, p.AegisP99US = sum.P50US, sum.P99US
			case OPA:
				p.OPAP99US = sum.P99US
			case OPAWasm:
				p.OPAWasmP99US = sum.P99US
			}
		}
		out[strconv.Itoa(n)] = p
	}
	return out, nil
}
