package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aegis-mesh/aegis/bundle"
)

// File is one generated file (Rego source, plan, data) by bundle path.
type File = bundle.File

// Paths of the generated files inside bundles.
const (
	DecisionRegoPath = "aegis/decision.rego"
	ToolsRegoPath    = "aegis/tools.rego"
	CustomRegoDir    = "aegis/custom/"
	DataPath         = "data.json"
	PlanPath         = "plan.json"
	WasmPath         = "policy.wasm"
)

// Entrypoints of every compiled policy, as plan names.
const (
	EntrypointDecision        = "aegis/decision"
	EntrypointMCPVisibleTools = "aegis/mcp_visible_tools"
)

func entrypoints() []string { return []string{EntrypointDecision, EntrypointMCPVisibleTools} }

// DataRoot is the top-level key of data.json under which the constant
// tables live (data.aegis_policy in Rego).
const DataRoot = "aegis_policy"

// MCPEndpoint tells the data plane which requests are MCP JSON-RPC: the
// input builder needs it before the policy runs.
type MCPEndpoint struct {
	Server string `json:"server"`
	Host   string `json:"host"`
	Path   string `json:"path"`
}

// generated is the output of the generate stage.
type generated struct {
	rego []File
	data []byte
	doc  map[string]any // data as a Go value, for OPA
}

// generate turns a validated policy set into Rego and data.json. The output
// depends only on the model's content, never on map iteration order.
func generate(ps *PolicySet) (*generated, error) {
	doc := map[string]any{DataRoot: buildData(ps)}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("generate data.json: %w", err)
	}
	// OPA needs the data with json.Number values, as it would read the file.
	forOPA, err := decodeData(buf.Bytes())
	if err != nil {
		return nil, err
	}
	g := &generated{data: buf.Bytes(), doc: forOPA}
	g.rego = append(g.rego, File{Path: DecisionRegoPath, Data: []byte(frameworkRego)})
	g.rego = append(g.rego, File{Path: ToolsRegoPath, Data: []byte(toolsRego(ps))})
	for _, m := range ps.Rego {
		g.rego = append(g.rego, File{Path: CustomRegoDir + m.Name + ".rego", Data: []byte(m.Source)})
	}
	sort.Slice(g.rego, func(i, j int) bool { return g.rego[i].Path < g.rego[j].Path })
	return g, nil
}

func toolMode(ps *PolicySet, explicit string) string {
	if ps.Defaults.Mode == "observe" || explicit == "" {
		return ps.Defaults.Mode
	}
	return explicit
}

func (t *Tool) paramsIn() string {
	if len(t.Params) == 0 && t.AdditionalParams != "deny" {
		return "none"
	}
	if t.isQueryTool() {
		return "query"
	}
	return "body"
}

func buildData(ps *PolicySet) map[string]any {
	tools := map[string]*Tool{}
	for _, t := range ps.Tools {
		tools[t.Name] = t
	}
	names := make([]string, 0, len(tools))
	for n := range tools {
		names = append(names, n)
	}
	sort.Strings(names)
	detectors := map[string]*Detector{}
	for _, d := range ps.DLP {
		detectors[d.Name] = d
	}

	agents := map[string]any{}
	for _, a := range ps.Agents {
		granted, servers := map[string]any{}, map[string]any{}
		for _, n := range names {
			for _, p := range a.Tools {
				if matchToolPattern(p.Text, n) {
					granted[n] = true
					if m := tools[n].MCP; m != nil {
						servers[m.Server.Name] = true
					}
				}
			}
		}
		deleg := map[string]any{}
		for _, r := range a.MayDelegateTo {
			deleg[r.Name] = true
		}
		ad := map[string]any{"tools": granted, "servers": servers, "may_delegate_to": deleg}
		if a.Regions != nil {
			ad["regions"] = a.Regions
		}
		if a.Intents != nil {
			ad["intents"] = a.Intents
		}
		if a.BudgetPerDay != nil {
			v, _ := a.BudgetPerDay.Micro()
			ad["budget_micro_usd"] = v
		}
		if a.RatePerMinute > 0 {
			ad["rate_per_minute"] = a.RatePerMinute
		}
		agents[a.ID] = ad
	}

	toolData := map[string]any{}
	type route struct {
		tool, method, path, prefix string
	}
	routesByHost := map[string][]route{}
	mcpTools := map[string]any{}
	for _, t := range ps.Tools {
		td := map[string]any{
			"name":              t.Name,
			"kind":              t.Kind,
			"risk":              t.Risk,
			"mode":              toolMode(ps, t.Mode),
			"fail":              toolFail(ps, t),
			"params_in":         t.paramsIn(),
			"additional_params": t.AdditionalParams,
			"cost_micro_usd":    int64(0),
		}
		if t.CostUSD != nil {
			v, _ := t.CostUSD.Micro()
			td["cost_micro_usd"] = v
		}
		declared := map[string]any{}
		for _, p := range t.Params {
			declared[p.Name] = true
		}
		td["declared"] = declared
		if len(t.DataClasses) > 0 {
			td["data_classes"] = t.DataClasses
		}
		if s := t.Sanitize; s != nil {
			params := make([]string, len(s.Params))
			for i, r := range s.Params {
				params[i] = r.Name
			}
			specs := make([]any, 0, len(s.DLP))
			for _, r := range s.DLP {
				specs = append(specs, detectorSpec(detectors[r.Name]))
			}
			td["sanitize"] = map[string]any{"params": params, "specs": specs}
		}
		if m := t.MCP; m != nil {
			td["server"] = m.Server.Name
			srv, _ := mcpTools[m.Server.Name].(map[string]any)
			if srv == nil {
				srv = map[string]any{}
				mcpTools[m.Server.Name] = srv
			}
			srv[m.Tool] = t.Name
		}
		if h := t.HTTP; h != nil {
			routesByHost[h.Host] = append(routesByHost[h.Host], route{t.Name, h.Method, h.Path, h.PathPrefix})
		}
		toolData[t.Name] = td
	}
	httpRoutes := map[string]any{}
	for host, rs := range routesByHost {
		// Exact paths first, then longer prefixes before shorter ones: the
		// first matching route wins, and the most specific should.
		sort.Slice(rs, func(i, j int) bool {
			a, b := rs[i], rs[j]
			if (a.path != "") != (b.path != "") {
				return a.path != ""
			}
			if len(a.prefix) != len(b.prefix) {
				return len(a.prefix) > len(b.prefix)
			}
			if a.path+a.prefix != b.path+b.prefix {
				return a.path+a.prefix < b.path+b.prefix
			}
			return a.method < b.method
		})
		list := make([]any, len(rs))
		for i, r := range rs {
			m := map[string]any{"tool": r.tool, "method": r.method}
			if r.path != "" {
				m["path"] = r.path
			} else {
				m["path_prefix"] = r.prefix
			}
			list[i] = m
		}
		httpRoutes[host] = list
	}
	endpoints := map[string]any{}
	for _, s := range ps.MCPServers {
		endpoints[s.Name] = map[string]any{"host": s.Host, "path": s.Path}
	}
	dlpData := map[string]any{}
	for _, d := range ps.DLP {
		dlpData[d.Name] = detectorSpec(d)
	}
	return map[string]any{
		"settings": map[string]any{
			"mode":           ps.Defaults.Mode,
			"unknown_agent":  ps.Defaults.UnknownAgent,
			"unknown_tool":   ps.Defaults.UnknownTool,
			"require_intent": ps.Defaults.RequireIntent,
			"max_body_bytes": ps.Defaults.MaxBodyBytes,
			"tenant":         ps.Metadata.Tenant,
			"name":           ps.Metadata.Name,
		},
		"agents":        agents,
		"tools":         toolData,
		"http_routes":   httpRoutes,
		"mcp_tools":     mcpTools,
		"mcp_endpoints": endpoints,
		"dlp":           dlpData,
	}
}

func toolFail(ps *PolicySet, t *Tool) string {
	if t.Fail != "" {
		return t.Fail
	}
	if t.Kind == "read" {
		return ps.Defaults.FailRead
	}
	return ps.Defaults.FailWrite
}

func detectorSpec(d *Detector) map[string]any {
	m := map[string]any{"name": d.Name, "replace": d.Replace}
	if d.Pattern != "" {
		m["pattern"] = d.Pattern
	} else {
		m["builtin"] = d.Builtin
	}
	return m
}

// mcpEndpoints lists the declared MCP endpoints sorted by server name.
func mcpEndpoints(ps *PolicySet) []MCPEndpoint {
	out := make([]MCPEndpoint, 0, len(ps.MCPServers))
	for _, s := range ps.MCPServers {
		out = append(out, MCPEndpoint{Server: s.Name, Host: s.Host, Path: s.Path})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out
}

// ---------------------------------------------------------------------------
// tools.rego: one block of rules per tool, each pointing back to its YAML.

type regoWriter struct {
	b    strings.Builder
	file string
}

func (w *regoWriter) line(format string, args ...any) {
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

func (w *regoWriter) from(s Source) {
	w.line("# from %s:%d:%d %s", w.file, s.Line, s.Col, s.Path)
}

// rule writes: findings contains <head> if { <body> }.
func (w *regoWriter) rule(s Source, head string, body ...string) {
	w.from(s)
	w.line("findings contains %s if {", head)
	for _, l := range body {
		w.line("\t%s", l)
	}
	w.line("}")
	w.line("")
}

// commentSafe keeps text that goes into a Rego comment on one line: a file
// name with a line break must not be able to inject Rego code.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return '?'
		}
		return r
	}, s)
}

// fmtEscape makes user text safe inside a sprintf format.
func fmtEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// str is a Rego string literal. JSON string syntax is valid Rego.
func str(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	return strings.TrimSuffix(buf.String(), "\n")
}

// rawStr is a Rego raw string literal when possible, for readable regexes.
func rawStr(s string) string {
	if !strings.Contains(s, "`") {
		return "`" + s + "`"
	}
	return str(s)
}

func scalarLit(v Scalar) string {
	if v.Kind == "string" {
		return str(v.Text)
	}
	return v.Text
}

// key is a Rego reference step: .name when it is an identifier, ["..."] otherwise.
func key(name string) string {
	if reIdent.MatchString(name) && !regoKeywords[name] {
		return "." + name
	}
	return "[" + str(name) + "]"
}

var regoKeywords = map[string]bool{
	"as": true, "default": true, "else": true, "false": true, "import": true, "not": true, "null": true,
	"package": true, "some": true, "true": true, "with": true, "in": true, "every": true, "contains": true, "if": true,
}

var typeArticle = map[string]string{
	TypeString: "a string", TypeNumber: "a number", TypeInteger: "an integer",
	TypeBoolean: "a boolean", TypeObject: "an object", TypeArray: "an array",
}

var bodyTypeCheck = map[string]string{
	TypeString: "is_string", TypeNumber: "is_number", TypeInteger: "is_integer",
	TypeBoolean: "is_boolean", TypeObject: "is_object", TypeArray: "is_array",
}

func toolsRego(ps *PolicySet) string {
	w := &regoWriter{file: commentSafe(filepath.Base(ps.File))}
	w.line("# Code generated by aegis from %s (policy set %s, tenant %s). DO NOT EDIT.", w.file, ps.Metadata.Name, ps.Metadata.Tenant)
	w.line("# Parameter checks and approval rules per tool, and the custom Rego modules.")
	w.line("# Each rule names the YAML position it was compiled from; rule ids follow")
	w.line("# the YAML field path.")
	w.line("package aegis")
	w.line("")
	w.line("import rego.v1")
	w.line("")
	for _, t := range ps.Tools {
		if len(t.Params) == 0 && len(t.Approval) == 0 {
			continue
		}
		w.line("# ---------------------------------------------------------------------------")
		w.line("# tool %s", t.Name)
		w.line("")
		mode := str(toolMode(ps, t.Mode))
		guard := "tool_name == " + str(t.Name)
		for _, p := range t.Params {
			paramRules(w, t, p, guard, mode)
		}
		for i, a := range t.Approval {
			approvalRule(w, t, i, a, guard, mode)
		}
	}
	for _, m := range ps.Rego {
		customWiring(w, ps, m)
	}
	return strings.TrimRight(w.b.String(), "\n") + "\n"
}

// paramValue returns the reason prefix and the body lines that bind x to
// the parameter's value, converted to its declared type and known valid.
func paramValue(t *Tool, p *Param) (prefix string, bind []string) {
	if t.isQueryTool() {
		return "query." + p.Name, []string{fmt.Sprintf("x := query_typed(query_params%s, %s)", key(p.Name), str(p.Type))}
	}
	return "params." + p.Name, []string{fmt.Sprintf("x := body_params%s", key(p.Name)), bodyTypeCheck[p.Type] + "(x)"}
}

func paramRules(w *regoWriter, t *Tool, p *Param, guard, mode string) {
	id := func(check string) string { return str(fmt.Sprintf("tools.%s.params.%s.%s", t.Name, p.Name, check)) }
	prefix, bind := paramValue(t, p)
	query := t.isQueryTool()
	src := "body_params"
	if query {
		src = "query_params"
	}
	if p.Required {
		w.rule(p.Src, fmt.Sprintf("finding(\"deny\", %s, %s, %s)", id("required"), str(prefix+": required parameter is missing"), mode),
			guard, fmt.Sprintf("not has_key(%s, %s)", src, str(p.Name)))
	}
	if query {
		bindS := fmt.Sprintf("s := query_params%s", key(p.Name))
		notType := fmt.Sprintf("finding(\"deny\", %s, sprintf(%s, [s]), %s)", id("type"), str(prefix+": %q is not "+typeArticle[p.Type]), mode)
		notOK := fmt.Sprintf("not query_ok(s, %s)", str(p.Type))
		if p.Type == TypeInteger || p.Type == TypeNumber {
			// A value too long to convert is named by its length, not
			// quoted: the reason lands in every audit event.
			w.rule(p.Src, notType, guard, bindS, "count(s) <= query_number_max_len", notOK)
			w.rule(p.Src, fmt.Sprintf("finding(\"deny\", %s, sprintf(%s, [count(s), query_number_max_len]), %s)", id("type"), str(prefix+": %d characters is too long for "+typeArticle[p.Type]+" (at most %d)"), mode),
				guard, bindS, "count(s) > query_number_max_len")
		} else {
			w.rule(p.Src, notType, guard, bindS, notOK)
		}
	} else {
		w.rule(p.Src, fmt.Sprintf("finding(\"deny\", %s, sprintf(%s, [type_name(x)]), %s)", id("type"), str(prefix+": expected "+typeArticle[p.Type]+", got %s"), mode),
			guard, fmt.Sprintf("x := body_params%s", key(p.Name)), fmt.Sprintf("not %s(x)", bodyTypeCheck[p.Type]))
	}
	check := func(s Source, name, cond, reason string) {
		body := append([]string{guard}, bind...)
		body = append(body, cond)
		w.rule(s, fmt.Sprintf("finding(\"deny\", %s, sprintf(%s, [x]), %s)", id(name), str(prefix+": "+reason), mode), body...)
	}
	if p.Min != nil {
		check(p.Src, "min", "x < "+p.Min.String(), "%v is below the minimum "+p.Min.String())
	}
	if p.Max != nil {
		check(p.Src, "max", "x > "+p.Max.String(), "%v is above the maximum "+p.Max.String())
	}
	if p.MinLength != nil {
		check(p.Src, "min_length", fmt.Sprintf("count(x) < %d", *p.MinLength), fmt.Sprintf("%%v is shorter than the minimum length %d", *p.MinLength))
	}
	if p.MaxLength != nil {
		body := append([]string{guard}, bind...)
		body = append(body, fmt.Sprintf("count(x) > %d", *p.MaxLength))
		w.rule(p.Src, fmt.Sprintf("finding(\"deny\", %s, sprintf(%s, [count(x)]), %s)", id("max_length"),
			str(fmt.Sprintf("%s: %%d characters is longer than the maximum %d", prefix, *p.MaxLength)), mode), body...)
	}
	if len(p.Enum) > 0 {
		lits := make([]string, len(p.Enum))
		texts := make([]string, len(p.Enum))
		for i, v := range p.Enum {
			lits[i], texts[i] = scalarLit(v), v.Text
		}
		check(p.Src, "enum", fmt.Sprintf("not x in {%s}", strings.Join(lits, ", ")), "%v is not one of "+fmtEscape(strings.Join(texts, ", ")))
	}
	if p.Pattern != "" {
		body := append([]string{guard}, bind...)
		body = append(body, fmt.Sprintf("not regex.match(%s, x)", rawStr(p.Pattern)))
		w.rule(p.Src, fmt.Sprintf("finding(\"deny\", %s, %s, %s)", id("pattern"), str(prefix+": value does not match the pattern "+p.Pattern), mode), body...)
	}
}

var conditionReason = map[string]string{
	"gt":  "%v is above the approval threshold ",
	"gte": "%v is at or above the approval threshold ",
	"lt":  "%v is below the approval threshold ",
	"lte": "%v is at or below the approval threshold ",
	"eq":  "%v requires approval",
	"ne":  "%v is not ",
	"in":  "%v requires approval",
}

var conditionOp = map[string]string{"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "==", "ne": "!="}

func approvalRule(w *regoWriter, t *Tool, i int, a *ApprovalRule, guard, mode string) {
	id := str(fmt.Sprintf("tools.%s.approval[%d]", t.Name, i))
	approvers := make([]string, len(a.Approvers))
	for k, v := range a.Approvers {
		approvers[k] = str(v)
	}
	tail := fmt.Sprintf("%s, [%s], %d)", mode, strings.Join(approvers, ", "), a.ExpiresIn)
	if a.When == nil {
		w.rule(a.Src, fmt.Sprintf("approval_finding(%s, %s, %s", id, str("tool: "+t.Name+" requires approval"), tail), guard)
		return
	}
	c := a.When
	p := t.param(c.Param.Name)
	prefix, bind := paramValue(t, p)
	reason := conditionReason[c.Op]
	var cond string
	switch c.Op {
	case "in":
		lits := make([]string, len(c.List))
		for k, v := range c.List {
			lits[k] = scalarLit(v)
		}
		cond = fmt.Sprintf("x in {%s}", strings.Join(lits, ", "))
	case "eq":
		cond = "x == " + scalarLit(c.Value)
	case "ne":
		cond = "x != " + scalarLit(c.Value)
		reason += fmtEscape(c.Value.Text) + " and requires approval"
	default:
		cond = fmt.Sprintf("x %s %s", conditionOp[c.Op], c.Value.Text)
		reason += c.Value.Text
	}
	body := append([]string{guard}, bind...)
	body = append(body, cond)
	w.rule(a.Src, fmt.Sprintf("approval_finding(%s, sprintf(%s, [x]), %s", id, str(prefix+": "+reason), tail), body...)
}

// customWiring wires a custom module's deny and approval sets into the
// findings. The module sees input.tool, the matched tool.
func customWiring(w *regoWriter, ps *PolicySet, m *RegoModule) {
	mode := str(toolMode(ps, m.Mode))
	w.line("# ---------------------------------------------------------------------------")
	w.line("# custom module %s", m.Name)
	w.line("")
	for _, r := range m.Rules {
		local := fmt.Sprintf("custom_%s_%s", m.Name, r)
		id := str(fmt.Sprintf("rego.%s.%s", m.Name, r))
		w.from(m.Src)
		w.line("%s := reasons if {", local)
		w.line("\treasons := data.aegis.custom.%s.%s with input.tool as tool_doc", m.Name, r)
		w.line("}")
		w.line("")
		// Elements that are not strings still count (fail closed); %v prints them.
		head := fmt.Sprintf("finding(\"deny\", %s, sprintf(\"rego.%s: %%v\", [reason]), %s)", id, m.Name, mode)
		if r == "approval" {
			head = fmt.Sprintf("approval_finding(%s, sprintf(\"rego.%s: %%v\", [reason]), %s, [], %d)", id, m.Name, mode, defaultApprovalSeconds)
		}
		w.rule(m.Src, head, "some reason in "+local)
	}
}

// defaultApprovalSeconds is how long an approval requested by custom Rego
// stays valid (YAML approval rules set their own expires_in).
const defaultApprovalSeconds = 900

// decodeData reads data.json with json.Number values, as OPA reads files.
func decodeData(data []byte) (map[string]any, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode data.json: %w", err)
	}
	return doc, nil
}
