// Package policies implements the aegis.policy/v1 language: it loads YAML
// policy sets with located errors, validates them, and compiles them to
// readable Rego, an OPA IR plan (what the engine evaluates), OPA wasm and
// signed bundles.
//
// The pipeline is a list of named stages, as in OPA's ast.Compiler:
//
//	load → schema → references → generate → opa-compile → bundle
//
// Load runs the first three and reports every problem it finds (up to
// MaxErrors), each with file, line, column, field path and a hint.
// Compile runs generate and opa-compile; BuildBundles runs bundle.
package policies

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Stage names, in pipeline order; used for --debug timings.
const (
	StageLoad       = "load"
	StageSchema     = "schema"
	StageReferences = "references"
	StageGenerate   = "generate"
	StageCompile    = "opa-compile"
	StageBundle     = "bundle"
)

// Stages lists every stage name in order.
func Stages() []string {
	return []string{StageLoad, StageSchema, StageReferences, StageGenerate, StageCompile, StageBundle}
}

// Timing is how long one stage took.
type Timing struct {
	Stage    string        `json:"stage"`
	Duration time.Duration `json:"duration_ns"`
}

// LoadOptions tune Load. The zero value checks custom Rego against the
// builtins of package engine.
type LoadOptions struct {
	// Builtins allowed in custom Rego; nil means engine.SupportedBuiltins().
	Builtins []string
}

// Load parses and validates one policy set document. name is used in error
// locations and in the comments of generated Rego. On any error the
// returned PolicySet is nil and Errors is sorted by location.
func Load(name string, src []byte) (*PolicySet, Errors) {
	ps, _, errs := LoadWithOptions(name, src, LoadOptions{})
	return ps, errs
}

// LoadWithOptions is Load with options; it also returns the stage timings.
func LoadWithOptions(name string, src []byte, opts LoadOptions) (*PolicySet, []Timing, Errors) {
	var timings []Timing
	stage := func(n string, start time.Time) { timings = append(timings, Timing{n, time.Since(start)}) }
	errs := &errList{file: name}

	start := time.Now()
	root := parseDocument(name, src, errs)
	stage(StageLoad, start)
	if root == nil {
		errs.errs.Sort()
		return nil, timings, errs.errs
	}

	start = time.Now()
	ps := &PolicySet{File: name, lines: strings.Split(string(src), "\n")}
	d := &decoder{errs: errs}
	d.decodePolicySet(root, ps)
	stage(StageSchema, start)

	// References run even after schema errors, so one pass reports as much
	// as possible; names whose target failed the schema are not reported
	// again as dangling.
	start = time.Now()
	validate(ps, opts, errs)
	stage(StageReferences, start)
	if len(errs.errs) > 0 {
		errs.errs.Sort()
		return nil, timings, errs.errs
	}
	return ps, timings, nil
}

// Validate re-runs the cross-reference checks (including custom Rego) on a
// policy set, for callers that changed a loaded model.
func Validate(ps *PolicySet) Errors {
	errs := &errList{file: ps.File}
	validate(ps, LoadOptions{}, errs)
	errs.errs.Sort()
	return errs.errs
}

func validate(ps *PolicySet, opts LoadOptions, errs *errList) {
	checkReferences(ps, errs)
	builtins := opts.Builtins
	if builtins == nil {
		builtins = engineBuiltins()
	}
	checkRego(ps, ps.lines, Capabilities(builtins), errs)
}

// LoadPath loads a policy file, or a directory holding exactly one policy
// file (*.yaml, *.yml or *.json) plus optional *_test.yaml tables, which are
// skipped. The file name in errors is the path as given.
func LoadPath(path string) (*PolicySet, Errors) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, Errors{{Code: CodeIO, Message: err.Error(), Location: Location{File: path, Line: 1, Col: 1}}}
	}
	file := path
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, Errors{{Code: CodeIO, Message: err.Error(), Location: Location{File: path, Line: 1, Col: 1}}}
		}
		var found []string
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || isTestFile(n) {
				continue
			}
			switch filepath.Ext(n) {
			case ".yaml", ".yml", ".json":
				found = append(found, filepath.Join(path, n))
			}
		}
		sort.Strings(found)
		if len(found) != 1 {
			return nil, Errors{{Code: CodeIO, Location: Location{File: path, Line: 1, Col: 1},
				Message: fmt.Sprintf("a policy directory holds exactly one policy file, found %d (%s)", len(found), strings.Join(found, ", ")),
				Hint:    "test tables are named *_test.yaml"}}
		}
		file = found[0]
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, Errors{{Code: CodeIO, Message: err.Error(), Location: Location{File: file, Line: 1, Col: 1}}}
	}
	return Load(file, data)
}

func isTestFile(name string) bool {
	return strings.HasSuffix(name, "_test.yaml") || strings.HasSuffix(name, "_test.yml")
}
