package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// Options tune Compile. The zero value compiles for the engine's builtins
// and produces both the plan and the wasm module.
type Options struct {
	// Builtins the plan may call; nil means engine.SupportedBuiltins().
	Builtins []string
	// SkipWasm leaves Compiled.Wasm empty (the plan is what nodes run; the
	// wasm module is for the archive bundle and OPA tooling).
	SkipWasm bool
}

// Compiled is a compiled policy set: everything the bundles are made of.
type Compiled struct {
	Name, Tenant string
	// Rego holds the generated and custom modules, sorted by path.
	Rego []File
	// Plan is OPA's IR plan (plan.json) for the entrypoints.
	Plan []byte
	// Wasm is OPA's wasm module for the same entrypoints (empty with SkipWasm).
	Wasm []byte
	// Data is data.json: the constant tables under DataRoot.
	Data []byte
	// Builtins the plan calls, sorted; the manifest lists them so a node can
	// refuse a bundle it cannot evaluate.
	Builtins     []string
	Entrypoints  []string
	MCPEndpoints []MCPEndpoint
	MaxBodyBytes int64
	Timings      []Timing
}

// Compile runs the generate and opa-compile stages. ps must come from Load
// (or have passed Validate). Errors in generated code are *Error values with
// the Rego file and line; errors in custom modules point at the YAML.
func Compile(ctx context.Context, ps *PolicySet, opts Options) (*Compiled, error) {
	if ps == nil {
		return nil, errors.New("compile: nil policy set")
	}
	builtins := opts.Builtins
	if builtins == nil {
		builtins = engineBuiltins()
	}
	caps := Capabilities(builtins)
	out := &Compiled{
		Name: ps.Metadata.Name, Tenant: ps.Metadata.Tenant,
		Entrypoints:  entrypoints(),
		MCPEndpoints: mcpEndpoints(ps),
		MaxBodyBytes: ps.Defaults.MaxBodyBytes,
	}

	start := time.Now()
	g, err := generate(ps)
	if err != nil {
		return nil, err
	}
	out.Rego, out.Data = g.rego, g.data
	out.Timings = append(out.Timings, Timing{StageGenerate, time.Since(start)})

	start = time.Now()
	plan, err := opaBuild(ctx, ps, g, caps, compile.TargetPlan)
	if err != nil {
		return nil, err
	}
	out.Plan = plan.PlanModules[0].Raw
	if out.Builtins, err = planBuiltins(out.Plan); err != nil {
		return nil, err
	}
	if !opts.SkipWasm {
		w, err := opaBuild(ctx, ps, g, caps, compile.TargetWasm)
		if err != nil {
			return nil, err
		}
		out.Wasm = w.WasmModules[0].Raw
	}
	out.Timings = append(out.Timings, Timing{StageCompile, time.Since(start)})
	return out, nil
}

func opaBuild(ctx context.Context, ps *PolicySet, g *generated, caps *ast.Capabilities, target string) (*opabundle.Bundle, error) {
	b := &opabundle.Bundle{Data: g.doc}
	b.SetRegoVersion(ast.RegoV1)
	b.Manifest.Init()
	for _, f := range g.rego {
		mod, err := ast.ParseModuleWithOpts(f.Path, string(f.Data), ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
		if err != nil {
			return nil, mapOPAErrors(ps, err)
		}
		b.Modules = append(b.Modules, opabundle.ModuleFile{URL: f.Path, Path: f.Path, Raw: f.Data, Parsed: mod})
	}
	c := compile.New().
		WithTarget(target).
		WithEntrypoints(entrypoints()...).
		WithCapabilities(caps).
		WithRegoVersion(ast.RegoV1).
		WithOptimizationLevel(0).
		WithBundle(b)
	if err := c.Build(ctx); err != nil {
		return nil, mapOPAErrors(ps, err)
	}
	out := c.Bundle()
	switch {
	case target == compile.TargetPlan && len(out.PlanModules) != 1:
		return nil, fmt.Errorf("opa-compile: %d plan modules, want 1", len(out.PlanModules))
	case target == compile.TargetWasm && len(out.WasmModules) != 1:
		return nil, fmt.Errorf("opa-compile: %d wasm modules, want 1", len(out.WasmModules))
	}
	return out, nil
}

// mapOPAErrors turns OPA's errors into Errors: custom module locations are
// mapped to the YAML, generated code keeps its Rego file and line.
func mapOPAErrors(ps *PolicySet, err error) error {
	var aerrs ast.Errors
	if !errors.As(err, &aerrs) {
		return fmt.Errorf("opa-compile: %w", err)
	}
	var out Errors
	for _, e := range aerrs {
		oe := &Error{Code: CodeCompile, Message: e.Message, Location: Location{File: locFile(e.Location), Line: 1, Col: 1}}
		if e.Location != nil {
			oe.Line, oe.Col = e.Location.Row, e.Location.Col
		}
		for _, m := range ps.Rego {
			if e.Location != nil && e.Location.File == CustomRegoDir+m.Name+".rego" {
				p := regoPos(m, ps.lines, e.Location)
				oe.Code, oe.File, oe.Line, oe.Col, oe.Path = CodeRego, ps.File, p.Line, p.Col, join(m.Src.Path, "source")
			}
		}
		if e.Code == ast.TypeErr && strings.Contains(e.Message, "undefined function") {
			oe.Hint = "only builtins the Aegis engine implements may be used"
		}
		out = append(out, oe)
	}
	out.Sort()
	return out
}

// planBuiltins lists the builtin functions an IR plan calls.
func planBuiltins(plan []byte) ([]string, error) {
	var p struct {
		Static struct {
			BuiltinFuncs []struct {
				Name string `json:"name"`
			} `json:"builtin_funcs"`
		} `json:"static"`
	}
	if err := json.NewDecoder(bytes.NewReader(plan)).Decode(&p); err != nil {
		return nil, fmt.Errorf("read plan builtins: %w", err)
	}
	names := make([]string, 0, len(p.Static.BuiltinFuncs))
	for _, b := range p.Static.BuiltinFuncs {
		names = append(names, b.Name)
	}
	sort.Strings(names)
	return names, nil
}
