package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/aegis-mesh/aegis/bench/edgebench"
	"github.com/aegis-mesh/aegis/bench/enginebench"
	"github.com/aegis-mesh/aegis/bench/filterbench"
	"github.com/aegis-mesh/aegis/bench/hist"
	"github.com/aegis-mesh/aegis/bench/measure"
	"github.com/aegis-mesh/aegis/bench/plot"
	"github.com/aegis-mesh/aegis/bench/report"
	"github.com/aegis-mesh/aegis/policies"
)

// benchFlags are the flags every bench scenario shares.
type benchFlags struct {
	plan    measure.Plan
	json    bool
	plot    bool
	out     string
	scaling string
}

func (b *benchFlags) register(fs *flag.FlagSet, plan measure.Plan) {
	b.plan = plan
	fs.IntVar(&b.plan.Runs, "runs", plan.Runs, "repeated runs (percentiles are the median across runs)")
	fs.IntVar(&b.plan.Requests, "requests", plan.Requests, "timed operations per run")
	fs.IntVar(&b.plan.Warmup, "warmup", plan.Warmup, "untimed operations before each run")
	fs.BoolVar(&b.json, "json", false, "print one JSON object as the last line")
	fs.BoolVar(&b.plot, "plot", false, "also write a PNG percentile plot next to the JSON result")
	fs.StringVar(&b.out, "out", "bench/results", "directory for the JSON (and PNG) results; empty: write none")
}

// sizes parses the --scaling list ("10,100,1000").
func (b *benchFlags) sizes() ([]int, error) {
	if b.scaling == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(b.scaling, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--scaling: %q is not a positive size", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// finish prints the table (and JSON line), writes the result files and
// returns the exit code: failed is true when the run found a problem
// (evaluators disagreeing, requests answered wrongly).
func (b *benchFlags) finish(r *report.Report, curves []plot.Series, failed bool, io stdio) int {
	if b.out != "" {
		path, err := r.Save(b.out)
		if err != nil {
			fmt.Fprintf(io.err, "aegis bench %s: %v\n", r.Scenario, err)
			return exitFailure
		}
		r.Notes = append(r.Notes, "result written to "+path)
		if b.plot {
			png := strings.TrimSuffix(path, ".json") + ".png"
			if err := plot.WriteFile(png, "aegis bench "+r.Scenario+": latency by percentile", curves); err != nil {
				fmt.Fprintf(io.err, "aegis bench %s: %v\n", r.Scenario, err)
				return exitFailure
			}
			r.Notes = append(r.Notes, "plot written to "+png)
		}
	} else if b.plot {
		fmt.Fprintf(io.err, "aegis bench %s: --plot needs --out\n", r.Scenario)
		return exitUsage
	}
	if err := r.WriteTable(io.out); err != nil {
		fmt.Fprintf(io.err, "aegis bench %s: %v\n", r.Scenario, err)
		return exitFailure
	}
	if b.json {
		raw, err := json.Marshal(r)
		if err != nil {
			fmt.Fprintf(io.err, "aegis bench %s: %v\n", r.Scenario, err)
			return exitFailure
		}
		fmt.Fprintf(io.out, "%s\n", raw)
	}
	if failed {
		return exitFailure
	}
	return exitOK
}

func curvesOf(order []string, m map[string]*hist.Histogram) []plot.Series {
	var out []plot.Series
	for _, name := range order {
		if h, ok := m[name]; ok {
			out = append(out, plot.Series{Name: name, Points: h.Curve(20)})
		}
	}
	return out
}

func runBenchEngine(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("bench engine", "", `
Decision latency of the plan engine, OPA's Go evaluator (prepared query) and
OPA's wasm module under wazero, on the same compiled policy and the same
generated inputs (allowed, denied, sanitized and approval-bound calls). Every
input's decisions are compared first; any disagreement is reported and makes
the exit code 1. Prints a table, writes bench/results/engine-<time>.json.`, io)
	var b benchFlags
	b.register(fs, measure.Plan{Warmup: 1000, Requests: 10000, Runs: 5})
	policy := fs.String("policy", "policies/examples/payments.yaml", "policy file, or a directory holding one")
	inputs := fs.Int("inputs", 1024, "distinct generated inputs the timed calls cycle through")
	seed := fs.Uint64("seed", 42, "input generator seed")
	fs.StringVar(&b.scaling, "scaling", "", "also measure generated policy sets of these sizes (agents = tools), e.g. 10,100,1000, with a tenth of the requests and at most 3 runs")
	scalingWasm := fs.Bool("scaling-wasm", false, "include OPA wasm in --scaling (compiling wasm for 1,000 tools takes about a minute)")
	rest, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(io.err, "aegis bench engine: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	sizes, err := b.sizes()
	if err != nil {
		fmt.Fprintf(io.err, "aegis bench engine: %v\n", err)
		return exitUsage
	}
	cfg := enginebench.Config{Plan: b.plan, Inputs: *inputs, Seed: *seed, PolicyName: *policy, Scaling: sizes, ScalingWasm: *scalingWasm, Progress: io.err}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(io.err, "aegis bench engine: %v\n", err)
		return exitUsage
	}
	ps, errs := policies.LoadPath(*policy)
	if len(errs) > 0 {
		fmt.Fprintf(io.err, "aegis bench engine: %v\n", errs)
		return exitFailure
	}
	res, err := enginebench.Run(ctx, ps, cfg)
	if err != nil {
		fmt.Fprintf(io.err, "aegis bench engine: %v\n", err)
		return exitFailure
	}
	curves := curvesOf([]string{enginebench.Aegis, enginebench.OPA, enginebench.OPAWasm}, res.Curves)
	return b.finish(res.Report, curves, res.Disagreements > 0, io)
}

func runBenchFilter(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("bench filter", "", `
Per-request latency of the built filter module under the edge's proxy-wasm
host (edge/wasmhost), by path: allowed, allowed with a redacted body, denied.
The policy is a generated set (--size agents × tools) with a signed runtime
bundle; every answer is checked. Build the module first (make filter).
Prints a table, writes bench/results/filter-<time>.json.`, io)
	var b benchFlags
	b.register(fs, measure.Plan{Warmup: 200, Requests: 2000, Runs: 3})
	wasmPath := fs.String("wasm", "build/aegis-filter.wasm", "the filter module")
	size := fs.Int("size", 10, "agents and tools in the generated policy set")
	fs.StringVar(&b.scaling, "scaling", "", "also measure generated policy sets of these sizes, e.g. 10,100,1000, with a tenth of the requests and at most 3 runs")
	rest, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(io.err, "aegis bench filter: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	sizes, err := b.sizes()
	if err != nil {
		fmt.Fprintf(io.err, "aegis bench filter: %v\n", err)
		return exitUsage
	}
	cfg := filterbench.Config{Plan: b.plan, WasmName: *wasmPath, Size: *size, Scaling: sizes, Progress: io.err}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(io.err, "aegis bench filter: %v\n", err)
		return exitUsage
	}
	wasm, err := os.ReadFile(*wasmPath)
	if err != nil {
		fmt.Fprintf(io.err, "aegis bench filter: %v (build it with make filter)\n", err)
		return exitFailure
	}
	res, err := filterbench.Run(ctx, wasm, cfg)
	if err != nil {
		fmt.Fprintf(io.err, "aegis bench filter: %v\n", err)
		return exitFailure
	}
	names := make([]string, len(filterbench.Paths))
	for i, p := range filterbench.Paths {
		names[i] = p.Name
	}
	return b.finish(res.Report, curvesOf(names, res.Curves), false, io)
}

func runBenchEdge(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("bench edge", "", `
HTTP load on loopback through five chains to one upstream, in one run: the
upstream directly, a plain Go reverse proxy, the Aegis edge without and with
the filter, and an ext_authz baseline (a proxy calling a gRPC authorization
server that decides with OPA's Go evaluator, as Envoy with OPA-Envoy does).
Counts are totals across --concurrency clients. Every response is checked.
Prints a table, writes bench/results/edge-<time>.json.`, io)
	var b benchFlags
	b.register(fs, measure.Plan{Warmup: 100, Requests: 1000, Runs: 3})
	wasmPath := fs.String("wasm", "build/aegis-filter.wasm", "the filter module")
	size := fs.Int("size", 10, "agents and tools in the generated policy set")
	conc := fs.Int("concurrency", 4, "concurrent clients (closed loop)")
	rest, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(io.err, "aegis bench edge: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	cfg := edgebench.Config{Plan: b.plan, Concurrency: *conc, Wasm: *wasmPath, Size: *size, Progress: io.err}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(io.err, "aegis bench edge: %v\n", err)
		return exitUsage
	}
	res, err := edgebench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(io.err, "aegis bench edge: %v\n", err)
		return exitFailure
	}
	order := []string{edgebench.Direct, edgebench.Proxy, edgebench.NoFilter, edgebench.Filter, edgebench.ExtAuthz}
	return b.finish(res.Report, curvesOf(order, res.Curves), false, io)
}
