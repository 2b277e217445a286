package policies

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	reSlug     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	reAgentID  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	reToolName = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	reToolPat  = regexp.MustCompile(`^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*$`)
	reIdent    = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	reParam    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	reHost     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
	rePath     = regexp.MustCompile(`^/[^\s?#]*$`)
	reRegion   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	reMCPTool  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// httpMethods a tool route may name (read-only).
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// queryMethods take their parameters from the query string; every other
// method takes them from the JSON body.
var queryMethods = []string{"GET", "HEAD", "DELETE"}

func checkRe(re *regexp.Regexp, what string) func(string) string {
	return func(s string) string {
		if re.MatchString(s) {
			return ""
		}
		return fmt.Sprintf("%q is not a valid %s", s, what)
	}
}

// decodePolicySet is the schema stage: it turns the YAML tree into the model,
// checking field names, types and per-field formats. Cross-references are the
// next stage's job.
func (d *decoder) decodePolicySet(root *yaml.Node, ps *PolicySet) {
	fs, ok := d.fields(root, "", "apiVersion", "kind", "metadata", "defaults", "dlp", "agents", "tools", "mcp_servers", "rego")
	if !ok {
		return
	}
	d.required(root, "", fs, "apiVersion", "kind", "metadata")
	ps.Defaults = Defaults{UnknownAgent: "deny", UnknownTool: "deny", Mode: "enforce", FailRead: "open", FailWrite: "closed", MaxBodyBytes: DefaultMaxBodyBytes}
	for _, f := range fs {
		switch f.key {
		case "apiVersion":
			if s, ok := d.str(f.val, f.key); ok {
				if s != APIVersion {
					d.errs.add(CodeEnum, at(f.val), f.key, "", "unsupported apiVersion %q (want %q)", s, APIVersion)
				}
				ps.APIVersion = s
			}
		case "kind":
			if s, ok := d.str(f.val, f.key); ok {
				if s != "PolicySet" {
					hint := ""
					if s == "PolicyTest" {
						hint = "policy test files are named *_test.yaml and run with `aegis policy test`"
					}
					d.errs.add(CodeEnum, at(f.val), f.key, hint, "kind %q is not PolicySet", s)
				}
				ps.Kind = s
			}
		case "metadata":
			d.decodeMetadata(f.val, &ps.Metadata)
		case "defaults":
			d.decodeDefaults(f.val, &ps.Defaults)
		case "dlp":
			items, _ := d.seq(f.val, f.key)
			for i, it := range items {
				if v := d.decodeDetector(it, index(f.key, i)); v != nil {
					ps.DLP = append(ps.DLP, v)
				} else {
					ps.dropped.dlp = true
				}
			}
		case "agents":
			items, _ := d.seq(f.val, f.key)
			for i, it := range items {
				if v := d.decodeAgent(it, index(f.key, i)); v != nil {
					ps.Agents = append(ps.Agents, v)
				} else {
					ps.dropped.agents = true
				}
			}
		case "tools":
			items, _ := d.seq(f.val, f.key)
			for i, it := range items {
				if v := d.decodeTool(it, index(f.key, i)); v != nil {
					ps.Tools = append(ps.Tools, v)
				} else {
					ps.dropped.tools = true
				}
			}
		case "mcp_servers":
			items, _ := d.seq(f.val, f.key)
			for i, it := range items {
				if v := d.decodeMCPServer(it, index(f.key, i)); v != nil {
					ps.MCPServers = append(ps.MCPServers, v)
				} else {
					ps.dropped.servers = true
				}
			}
		case "rego":
			items, _ := d.seq(f.val, f.key)
			for i, it := range items {
				if v := d.decodeRego(it, index(f.key, i)); v != nil {
					ps.Rego = append(ps.Rego, v)
				}
			}
		}
	}
}

func (d *decoder) decodeMetadata(n *yaml.Node, m *Metadata) {
	const path = "metadata"
	fs, ok := d.fields(n, path, "name", "tenant", "description")
	if !ok {
		return
	}
	d.required(n, path, fs, "name", "tenant")
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "name", "tenant":
			s, ok := d.nonEmpty(f.val, p)
			if !ok {
				continue
			}
			if !reSlug.MatchString(s) {
				d.errs.add(CodeEnum, at(f.val), p, "lower-case letters, digits and '-', at most 63 characters", "%q is not a valid %s", s, f.key)
				continue
			}
			if f.key == "name" {
				m.Name = s
			} else {
				m.Tenant = s
			}
		case "description":
			m.Description, _ = d.str(f.val, p)
		}
	}
}

func (d *decoder) decodeDefaults(n *yaml.Node, df *Defaults) {
	const path = "defaults"
	fs, ok := d.fields(n, path, "unknown_agent", "unknown_tool", "mode", "fail", "max_body_bytes", "require_intent")
	if !ok {
		return
	}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "unknown_agent":
			if s, ok := d.enum(f.val, p, "deny", "allow"); ok {
				df.UnknownAgent = s
			}
		case "unknown_tool":
			if s, ok := d.enum(f.val, p, "deny", "allow"); ok {
				df.UnknownTool = s
			}
		case "mode":
			if s, ok := d.enum(f.val, p, "enforce", "observe"); ok {
				df.Mode = s
			}
		case "fail":
			ffs, ok := d.fields(f.val, p, "read", "write")
			if !ok {
				continue
			}
			for _, ff := range ffs {
				if s, ok := d.enum(ff.val, join(p, ff.key), "open", "closed"); ok {
					if ff.key == "read" {
						df.FailRead = s
					} else {
						df.FailWrite = s
					}
				}
			}
		case "max_body_bytes":
			if v, ok := d.integer(f.val, p, 1, 1<<30); ok {
				df.MaxBodyBytes = v
			}
		case "require_intent":
			df.RequireIntent, _ = d.boolean(f.val, p)
		}
	}
}

func (d *decoder) decodeDetector(n *yaml.Node, path string) *Detector {
	fs, ok := d.fields(n, path, "name", "pattern", "builtin", "replace", "description")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "name")
	det := &Detector{Src: src(n, path)}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "name":
			if s, ok := d.nonEmpty(f.val, p); ok {
				if msg := checkRe(reIdent, "detector name (lower-case letters, digits, '_')")(s); msg != "" {
					d.errs.add(CodeEnum, at(f.val), p, "", "%s", msg)
				} else {
					det.Name = s
				}
			}
		case "pattern":
			if s, ok := d.nonEmpty(f.val, p); ok {
				if err := checkRegex(s); err != nil {
					d.errs.add(CodeRegex, at(f.val), p, "patterns use RE2 syntax (Go regexp)", "invalid regular expression: %v", err)
				} else {
					det.Pattern = s
				}
			}
		case "builtin":
			if s, ok := d.enum(f.val, p, dlpBuiltins...); ok {
				det.Builtin = s
			}
		case "replace":
			det.Replace, _ = d.str(f.val, p)
		case "description":
			d.str(f.val, p)
		}
	}
	hasPat, hasBuiltin := hasField(fs, "pattern"), hasField(fs, "builtin")
	if hasPat == hasBuiltin {
		d.errs.add(CodeMissing, at(n), path, "", "a detector needs exactly one of pattern or builtin")
	}
	if det.Replace == "" && !hasField(fs, "replace") && det.Name != "" {
		det.Replace = "[" + det.Name + "]"
	}
	if det.Name == "" {
		return nil
	}
	return det
}

func hasField(fs []field, name string) bool {
	for _, f := range fs {
		if f.key == name {
			return true
		}
	}
	return false
}

func (d *decoder) decodeAgent(n *yaml.Node, path string) *Agent {
	fs, ok := d.fields(n, path, "id", "owner", "team", "description", "intents", "tools", "regions", "budget", "rate", "may_delegate_to")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "id")
	a := &Agent{Src: src(n, path)}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "id":
			if s, ok := d.nonEmpty(f.val, p); ok {
				if msg := checkRe(reAgentID, "agent id")(s); msg != "" {
					d.errs.add(CodeEnum, at(f.val), p, "letters, digits, '.', '_' and '-'", "%s", msg)
				} else {
					a.ID = s
				}
			}
		case "owner":
			a.Owner, _ = d.str(f.val, p)
		case "team":
			a.Team, _ = d.str(f.val, p)
		case "description":
			a.Description, _ = d.str(f.val, p)
		case "intents":
			a.Intents, _, _ = d.strList(f.val, p, nil)
			if a.Intents == nil {
				a.Intents = []string{}
			}
		case "regions":
			a.Regions, _, _ = d.strList(f.val, p, checkRe(reRegion, "region"))
			if a.Regions == nil {
				a.Regions = []string{}
			}
		case "tools":
			names, srcs, _ := d.strList(f.val, p, checkRe(reToolPat, "tool name pattern (name segments or '*' separated by '.')"))
			for i := range names {
				a.Tools = append(a.Tools, Pattern{Src: srcs[i], Text: names[i]})
			}
		case "may_delegate_to":
			a.MayDelegateTo = d.refList(f.val, p)
		case "budget":
			bfs, ok := d.fields(f.val, p, "usd_per_day")
			if !ok {
				continue
			}
			d.required(f.val, p, bfs, "usd_per_day")
			for _, bf := range bfs {
				bp := join(p, bf.key)
				if v, ok := d.decimal(bf.val, bp); ok {
					if _, exact := v.Micro(); !exact || v.Sign() < 0 {
						d.errs.add(CodeDecimal, at(bf.val), bp, "budgets are counted in micro-dollars", "%s is not a non-negative amount with at most 6 decimal places", v)
						continue
					}
					a.BudgetPerDay, a.BudgetSrc = v, src(bf.val, bp)
				}
			}
		case "rate":
			rfs, ok := d.fields(f.val, p, "per_minute")
			if !ok {
				continue
			}
			d.required(f.val, p, rfs, "per_minute")
			for _, rf := range rfs {
				a.RatePerMinute, _ = d.integer(rf.val, join(p, rf.key), 1, 1_000_000_000)
			}
		}
	}
	if a.ID == "" {
		return nil
	}
	return a
}

func (d *decoder) decodeTool(n *yaml.Node, path string) *Tool {
	fs, ok := d.fields(n, path, "name", "owner", "description", "risk", "kind", "data_classes", "http", "mcp", "cost_usd",
		"params", "additional_params", "approval", "sanitize", "mode", "fail")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "name")
	t := &Tool{Src: src(n, path), Risk: "medium", Kind: "write", AdditionalParams: "allow"}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "name":
			if s, ok := d.nonEmpty(f.val, p); ok {
				if msg := checkRe(reToolName, "tool name (segments of letters, digits, '_' and '-' separated by '.')")(s); msg != "" {
					d.errs.add(CodeEnum, at(f.val), p, "", "%s", msg)
				} else {
					t.Name = s
				}
			}
		case "owner":
			t.Owner, _ = d.str(f.val, p)
		case "description":
			t.Description, _ = d.str(f.val, p)
		case "risk":
			if s, ok := d.enum(f.val, p, "low", "medium", "high", "critical"); ok {
				t.Risk = s
			}
		case "kind":
			if s, ok := d.enum(f.val, p, "read", "write"); ok {
				t.Kind = s
			}
		case "data_classes":
			t.DataClasses, _, _ = d.strList(f.val, p, nil)
		case "http":
			t.HTTP = d.decodeHTTPRoute(f.val, p)
		case "mcp":
			t.MCP = d.decodeMCPTool(f.val, p)
		case "cost_usd":
			if v, ok := d.decimal(f.val, p); ok {
				if _, exact := v.Micro(); !exact || v.Sign() < 0 {
					d.errs.add(CodeDecimal, at(f.val), p, "costs are counted in micro-dollars", "%s is not a non-negative amount with at most 6 decimal places", v)
					continue
				}
				t.CostUSD, t.CostSrc = v, src(f.val, p)
			}
		case "params":
			pfs, ok := d.fields(f.val, p)
			if !ok {
				continue
			}
			for _, pf := range pfs {
				pp := join(p, pf.key)
				if !reParam.MatchString(pf.key) {
					d.errs.add(CodeEnum, pf.kpos, pp, "letters, digits, '_' and '-'", "%q is not a valid parameter name", pf.key)
					t.droppedParams = true
					continue
				}
				if prm := d.decodeParam(pf.val, pp, pf.key, pf.kpos); prm != nil {
					t.Params = append(t.Params, prm)
				} else {
					t.droppedParams = true
				}
			}
		case "additional_params":
			if s, ok := d.enum(f.val, p, "allow", "deny"); ok {
				t.AdditionalParams = s
			}
		case "approval":
			items, _ := d.seq(f.val, p)
			for i, it := range items {
				if r := d.decodeApproval(it, index(p, i)); r != nil {
					t.Approval = append(t.Approval, r)
				}
			}
		case "sanitize":
			sfs, ok := d.fields(f.val, p, "params", "dlp")
			if !ok {
				continue
			}
			d.required(f.val, p, sfs, "params", "dlp")
			s := &Sanitize{Src: src(f.val, p)}
			for _, sf := range sfs {
				if sf.key == "params" {
					s.Params = d.refList(sf.val, join(p, sf.key))
				} else {
					s.DLP = d.refList(sf.val, join(p, sf.key))
				}
			}
			t.Sanitize = s
		case "mode":
			if s, ok := d.enum(f.val, p, "enforce", "observe"); ok {
				t.Mode = s
			}
		case "fail":
			if s, ok := d.enum(f.val, p, "open", "closed"); ok {
				t.Fail = s
			}
		}
	}
	if hasField(fs, "http") == hasField(fs, "mcp") {
		d.errs.add(CodeMissing, at(n), path, "", "a tool needs exactly one of http or mcp")
	}
	if t.Name == "" {
		return nil
	}
	return t
}

func (d *decoder) decodeHTTPRoute(n *yaml.Node, path string) *HTTPRoute {
	fs, ok := d.fields(n, path, "host", "method", "path", "path_prefix")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "host", "method")
	r := &HTTPRoute{Src: src(n, path)}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "host":
			if s, ok := d.nonEmpty(f.val, p); ok {
				if !reHost.MatchString(s) {
					d.errs.add(CodeEnum, at(f.val), p, "a lower-case DNS name without scheme or port", "%q is not a valid host", s)
				} else {
					r.Host = s
				}
			}
		case "method":
			if s, ok := d.enum(f.val, p, httpMethods...); ok {
				r.Method = s
			}
		case "path", "path_prefix":
			if s, ok := d.nonEmpty(f.val, p); ok {
				if !rePath.MatchString(s) {
					d.errs.add(CodeEnum, at(f.val), p, "a path starts with '/' and has no spaces, '?' or '#'", "%q is not a valid path", s)
				} else if f.key == "path" {
					r.Path = s
				} else {
					r.PathPrefix = s
				}
			}
		}
	}
	if hasField(fs, "path") == hasField(fs, "path_prefix") {
		d.errs.add(CodeMissing, at(n), path, "", "an http route needs exactly one of path or path_prefix")
	}
	return r
}

func (d *decoder) decodeMCPTool(n *yaml.Node, path string) *MCPTool {
	fs, ok := d.fields(n, path, "server", "tool")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "server", "tool")
	m := &MCPTool{Src: src(n, path)}
	for _, f := range fs {
		p := join(path, f.key)
		if s, ok := d.nonEmpty(f.val, p); ok {
			if f.key == "server" {
				m.Server = Ref{Src: src(f.val, p), Name: s}
			} else if !reMCPTool.MatchString(s) {
				d.errs.add(CodeEnum, at(f.val), p, "", "%q is not a valid MCP tool name", s)
			} else {
				m.Tool = s
			}
		}
	}
	return m
}

var paramTypes = []string{TypeString, TypeNumber, TypeInteger, TypeBoolean, TypeObject, TypeArray}

func (d *decoder) decodeParam(n *yaml.Node, path, name string, kpos pos) *Param {
	fs, ok := d.fields(n, path, "type", "description", "required", "min", "max", "min_length", "max_length", "enum", "pattern")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "type")
	prm := &Param{Src: Source{Line: kpos.Line, Col: kpos.Col, Path: path}, Name: name}
	for _, f := range fs {
		if f.key == "type" {
			prm.Type, _ = d.enum(f.val, join(path, f.key), paramTypes...)
		}
	}
	// applies reports an error when a constraint does not fit the type.
	applies := func(f field, types ...string) bool {
		if prm.Type == "" || contains(types, prm.Type) {
			return true
		}
		d.errs.add(CodeEnum, f.kpos, join(path, f.key), "", "%s does not apply to type %s (only to %s)", f.key, prm.Type, strings.Join(types, ", "))
		return false
	}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "description":
			prm.Description, _ = d.str(f.val, p)
		case "required":
			prm.Required, _ = d.boolean(f.val, p)
		case "min", "max":
			if !applies(f, TypeNumber, TypeInteger) {
				continue
			}
			v, ok := d.decimal(f.val, p)
			if !ok {
				continue
			}
			if f.key == "min" {
				prm.Min, prm.MinSrc = v, src(f.val, p)
			} else {
				prm.Max, prm.MaxSrc = v, src(f.val, p)
			}
		case "min_length", "max_length":
			if !applies(f, TypeString) {
				continue
			}
			v, ok := d.integer(f.val, p, 0, 1<<31)
			if !ok {
				continue
			}
			if f.key == "min_length" {
				prm.MinLength, prm.MinLenSrc = &v, src(f.val, p)
			} else {
				prm.MaxLength, prm.MaxLenSrc = &v, src(f.val, p)
			}
		case "pattern":
			if !applies(f, TypeString) {
				continue
			}
			if s, ok := d.nonEmpty(f.val, p); ok {
				if err := checkRegex(s); err != nil {
					d.errs.add(CodeRegex, at(f.val), p, "patterns use RE2 syntax (Go regexp) and are unanchored unless written with ^ and $", "invalid regular expression: %v", err)
				} else {
					prm.Pattern, prm.PatternSrc = s, src(f.val, p)
				}
			}
		case "enum":
			if !applies(f, TypeString, TypeNumber, TypeInteger, TypeBoolean) {
				continue
			}
			items, ok := d.seq(f.val, p)
			if !ok {
				continue
			}
			if len(items) == 0 {
				d.errs.add(CodeEnum, at(f.val), p, "", "enum must list at least one value")
				continue
			}
			seen := map[Scalar]bool{}
			for i, it := range items {
				ip := index(p, i)
				v, ok := d.scalar(it, ip)
				if !ok {
					continue
				}
				if want := scalarKindFor(prm.Type); want != "" && v.Kind != want {
					d.errs.add(CodeType, at(it), ip, "", "enum value of a %s parameter must be a %s", prm.Type, want)
					continue
				}
				if prm.Type == TypeInteger && strings.Contains(v.Text, ".") {
					d.errs.add(CodeType, at(it), ip, "", "enum value of an integer parameter must be an integer")
					continue
				}
				if seen[v] {
					d.errs.add(CodeDuplicate, at(it), ip, "", "%s is listed twice", v.Text)
					continue
				}
				seen[v] = true
				prm.Enum = append(prm.Enum, v)
			}
			prm.EnumSrc = src(f.val, p)
		}
	}
	if prm.Min != nil && prm.Max != nil && prm.Min.Cmp(prm.Max) > 0 {
		d.errs.add(CodeRange, pos{prm.MinSrc.Line, prm.MinSrc.Col}, join(path, "min"), "", "min %s is greater than max %s", prm.Min, prm.Max)
	}
	if prm.MinLength != nil && prm.MaxLength != nil && *prm.MinLength > *prm.MaxLength {
		d.errs.add(CodeRange, pos{prm.MinLenSrc.Line, prm.MinLenSrc.Col}, join(path, "min_length"), "", "min_length %d is greater than max_length %d", *prm.MinLength, *prm.MaxLength)
	}
	if prm.Type == TypeInteger {
		for _, b := range []struct {
			v   *Decimal
			s   Source
			key string
		}{{prm.Min, prm.MinSrc, "min"}, {prm.Max, prm.MaxSrc, "max"}} {
			if b.v != nil && strings.Contains(b.v.String(), ".") {
				d.errs.add(CodeType, pos{b.s.Line, b.s.Col}, join(path, b.key), "", "%s of an integer parameter must be an integer", b.key)
			}
		}
	}
	return prm
}

// scalarKindFor is the Scalar kind values of a param type compare with.
func scalarKindFor(t string) string {
	switch t {
	case TypeString:
		return "string"
	case TypeNumber, TypeInteger:
		return "number"
	case TypeBoolean:
		return "boolean"
	}
	return ""
}

var conditionOps = []string{"gt", "gte", "lt", "lte", "eq", "ne", "in"}

func (d *decoder) decodeApproval(n *yaml.Node, path string) *ApprovalRule {
	fs, ok := d.fields(n, path, "when", "approvers", "expires_in")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "approvers")
	r := &ApprovalRule{Src: src(n, path), ExpiresIn: 900}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "approvers":
			r.Approvers, _, _ = d.strList(f.val, p, nil)
			if r.Approvers != nil && len(r.Approvers) == 0 {
				d.errs.add(CodeMissing, at(f.val), p, "", "list at least one approver")
			}
		case "expires_in":
			if v, ok := d.duration(f.val, p); ok {
				r.ExpiresIn = v
			}
		case "when":
			wfs, ok := d.fields(f.val, p, append([]string{"param"}, conditionOps...)...)
			if !ok {
				continue
			}
			d.required(f.val, p, wfs, "param")
			c := &Condition{Src: src(f.val, p)}
			nOps := 0
			for _, wf := range wfs {
				wp := join(p, wf.key)
				switch wf.key {
				case "param":
					if s, ok := d.nonEmpty(wf.val, wp); ok {
						c.Param = Ref{Src: src(wf.val, wp), Name: s}
					}
				case "in":
					nOps++
					c.Op = wf.key
					items, _ := d.seq(wf.val, wp)
					for i, it := range items {
						if v, ok := d.scalar(it, index(wp, i)); ok {
							c.List = append(c.List, v)
						}
					}
					if len(items) == 0 {
						d.errs.add(CodeEnum, at(wf.val), wp, "", "in must list at least one value")
					}
				default:
					nOps++
					c.Op = wf.key
					c.Value, _ = d.scalar(wf.val, wp)
					if wf.key != "eq" && wf.key != "ne" && c.Value.Kind != "" && c.Value.Kind != "number" {
						d.errs.add(CodeType, at(wf.val), wp, "", "%s compares numbers", wf.key)
					}
				}
			}
			if nOps != 1 {
				d.errs.add(CodeMissing, at(f.val), p, "", "a condition needs exactly one of %s", strings.Join(conditionOps, ", "))
				continue
			}
			r.When = c
		}
	}
	return r
}

func (d *decoder) decodeMCPServer(n *yaml.Node, path string) *MCPServer {
	fs, ok := d.fields(n, path, "name", "description", "http")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "name", "http")
	s := &MCPServer{Src: src(n, path)}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "name":
			if v, ok := d.nonEmpty(f.val, p); ok {
				if !reToolName.MatchString(v) || strings.Contains(v, ".") {
					d.errs.add(CodeEnum, at(f.val), p, "letters, digits, '_' and '-'", "%q is not a valid server name", v)
				} else {
					s.Name = v
				}
			}
		case "description":
			d.str(f.val, p)
		case "http":
			hfs, ok := d.fields(f.val, p, "host", "path")
			if !ok {
				continue
			}
			d.required(f.val, p, hfs, "host", "path")
			for _, hf := range hfs {
				hp := join(p, hf.key)
				v, ok := d.nonEmpty(hf.val, hp)
				if !ok {
					continue
				}
				if hf.key == "host" {
					if !reHost.MatchString(v) {
						d.errs.add(CodeEnum, at(hf.val), hp, "a lower-case DNS name without scheme or port", "%q is not a valid host", v)
					} else {
						s.Host = v
					}
				} else if !rePath.MatchString(v) {
					d.errs.add(CodeEnum, at(hf.val), hp, "a path starts with '/' and has no spaces, '?' or '#'", "%q is not a valid path", v)
				} else {
					s.Path = v
				}
			}
		}
	}
	if s.Name == "" {
		return nil
	}
	return s
}

func (d *decoder) decodeRego(n *yaml.Node, path string) *RegoModule {
	fs, ok := d.fields(n, path, "name", "mode", "source")
	if !ok {
		return nil
	}
	d.required(n, path, fs, "name", "source")
	m := &RegoModule{Src: src(n, path)}
	for _, f := range fs {
		p := join(path, f.key)
		switch f.key {
		case "name":
			if s, ok := d.nonEmpty(f.val, p); ok {
				if !reIdent.MatchString(s) {
					d.errs.add(CodeEnum, at(f.val), p, "lower-case letters, digits and '_'", "%q is not a valid module name", s)
				} else {
					m.Name = s
				}
			}
		case "mode":
			if s, ok := d.enum(f.val, p, "enforce", "observe"); ok {
				m.Mode = s
			}
		case "source":
			if s, ok := d.nonEmpty(f.val, p); ok {
				m.Source = s
				m.SourceSrc = src(f.val, p)
				// A literal block (|) starts on the line after the indicator
				// and keeps the text line for line.
				if f.val.Style&yaml.LiteralStyle != 0 {
					m.SourceSrc.Line++
					m.literal = true
				}
			}
		}
	}
	if m.Name == "" {
		return nil
	}
	return m
}
