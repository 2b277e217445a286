package policies

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// customRules are the rules of a custom module the decision reads: sets of
// reason strings.
var customRules = []string{"deny", "approval"}

// regoFile is the file name custom module errors are reported under before
// they are mapped back to the YAML.
func regoFile(m *RegoModule) string { return fmt.Sprintf("rego/%s.rego", m.Name) }

// checkRego parses and compiles custom modules with the given capabilities,
// reporting OPA's errors at the YAML line and column they come from.
func checkRego(ps *PolicySet, lines []string, caps *ast.Capabilities, errs *errList) {
	parsed := map[string]*ast.Module{}
	byFile := map[string]*RegoModule{}
	for _, m := range ps.Rego {
		if m.Name == "" || m.Source == "" {
			continue
		}
		file := regoFile(m)
		byFile[file] = m
		mod, err := ast.ParseModuleWithOpts(file, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
		if err != nil {
			reportRego(err, m, lines, errs)
			continue
		}
		want := ast.MustParseRef("data.aegis.custom." + m.Name)
		if !mod.Package.Path.Equal(want) {
			errs.add(CodeRego, regoPos(m, lines, mod.Package.Location), join(m.Src.Path, "source"),
				fmt.Sprintf("start the module with: package aegis.custom.%s", m.Name),
				"package %s does not match the module name %q", mod.Package.Path, m.Name)
			continue
		}
		ok := true
		m.Rules = nil
		for _, r := range mod.Rules {
			name := r.Head.Name.String()
			if len(r.Head.Reference) > 0 {
				name = r.Head.Reference[0].String()
			}
			if !contains(customRules, name) {
				continue
			}
			if r.Head.RuleKind() != ast.MultiValue || len(r.Head.Ref()) != 1 {
				errs.add(CodeRego, regoPos(m, lines, r.Location), join(m.Src.Path, "source"),
					fmt.Sprintf("write: %s contains reason if { ... }", name),
					"rule %q must be a set of reason strings", name)
				ok = false
				continue
			}
			if !contains(m.Rules, name) {
				m.Rules = append(m.Rules, name)
			}
		}
		sort.Strings(m.Rules)
		if ok {
			parsed[file] = mod
		}
	}
	if len(parsed) == 0 {
		return
	}
	c := ast.NewCompiler().WithCapabilities(caps).WithEnablePrintStatements(false)
	c.Compile(parsed)
	for _, e := range c.Errors {
		m := byFile[locFile(e.Location)]
		if m == nil {
			errs.add(CodeRego, pos{1, 1}, "rego", "", "%s", e.Message)
			continue
		}
		errs.add(CodeRego, regoPos(m, lines, e.Location), join(m.Src.Path, "source"), regoHint(e), "%s", e.Message)
	}
}

func locFile(l *ast.Location) string {
	if l == nil {
		return ""
	}
	return l.File
}

func regoHint(e *ast.Error) string {
	if e.Code == ast.TypeErr && strings.Contains(e.Message, "undefined function") {
		return "only builtins the Aegis engine implements may be used (see docs/policy-reference.md)"
	}
	return ""
}

func reportRego(err error, m *RegoModule, lines []string, errs *errList) {
	var aerrs ast.Errors
	if errors.As(err, &aerrs) {
		for _, e := range aerrs {
			errs.add(CodeRego, regoPos(m, lines, e.Location), join(m.Src.Path, "source"), regoHint(e), "%s", e.Message)
		}
		return
	}
	errs.add(CodeRego, m.SourceSrc.pos(), join(m.Src.Path, "source"), "", "%v", err)
}

// regoPos maps a location inside a custom module's source to the YAML file.
// For a literal block scalar (source: |) row r of the module is YAML line
// first+r-1 and columns shift by the block's indentation. Other scalar
// styles fold or unescape the text, so they point at the value itself.
func regoPos(m *RegoModule, lines []string, loc *ast.Location) pos {
	if loc == nil || !m.literal {
		return m.SourceSrc.pos()
	}
	first := m.SourceSrc.Line
	line := first + loc.Row - 1
	if first < 1 || line > len(lines) {
		return m.SourceSrc.pos()
	}
	indent := len(lines[first-1]) - len(strings.TrimLeft(lines[first-1], " "))
	return pos{Line: line, Col: indent + loc.Col}
}
