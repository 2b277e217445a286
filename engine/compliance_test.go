package engine

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/test/cases"
	"go.yaml.in/yaml/v3"
)

// The compliance test runs OPA's own YAML test cases through the plan path:
// OPA plans the case (query wrapped into a rule), the engine evaluates the
// plan, and the result must equal the case's want_result / want_error_code.
// Cases OPA cannot plan, or whose plans need builtins the engine does not
// implement, are not counted. Known failures are listed in
// testdata/exceptions.yaml; an unlisted failure or a listed case that now
// passes fails the test.

var updateExceptions = flag.Bool("update-exceptions", false, "rewrite testdata/exceptions.yaml with the current failures")

const compliancePackage = "aegis_compliance_wrapper"

func opaCaseDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(opaModuleDir(t), "v1", "test", "cases", "testdata", "v1")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("OPA compliance cases not found: %v", err)
	}
	return dir
}

// opaModuleDir asks the go tool where the OPA module (the version in
// go.mod) lives, so the cases always match the OPA we plan with. A wasip1
// test binary cannot run the go tool; scripts/test-wasm.sh asks it and
// passes the answer in AEGIS_OPA_MODULE_DIR.
func opaModuleDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("AEGIS_OPA_MODULE_DIR"); dir != "" {
		return dir
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/open-policy-agent/opa").Output()
	if err != nil {
		t.Fatalf("locating the OPA module with the go tool (set AEGIS_OPA_MODULE_DIR where it cannot run, as under wasip1): %v", err)
	}
	return strings.TrimSpace(string(out))
}

type caseOutcome struct {
	note     string
	category string
	status   string // pass, fail, unplannable, unsupported
	detail   string
}

func TestOPACompliance(t *testing.T) {
	dir := opaCaseDir(t)
	set, err := cases.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	exceptions := map[string]string{}
	excPath := filepath.Join("testdata", "exceptions.yaml")
	if b, err := os.ReadFile(excPath); err == nil {
		if err := yaml.Unmarshal(b, &exceptions); err != nil {
			t.Fatalf("parsing %s: %v", excPath, err)
		}
	}

	all := set.Sorted().Cases
	outcomes := make([]caseOutcome, len(all))
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				outcomes[i] = runComplianceCase(all[i], dir)
			}
		}()
	}
	for i := range all {
		work <- i
	}
	close(work)
	wg.Wait()

	counts := map[string]int{}
	failByCat := map[string]int{}
	var failures []caseOutcome
	for _, o := range outcomes {
		counts[o.status]++
		if o.status == "fail" {
			failByCat[o.category]++
			failures = append(failures, o)
		}
	}
	supported := counts["pass"] + counts["fail"]
	pct := 0.0
	if supported > 0 {
		pct = 100 * float64(counts["pass"]) / float64(supported)
	}
	t.Logf("compliance: %d/%d passed (%.1f%%); not counted: %d unplannable or compile-time errors, %d need unsupported builtins (of %d cases)",
		counts["pass"], supported, pct, counts["unplannable"], counts["unsupported"], len(all))
	if os.Getenv("COMPLIANCE_UNSUPPORTED") != "" {
		hist := map[string]int{}
		for _, o := range outcomes {
			if o.status == "unsupported" {
				hist[o.detail]++
			}
		}
		for k, n := range hist {
			t.Logf("unsupported %4d %s", n, k)
		}
	}
	cats := make([]string, 0, len(failByCat))
	for c := range failByCat {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		t.Logf("  failures in %s: %d", c, failByCat[c])
	}

	if *updateExceptions {
		out := map[string]string{}
		for _, f := range failures {
			reason := exceptions[f.note]
			if reason == "" {
				reason = "TODO: " + firstLine(f.detail)
			}
			out[f.note] = reason
		}
		b, err := yaml.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(excPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}

	failed := map[string]bool{}
	for _, f := range failures {
		failed[f.note] = true
		if _, ok := exceptions[f.note]; !ok {
			t.Errorf("%s [%s]: %s", f.note, f.category, f.detail)
		}
	}
	notes := map[string]bool{}
	for _, o := range outcomes {
		notes[o.note] = true
	}
	for note := range exceptions {
		if !notes[note] {
			t.Errorf("exceptions.yaml lists %q, which is not an OPA case", note)
		} else if !failed[note] {
			t.Errorf("exceptions.yaml lists %q, which now passes (or is no longer counted): remove it", note)
		}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

func runComplianceCase(tc cases.TestCase, dir string) (out caseOutcome) {
	out.note = tc.Note
	rel, _ := filepath.Rel(dir, tc.Filename)
	out.category = filepath.Dir(rel)
	defer func() {
		if r := recover(); r != nil {
			out.status, out.detail = "fail", fmt.Sprintf("panic: %v", r)
		}
	}()
	if tc.WantErrorCode != nil && strings.HasPrefix(*tc.WantErrorCode, "rego_") {
		out.status = "unplannable"
		return
	}
	if len(tc.Env) > 0 {
		out.status = "unplannable" // needs process environment (opa.runtime)
		return
	}
	plan, err := planQuery(tc)
	if err != nil {
		out.status, out.detail = "unplannable", err.Error()
		return
	}
	var data Value
	if tc.Data != nil {
		if data, err = FromGo(map[string]any(*tc.Data)); err != nil {
			out.status, out.detail = "fail", "data: "+err.Error()
			return
		}
	}
	p, err := Load(plan, data, WithStrictBuiltinErrors(tc.StrictError))
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == CodeUnsupported {
			out.status, out.detail = "unsupported", e.Message
			return
		}
		out.status, out.detail = "fail", "load: "+err.Error()
		return
	}
	var input Value
	if tc.InputTerm != nil {
		term, err := ast.ParseTerm(*tc.InputTerm)
		if err != nil {
			out.status = "unplannable"
			return
		}
		if input, err = astToValue(term.Value); err != nil {
			out.status, out.detail = "fail", "input: "+err.Error()
			return
		}
	} else if tc.Input != nil {
		if input, err = FromGo(*tc.Input); err != nil {
			out.status, out.detail = "fail", "input: "+err.Error()
			return
		}
	}
	got, ok, err := p.EvalOne(context.Background(), compliancePackage+"/results", input)
	out.status, out.detail = checkCase(tc, got, ok, err)
	return out
}

func checkCase(tc cases.TestCase, got Value, ok bool, err error) (string, string) {
	switch {
	case tc.WantErrorCode != nil || tc.WantError != nil:
		if err == nil {
			b, _ := ToJSON(orEmpty(got))
			return "fail", fmt.Sprintf("want error %v, got result %s", deref(tc.WantErrorCode), b)
		}
		var e *Error
		if tc.WantErrorCode != nil && (!errors.As(err, &e) || e.Code != *tc.WantErrorCode) {
			return "fail", fmt.Sprintf("want error code %s, got %v", *tc.WantErrorCode, err)
		}
		return "pass", ""
	case err != nil:
		return "fail", "unexpected error: " + err.Error()
	case tc.WantResult != nil:
		want := NewSet(0)
		for _, b := range *tc.WantResult {
			v, err := FromGo(b)
			if err != nil {
				return "fail", "want_result: " + err.Error()
			}
			want.Add(v)
		}
		have := NewSet(0)
		if ok {
			rs, isSet := got.(*Set)
			if !isSet {
				return "fail", "results is not a set"
			}
			for _, b := range rs.elems {
				v, err := FromGo(normalizeBinding(ToGo(b), tc.SortBindings))
				if err != nil {
					return "fail", err.Error()
				}
				have.Add(v)
			}
		}
		if !Equal(want, have) {
			wb, _ := ToJSON(want)
			hb, _ := ToJSON(have)
			return "fail", fmt.Sprintf("want %s\n got %s", wb, hb)
		}
		return "pass", ""
	case tc.WantDefined != nil:
		defined := ok && got.(*Set).Len() > 0
		if defined != *tc.WantDefined {
			return "fail", fmt.Sprintf("want defined=%v", *tc.WantDefined)
		}
		return "pass", ""
	}
	return "unplannable", "case has no expectation"
}

func orEmpty(v Value) Value {
	if v == nil {
		return Null()
	}
	return v
}

func deref(s *string) string {
	if s == nil {
		return "(any)"
	}
	return *s
}

// normalizeBinding applies sort_bindings: binding values are compared as
// sets, i.e. arrays are sorted.
func normalizeBinding(b any, sortBindings bool) any {
	m, ok := b.(map[string]any)
	if !ok || !sortBindings {
		return b
	}
	for k, v := range m {
		if arr, ok := v.([]any); ok {
			vals := make([]Value, len(arr))
			for i, e := range arr {
				vals[i], _ = FromGo(e)
			}
			sort.Slice(vals, func(i, j int) bool { return Compare(vals[i], vals[j]) < 0 })
			out := make([]any, len(vals))
			for i, e := range vals {
				out[i] = ToGo(e)
			}
			m[k] = out
		}
	}
	return m
}

// planQuery wraps the case's query into a partial set rule whose elements
// are the query's bindings, and plans that rule with OPA.
func planQuery(tc cases.TestCase) ([]byte, error) {
	body, err := ast.ParseBodyWithOpts(tc.Query, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, err
	}
	vars := ast.NewVarSet()
	vis := ast.NewVarVisitor().WithParams(ast.VarVisitorParams{SkipRefHead: true, SkipClosures: true})
	vis.Walk(body)
	for v := range vis.Vars() {
		if v.IsWildcard() || v.IsGenerated() || v == "input" || v == "data" || strings.HasPrefix(string(v), "$") {
			continue
		}
		vars.Add(v)
	}
	names := make([]string, 0, len(vars))
	for v := range vars {
		names = append(names, string(v))
	}
	sort.Strings(names)
	var obj strings.Builder
	obj.WriteString("{")
	for i, n := range names {
		if i > 0 {
			obj.WriteString(", ")
		}
		fmt.Fprintf(&obj, "%q: %s", n, n)
	}
	obj.WriteString("}")
	wrapper := fmt.Sprintf("package %s\n\nresults contains %s if {\n%s\n}\n", compliancePackage, obj.String(), tc.Query)
	modules := map[string]string{"wrapper.rego": wrapper}
	for i, m := range tc.Modules {
		modules[fmt.Sprintf("test-%d.rego", i)] = m
	}
	return planModules(modules, compliancePackage+"/results")
}

// astToValue converts an OPA AST value, keeping sets (input_term may hold
// them, which JSON cannot).
func astToValue(v ast.Value) (Value, error) {
	switch x := v.(type) {
	case ast.Null:
		return Null(), nil
	case ast.Boolean:
		return Bool(bool(x)), nil
	case ast.Number:
		return Number(string(x))
	case ast.String:
		return String(string(x)), nil
	case *ast.Array:
		arr := NewArray(x.Len())
		for i := range x.Len() {
			e, err := astToValue(x.Elem(i).Value)
			if err != nil {
				return nil, err
			}
			arr.Append(e)
		}
		return arr, nil
	case ast.Set:
		set := NewSet(x.Len())
		for _, t := range x.Slice() {
			e, err := astToValue(t.Value)
			if err != nil {
				return nil, err
			}
			set.Add(e)
		}
		return set, nil
	case ast.Object:
		obj := NewObject(x.Len())
		for _, k := range x.Keys() {
			kv, err := astToValue(k.Value)
			if err != nil {
				return nil, err
			}
			vv, err := astToValue(x.Get(k).Value)
			if err != nil {
				return nil, err
			}
			obj.Insert(kv, vv)
		}
		return obj, nil
	}
	return nil, fmt.Errorf("unsupported AST value %T", v)
}
