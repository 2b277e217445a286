package policies

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/aegis-mesh/aegis/dlp"
)

// dlpBuiltins are the builtin detector names a dlp entry may use (read-only).
var dlpBuiltins = []string{dlp.BuiltinCardNumber, dlp.BuiltinIBAN}

// maxPatternLen keeps regular expressions small enough that compiling them
// (once per bundle load, on every node) stays cheap.
const maxPatternLen = 4096

func checkRegex(s string) error {
	if len(s) > maxPatternLen {
		return fmt.Errorf("%d bytes is longer than the %d allowed", len(s), maxPatternLen)
	}
	_, err := regexp.Compile(s)
	if err != nil {
		// regexp prefixes "error parsing regexp: "; the caller already says so.
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return nil
}

func (s Source) pos() pos { return pos{s.Line, s.Col} }

// matchToolPattern reports whether a grant pattern matches a tool name: '*'
// stands for one or more whole segments.
func matchToolPattern(pattern, name string) bool {
	return matchSegs(strings.Split(pattern, "."), strings.Split(name, "."))
}

// matchSegs matches segment lists by dynamic programming, so patterns with
// many '*' stay linear in pattern × name length instead of backtracking.
func matchSegs(p, n []string) bool {
	// ok[j]: p[:i] matches n[:j], for the current i.
	ok := make([]bool, len(n)+1)
	ok[0] = true
	for i := range p {
		next := make([]bool, len(n)+1)
		for j := 1; j <= len(n); j++ {
			if p[i] == "*" {
				// '*' consumes n[j-1] and possibly more before it.
				next[j] = ok[j-1] || next[j-1]
			} else {
				next[j] = ok[j-1] && p[i] == n[j-1]
			}
		}
		ok = next
	}
	return ok[len(n)]
}

// isQueryTool reports whether a tool takes its parameters from the query string.
func (t *Tool) isQueryTool() bool {
	return t.HTTP != nil && contains(queryMethods, t.HTTP.Method)
}

func (t *Tool) param(name string) *Param {
	for _, p := range t.Params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// checkReferences is the cross-reference stage: names must be unique and
// everything a name points at must exist.
func checkReferences(ps *PolicySet, errs *errList) {
	dup := func(kind, name string, s Source, first Source) {
		errs.add(CodeDuplicate, s.pos(), s.Path, fmt.Sprintf("first declared at line %d (%s)", first.Line, first.Path), "duplicate %s %q", kind, name)
	}

	detectors := map[string]*Detector{}
	var specs []dlp.Spec
	for _, d := range ps.DLP {
		if prev, ok := detectors[d.Name]; ok {
			dup("detector", d.Name, d.Src, prev.Src)
			continue
		}
		detectors[d.Name] = d
		if d.Pattern != "" || d.Builtin != "" {
			specs = append(specs, dlp.Spec{Name: d.Name, Pattern: d.Pattern, Builtin: d.Builtin, Replace: d.Replace})
		}
	}
	if len(errs.errs) == 0 && !ps.dropped.dlp {
		if _, err := dlp.Compile(specs); err != nil {
			p := pos{1, 1}
			path := "dlp"
			if len(ps.DLP) > 0 {
				p, path = ps.DLP[0].Src.pos(), ps.DLP[0].Src.Path
			}
			errs.add(CodeEnum, p, path, "", "%v", err)
		}
	}

	servers := map[string]*MCPServer{}
	endpoints := map[string]*MCPServer{}
	for _, s := range ps.MCPServers {
		if prev, ok := servers[s.Name]; ok {
			dup("MCP server", s.Name, s.Src, prev.Src)
			continue
		}
		servers[s.Name] = s
		if s.Host == "" || s.Path == "" {
			continue
		}
		ep := s.Host + s.Path
		if prev, ok := endpoints[ep]; ok {
			dup("MCP endpoint", ep, s.Src, prev.Src)
			continue
		}
		endpoints[ep] = s
	}

	tools := map[string]*Tool{}
	routes := map[string]*Tool{}
	mcpTools := map[string]*Tool{}
	for _, t := range ps.Tools {
		if prev, ok := tools[t.Name]; ok {
			dup("tool", t.Name, t.Src, prev.Src)
			continue
		}
		tools[t.Name] = t
		checkTool(t, ps, detectors, servers, endpoints, errs)
		if h := t.HTTP; h != nil && h.Host != "" && h.Method != "" && (h.Path != "" || h.PathPrefix != "") {
			key := h.Method + " " + h.Host + " path=" + h.Path
			if h.PathPrefix != "" {
				key = h.Method + " " + h.Host + " prefix=" + h.PathPrefix
			}
			if prev, ok := routes[key]; ok {
				errs.add(CodeDuplicate, h.Src.pos(), h.Src.Path, fmt.Sprintf("tool %q has the same route", prev.Name), "duplicate HTTP route %s", key)
			} else {
				routes[key] = t
			}
		}
		if m := t.MCP; m != nil && m.Server.Name != "" && m.Tool != "" {
			key := m.Server.Name + "/" + m.Tool
			if prev, ok := mcpTools[key]; ok {
				errs.add(CodeDuplicate, m.Src.pos(), m.Src.Path, fmt.Sprintf("tool %q is the same MCP tool", prev.Name), "duplicate MCP tool %q on server %q", m.Tool, m.Server.Name)
			} else {
				mcpTools[key] = t
			}
		}
	}

	toolNames := make([]string, 0, len(ps.Tools))
	for _, t := range ps.Tools {
		toolNames = append(toolNames, t.Name)
	}
	sort.Strings(toolNames)
	agents := map[string]*Agent{}
	for _, a := range ps.Agents {
		if prev, ok := agents[a.ID]; ok {
			dup("agent", a.ID, a.Src, prev.Src)
			continue
		}
		agents[a.ID] = a
	}
	agentIDs := make([]string, 0, len(agents))
	for id := range agents {
		agentIDs = append(agentIDs, id)
	}
	sort.Strings(agentIDs)
	for _, a := range ps.Agents {
		for _, p := range a.Tools {
			if ps.dropped.tools {
				break
			}
			matched := false
			for _, n := range toolNames {
				if matchToolPattern(p.Text, n) {
					matched = true
					break
				}
			}
			if !matched {
				hint := "declare the tool under tools, or fix the name"
				if c := closest(p.Text, toolNames); c != "" {
					hint = fmt.Sprintf("did you mean %q?", c)
				}
				errs.add(CodeReference, p.Src.pos(), p.Src.Path, hint, "tool pattern %q matches no declared tool", p.Text)
			}
		}
		for _, r := range a.MayDelegateTo {
			if r.Name == a.ID {
				errs.add(CodeReference, r.Src.pos(), r.Src.Path, "", "agent %q cannot delegate to itself", a.ID)
				continue
			}
			if _, ok := agents[r.Name]; !ok && !ps.dropped.agents {
				hint := ""
				if c := closest(r.Name, agentIDs); c != "" {
					hint = fmt.Sprintf("did you mean %q?", c)
				}
				errs.add(CodeReference, r.Src.pos(), r.Src.Path, hint, "may_delegate_to names unknown agent %q", r.Name)
			}
		}
	}

	modules := map[string]*RegoModule{}
	for _, m := range ps.Rego {
		if prev, ok := modules[m.Name]; ok {
			dup("rego module", m.Name, m.Src, prev.Src)
			continue
		}
		modules[m.Name] = m
	}
}

func checkTool(t *Tool, ps *PolicySet, detectors map[string]*Detector, servers, endpoints map[string]*MCPServer, errs *errList) {
	if m := t.MCP; m != nil && m.Server.Name != "" {
		if _, ok := servers[m.Server.Name]; !ok && !ps.dropped.servers {
			names := make([]string, 0, len(servers))
			for n := range servers {
				names = append(names, n)
			}
			hint := "declare it under mcp_servers"
			if c := closest(m.Server.Name, names); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			errs.add(CodeReference, m.Server.Src.pos(), m.Server.Src.Path, hint, "MCP server %q is not declared", m.Server.Name)
		}
	}
	if h := t.HTTP; h != nil && h.Host != "" {
		for ep, s := range endpoints {
			if (h.Path != "" && ep == h.Host+h.Path) || (h.PathPrefix != "" && strings.HasPrefix(ep, h.Host+h.PathPrefix)) {
				errs.add(CodeReference, h.Src.pos(), h.Src.Path, "declare it as an mcp tool of that server", "route overlaps the endpoint of MCP server %q", s.Name)
			}
		}
	}
	paramNames := make([]string, 0, len(t.Params))
	for _, p := range t.Params {
		paramNames = append(paramNames, p.Name)
		if t.isQueryTool() && (p.Type == TypeObject || p.Type == TypeArray) {
			errs.add(CodeEnum, p.Src.pos(), join(p.Src.Path, "type"), "query parameters are single strings", "type %s cannot be used for a %s tool's query parameter", p.Type, t.HTTP.Method)
		}
	}
	refParam := func(r Ref) *Param {
		p := t.param(r.Name)
		if p == nil && !t.droppedParams {
			hint := "declare it under params"
			if c := closest(r.Name, paramNames); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			errs.add(CodeReference, r.Src.pos(), r.Src.Path, hint, "parameter %q is not declared for tool %q", r.Name, t.Name)
		}
		return p
	}
	for _, a := range t.Approval {
		c := a.When
		if c == nil || c.Param.Name == "" {
			continue
		}
		p := refParam(c.Param)
		if p == nil || p.Type == "" {
			continue
		}
		numeric := p.Type == TypeNumber || p.Type == TypeInteger
		switch c.Op {
		case "gt", "gte", "lt", "lte":
			if !numeric {
				errs.add(CodeType, c.Src.pos(), join(c.Src.Path, c.Op), "", "%s needs a number or integer parameter; %q is %s", c.Op, p.Name, p.Type)
			}
		case "eq", "ne":
			if want := scalarKindFor(p.Type); c.Value.Kind != "" && want != c.Value.Kind {
				errs.add(CodeType, c.Src.pos(), join(c.Src.Path, c.Op), "", "parameter %q is %s; compare it with a %s", p.Name, p.Type, want)
			}
		case "in":
			for _, v := range c.List {
				if want := scalarKindFor(p.Type); want != v.Kind {
					errs.add(CodeType, c.Src.pos(), join(c.Src.Path, c.Op), "", "parameter %q is %s; list %s values", p.Name, p.Type, want)
					break
				}
			}
		}
	}
	if s := t.Sanitize; s != nil {
		if t.isQueryTool() {
			errs.add(CodeEnum, s.Src.pos(), s.Src.Path, "sanitize rewrites JSON bodies; GET, HEAD and DELETE tools have none", "sanitize cannot apply to a %s tool", t.HTTP.Method)
		}
		for _, r := range s.Params {
			if len(t.Params) == 0 {
				continue // no schema: any body field may be sanitized
			}
			if p := refParam(r); p != nil && p.Type != "" && p.Type != TypeString {
				errs.add(CodeType, r.Src.pos(), r.Src.Path, "", "sanitize applies to string parameters; %q is %s", r.Name, p.Type)
			}
		}
		names := make([]string, 0, len(detectors))
		for n := range detectors {
			names = append(names, n)
		}
		for _, r := range s.DLP {
			if _, ok := detectors[r.Name]; !ok && !ps.dropped.dlp {
				hint := "declare it under dlp"
				if c := closest(r.Name, names); c != "" {
					hint = fmt.Sprintf("did you mean %q?", c)
				}
				errs.add(CodeReference, r.Src.pos(), r.Src.Path, hint, "DLP detector %q is not defined", r.Name)
			}
		}
	}
}
