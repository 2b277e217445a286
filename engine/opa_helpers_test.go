package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// planModules compiles Rego modules to an OPA IR plan with OPA's own
// compile API (target "plan"), as the policies/ package does for bundles.
func planModules(modules map[string]string, entrypoints ...string) ([]byte, error) {
	return planModulesWithCaps(nil, modules, entrypoints...)
}

func planModulesWithCaps(caps *ast.Capabilities, modules map[string]string, entrypoints ...string) ([]byte, error) {
	b := &bundle.Bundle{Data: map[string]any{}}
	names := make([]string, 0, len(modules))
	for name := range modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		mod, err := ast.ParseModuleWithOpts(name, modules[name], ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, err
		}
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: name, Path: name, Raw: []byte(modules[name]), Parsed: mod})
	}
	var out bytes.Buffer
	c := compile.New().
		WithTarget(compile.TargetPlan).
		WithEntrypoints(entrypoints...).
		WithBundle(b).
		WithRegoVersion(ast.RegoV1).
		WithOutput(&out)
	if caps != nil {
		c = c.WithCapabilities(caps)
	}
	if err := c.Build(context.Background()); err != nil {
		return nil, err
	}
	pm := c.Bundle().PlanModules
	if len(pm) != 1 {
		return nil, fmt.Errorf("expected one plan module, got %d", len(pm))
	}
	return pm[0].Raw, nil
}

func mustPlan(t testing.TB, modules map[string]string, entrypoints ...string) []byte {
	t.Helper()
	p, err := planModules(modules, entrypoints...)
	if err != nil {
		t.Fatalf("planning: %v", err)
	}
	return p
}

// opaGo gives OPA a Value in the form it reads directly: numbers as
// json.Number (ToGo's JSONNumber would cost OPA a JSON round trip each).
func opaGo(v Value) any {
	return ToGoWith(v, func(lit string) any { return json.Number(lit) })
}
