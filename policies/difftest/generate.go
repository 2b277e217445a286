// Package difftest generates input documents for a policy set — valid,
// boundary and hostile — so that the engine's decisions can be compared with
// OPA's own evaluator on the same compiled Rego. It knows the policy's
// agents, tools, parameters and constraints, so most generated calls land
// near the edges the policy draws (min/max, patterns, enums, regions,
// delegation chains, budgets) instead of being rejected at the first check.
package difftest

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/policies"
)

// Generator produces input documents for one policy set. It is
// deterministic for a given seed.
type Generator struct {
	set       *policies.PolicySet
	plausible bool // the current document is meant to pass most checks
	rng       *rand.Rand
	agents    []string
	regions   []string
	intents   []string
}

// New returns a generator for set seeded with seed.
func New(set *policies.PolicySet, seed uint64) *Generator {
	g := &Generator{set: set, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	regions := map[string]bool{"us-east-1": true, "": true}
	intents := map[string]bool{"": true, "exfiltrate": true}
	for _, a := range set.Agents {
		g.agents = append(g.agents, a.ID)
		for _, r := range a.Regions {
			regions[r] = true
		}
		for _, i := range a.Intents {
			intents[i] = true
		}
	}
	g.agents = append(g.agents, "intern-bot", "")
	for r := range regions {
		g.regions = append(g.regions, r)
	}
	for i := range intents {
		g.intents = append(g.intents, i)
	}
	// Map iteration order is random; sort for determinism.
	sortStrings(g.regions)
	sortStrings(g.intents)
	return g
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func (g *Generator) pick(list []string) string { return list[g.rng.IntN(len(list))] }

func (g *Generator) chance(p float64) bool { return g.rng.Float64() < p }

// Next returns one input document.
//
// Half the documents are plausible: a listed agent calling a tool it is
// granted, from one of its regions, with parameters drawn from values that
// satisfy each constraint, so that allow, sanitize and approval paths are
// reached as often as the many ways to be denied.
func (g *Generator) Next() engine.Value {
	doc := engine.NewObject(6)
	doc.Set("version", engine.Int(1))
	g.plausible = g.chance(0.5) && len(g.set.Agents) > 0
	var tool *policies.Tool
	var agent *policies.Agent
	if g.plausible {
		agent = g.set.Agents[g.rng.IntN(len(g.set.Agents))]
		if granted := g.granted(agent); len(granted) > 0 {
			tool = granted[g.rng.IntN(len(granted))]
		}
	} else if len(g.set.Tools) > 0 && !g.chance(0.05) {
		tool = g.set.Tools[g.rng.IntN(len(g.set.Tools))]
	}
	doc.Set("agent", g.agent(agent))
	req, params, mcp := g.call(tool)
	doc.Set("request", req)
	if params != nil {
		doc.Set("params", params)
	}
	if mcp != nil {
		doc.Set("mcp", mcp)
	}
	doc.Set("context", g.context(agent))
	return doc
}

// granted lists the tools agent's patterns match ('*' matches one or more
// dot-separated segments).
func (g *Generator) granted(a *policies.Agent) []*policies.Tool {
	var out []*policies.Tool
	for _, t := range g.set.Tools {
		for _, p := range a.Tools {
			if patternMatch(strings.Split(p.Text, "."), strings.Split(t.Name, ".")) {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

func patternMatch(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "*" {
		for i := 1; i <= len(name); i++ {
			if patternMatch(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	return len(name) > 0 && pat[0] == name[0] && patternMatch(pat[1:], name[1:])
}

func (g *Generator) agent(pa *policies.Agent) engine.Value {
	a := engine.NewObject(6)
	id := g.pick(g.agents)
	region := g.pick(g.regions)
	if pa != nil {
		id = pa.ID
		region = g.regionOf(pa)
	}
	chain := engine.NewArray(3)
	chain.Append(engine.String(id))
	if g.chance(0.25) && pa == nil || g.chance(0.1) {
		for n := 1 + g.rng.IntN(5); n > 0; n-- { // up to 5 principals: past the limit of 4
			chain.Append(engine.String(g.pick(g.agents)))
		}
	}
	a.Set("id", engine.String(id))
	a.Set("tenant", engine.String(g.set.Metadata.Tenant))
	a.Set("chain", chain)
	a.Set("region", engine.String(region))
	a.Set("scope", engine.NewArray(0))
	a.Set("claims", engine.NewObject(0))
	return a
}

// regionOf picks a region the agent may act in ("" when it lists none and
// any region is allowed).
func (g *Generator) regionOf(a *policies.Agent) string {
	if len(a.Regions) == 0 {
		return g.pick(g.regions[1:])
	}
	return g.pick(a.Regions)
}

func (g *Generator) context(pa *policies.Agent) engine.Value {
	c := engine.NewObject(8)
	region := g.pick(g.regions[1:]) // node region is never empty
	intent := g.pick(g.intents)
	if pa != nil {
		region = g.regionOf(pa)
		intent = ""
		if len(pa.Intents) > 0 && g.chance(0.5) {
			intent = g.pick(pa.Intents)
		}
	}
	c.Set("region", engine.String(region))
	// Times spread over two weeks so that weekday rules see every day.
	t := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).Add(time.Duration(g.rng.Int64N(14*24*3600)) * time.Second)
	c.Set("time", engine.String(t.Format(time.RFC3339)))
	c.Set("time_ns", engine.Int(t.UnixNano()))
	c.Set("intent", engine.String(intent))
	spent := []int64{0, 1, 19_950_000, 19_980_000, 19_999_999, 20_000_000, 25_000_000, g.rng.Int64N(30_000_000)}[g.rng.IntN(8)]
	b := engine.NewObject(2)
	b.Set("spent_micro_usd_today", engine.Int(spent))
	n, _ := engine.Number(microToDecimal(spent))
	b.Set("spent_usd_today", n)
	c.Set("budget", b)
	c.Set("state_seq", engine.Int(0))
	if g.chance(0.05) {
		o := engine.NewObject(3)
		o.Set("jti", engine.String("j-"+strconv.Itoa(g.rng.IntN(1000))))
		if len(g.set.Tools) > 0 {
			o.Set("tool", engine.String(g.set.Tools[g.rng.IntN(len(g.set.Tools))].Name))
		}
		o.Set("params_digest", engine.String("00"))
		c.Set("override", o)
	}
	return c
}

func microToDecimal(m int64) string {
	s := fmt.Sprintf("%d.%06d", m/1_000_000, m%1_000_000)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// call builds request, params and mcp for a call to tool (nil: a call that
// matches nothing, or an MCP housekeeping method).
func (g *Generator) call(tool *policies.Tool) (req, params, mcp engine.Value) {
	r := engine.NewObject(7)
	method, host, path := "POST", "unknown.example", "/"
	var server *policies.MCPServer
	if tool != nil && tool.HTTP != nil {
		method, host, path = tool.HTTP.Method, tool.HTTP.Host, tool.HTTP.Path
		if tool.HTTP.PathPrefix != "" {
			path = tool.HTTP.PathPrefix + strconv.Itoa(g.rng.IntN(100))
		}
		if method == "" {
			method = "GET"
		}
	} else if len(g.set.MCPServers) > 0 && (tool == nil || tool.MCP != nil) {
		server = g.set.MCPServers[g.rng.IntN(len(g.set.MCPServers))]
		if tool != nil {
			for _, s := range g.set.MCPServers {
				if s.Name == tool.MCP.Server.Name {
					server = s
				}
			}
		}
		host, path = server.Host, server.Path
	}
	switch {
	case g.chance(0.04):
		method = []string{"GET", "DELETE", "PUT", "PATCH", "HEAD"}[g.rng.IntN(5)]
	case g.chance(0.03):
		path += "/extra"
	case g.chance(0.02):
		host = "evil.example"
	}
	query := engine.NewObject(2)
	bodyType := "json"
	var p engine.Value
	if tool != nil && (method == "GET" || method == "HEAD" || method == "DELETE") && server == nil {
		bodyType = "none"
		for k, v := range g.params(tool, true) {
			query.Set(k, v)
		}
	} else if tool != nil {
		obj := engine.NewObject(4)
		for k, v := range g.params(tool, false) {
			obj.Set(k, v)
		}
		p = obj
		if g.chance(0.03) {
			p = engine.String("not an object")
		}
		if g.chance(0.03) {
			query.Set("debug", engine.String("1"))
		}
	}
	if g.chance(0.02) {
		bodyType = "other"
	}
	r.Set("method", engine.String(method))
	r.Set("scheme", engine.String("https"))
	r.Set("host", engine.String(host))
	r.Set("path", engine.String(path))
	r.Set("query", query)
	h := engine.NewObject(1)
	h.Set("content-type", engine.String("application/json"))
	r.Set("headers", h)
	r.Set("body_type", engine.String(bodyType))
	if server != nil {
		m := engine.NewObject(5)
		m.Set("server", engine.String(server.Name))
		kind, rpc := "request", "tools/call"
		switch {
		case method == "GET":
			kind, rpc = "stream", ""
		case method == "DELETE":
			kind, rpc = "session_end", ""
		case tool == nil || g.chance(0.1):
			rpc = []string{"tools/list", "initialize", "ping", "notifications/initialized", "resources/read", "tools/call", ""}[g.rng.IntN(7)]
			if strings.HasPrefix(rpc, "notifications/") {
				kind = "notification"
			} else if rpc == "" {
				kind = "response"
			}
		}
		m.Set("kind", engine.String(kind))
		if rpc != "" {
			m.Set("method", engine.String(rpc))
			m.Set("id", engine.Int(int64(g.rng.IntN(100))))
		}
		if rpc == "tools/call" {
			name := "exec_shell"
			if tool != nil && tool.MCP != nil {
				name = tool.MCP.Tool
			}
			m.Set("tool", engine.String(name))
		}
		mcp = m
	}
	return r, p, mcp
}

// params generates parameter values near the edges of tool's constraints.
// asQuery renders every value as a string, as query parameters arrive.
func (g *Generator) params(tool *policies.Tool, asQuery bool) map[string]engine.Value {
	out := map[string]engine.Value{}
	for _, p := range tool.Params {
		if !p.Required && g.chance(0.3) {
			continue
		}
		if p.Required && g.chance(0.03) {
			continue
		}
		out[p.Name] = g.value(p, asQuery)
	}
	if g.chance(0.04) {
		out["callback_url"] = engine.String("http://evil.example")
	}
	return out
}

var cards = []string{"4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "4111 1111 1111 1112", "5500 0000 0000 0004", "41111111111111111111111"}
var ibans = []string{"DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "DE00370400440532013000"}

func (g *Generator) value(p *policies.Param, asQuery bool) engine.Value {
	num := func(text string) engine.Value {
		if asQuery {
			return engine.String(text)
		}
		v, err := engine.Number(text)
		if err != nil {
			return engine.String(text)
		}
		return v
	}
	if g.plausible && g.chance(0.8) {
		if v, ok := g.validValue(p, num); ok {
			return v
		}
	}
	if g.chance(0.03) { // wrong type
		if p.Type == policies.TypeString {
			return num("42")
		}
		return engine.String("forty-two")
	}
	switch p.Type {
	case policies.TypeNumber, policies.TypeInteger:
		var cands []string
		for _, d := range []*policies.Decimal{p.Min, p.Max} {
			if d != nil {
				cands = append(cands, d.String(), bump(d.String(), 1), bump(d.String(), -1), bump(d.String(), 0.001))
			}
		}
		for _, c := range p.Enum {
			cands = append(cands, c.Text)
		}
		cands = append(cands, "0", "1", "1.5", "-1", "7500", "5000", "5000.01", "1e3", "100000", strconv.Itoa(g.rng.IntN(60000)))
		return num(cands[g.rng.IntN(len(cands))])
	case policies.TypeBoolean:
		return engine.Bool(g.chance(0.5))
	case policies.TypeString:
		var cands []string
		for _, c := range p.Enum {
			cands = append(cands, c.Text, strings.ToLower(c.Text))
		}
		if p.MaxLength != nil {
			n := int(*p.MaxLength)
			cands = append(cands, strings.Repeat("é", n), strings.Repeat("a", n+1))
		}
		cands = append(cands, "", "payments", "staging", "production", "ops@acme.example", "someone@gmail.com",
			"card "+cards[g.rng.IntN(len(cards))]+" thanks", "iban "+ibans[g.rng.IntN(len(ibans))],
			"mail bob@example.com about "+cards[g.rng.IntN(len(cards))], ibans[g.rng.IntN(len(ibans))],
			"registry.platform.internal/shop/api@sha256:"+strings.Repeat("0a", 32),
			"registry.platform.internal/shop/api:latest", "pod-1.x", "../../etc/passwd", "\u0000\u202e")
		return engine.String(cands[g.rng.IntN(len(cands))])
	case policies.TypeArray:
		a := engine.NewArray(1)
		a.Append(engine.String("x"))
		return a
	case policies.TypeObject:
		return engine.NewObject(0)
	}
	return engine.Null()
}

// validValue draws a value that satisfies p's constraints when it can.
func (g *Generator) validValue(p *policies.Param, num func(string) engine.Value) (engine.Value, bool) {
	if len(p.Enum) > 0 {
		e := p.Enum[g.rng.IntN(len(p.Enum))]
		switch e.Kind {
		case "number":
			return num(e.Text), true
		case "boolean":
			return engine.Bool(e.Text == "true"), true
		}
		return engine.String(e.Text), true
	}
	switch p.Type {
	case policies.TypeNumber, policies.TypeInteger:
		lo, hi := 0.0, 1000.0
		if p.Min != nil {
			lo, _ = strconv.ParseFloat(p.Min.String(), 64)
		}
		if p.Max != nil {
			hi, _ = strconv.ParseFloat(p.Max.String(), 64)
		}
		if hi > lo+10000 {
			hi = lo + 10000 // stay near the bottom, where approval thresholds sit
		}
		v := lo + g.rng.Float64()*(hi-lo)
		if p.Type == policies.TypeInteger {
			return num(strconv.FormatInt(int64(v+0.5), 10)), true
		}
		return num(strconv.FormatFloat(float64(int64(v*100))/100, 'f', -1, 64)), true
	case policies.TypeString:
		cands := []string{"payments", "staging", "pod-1.x", "ops@acme.example", "refund",
			"card " + cards[g.rng.IntN(len(cards))] + " thanks", "iban " + ibans[g.rng.IntN(len(ibans))],
			ibans[g.rng.IntN(len(ibans))], "registry.platform.internal/shop/api@sha256:" + strings.Repeat("0a", 32)}
		if p.Pattern != "" {
			re, err := regexp.Compile(p.Pattern)
			if err != nil {
				return nil, false
			}
			var ok []string
			for _, c := range cands {
				if re.MatchString(c) {
					ok = append(ok, c)
				}
			}
			cands = ok
		}
		if len(cands) == 0 {
			return nil, false
		}
		return engine.String(cands[g.rng.IntN(len(cands))]), true
	case policies.TypeBoolean:
		return engine.Bool(g.chance(0.5)), true
	}
	return nil, false
}

// bump moves a decimal literal by delta (a float is fine here: it only
// chooses test values; the comparison under test is exact).
func bump(text string, delta float64) string {
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return text
	}
	return strconv.FormatFloat(f+delta, 'f', -1, 64)
}
