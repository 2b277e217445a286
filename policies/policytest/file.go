// Package policytest loads PolicyTest tables (`kind: PolicyTest`) and runs
// them against a compiled policy through the same decision path the data
// plane uses (package decide).
package policytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/policies"
)

// File is one PolicyTest document.
type File struct {
	Path     string
	Policy   string // the policy file or directory, relative to the test file
	Defaults Defaults
	Cases    []Case
}

// Defaults are the values a case inherits when it does not set them.
type Defaults struct {
	Region      string
	TokenRegion string
	Time        string
	Tenant      string
}

// Case is one row of the table: a call as the proxy sees it and what Aegis
// must decide.
type Case struct {
	Name string
	policies.Location

	Agent         string
	ActingFor     []string // principals, nearest first; the last one is the token's sub
	Tenant        string
	Region        string // the enforcing node's region
	TokenRegion   string // the token's region claim
	Time          string
	Intent        string
	SpentUSDToday string // exact decimal text
	Headers       [][2]string
	Request       Request
	Expect        Expect
}

// Request is the HTTP request of a case.
type Request struct {
	Method  string
	URL     string
	Headers [][2]string
	JSON    []byte // the json: value rendered as JSON, nil when absent
	Body    []byte // the raw body:, nil when absent
	HasBody bool
}

// Expect is what a case must produce.
type Expect struct {
	Action               string
	Reasons              []string // exact list, when given
	HasReasons           bool
	ReasonsInclude       []string // case-insensitive substrings, each found in some reason
	ReasonsExclude       []string // case-insensitive substrings found in no reason
	ShadowAction         string
	HasShadowAction      bool
	ShadowReasonsInclude []string
	ForwardedJSON        []byte // the body forwarded upstream, compared as JSON
	RuleIDsInclude       []string
}

// LoadFile reads and decodes a PolicyTest file.
func LoadFile(path string) (*File, policies.Errors) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, policies.Errors{{Code: policies.CodeIO, Message: err.Error(), Location: policies.Location{File: path, Line: 1, Col: 1}}}
	}
	return Load(path, data)
}

// Load decodes a PolicyTest document. Every problem is reported with its
// location; unknown fields are errors, as in policies.
func Load(path string, data []byte) (*File, policies.Errors) {
	d := &dec{file: path}
	root := d.document(data)
	if root == nil {
		return nil, d.errs
	}
	f := &File{Path: path}
	fs := d.fields(root, "", "apiVersion", "kind", "policy", "defaults", "cases")
	for _, kv := range fs {
		switch kv.key {
		case "apiVersion":
			if v := d.str(kv.val, "apiVersion"); v != "" && v != "aegis.policy/v1" {
				d.add(kv.val, "apiVersion", policies.CodeEnum, "want aegis.policy/v1", "unsupported apiVersion %q", v)
			}
		case "kind":
			if v := d.str(kv.val, "kind"); v != "" && v != "PolicyTest" {
				d.add(kv.val, "kind", policies.CodeEnum, "a test table has kind: PolicyTest", "kind %q is not PolicyTest", v)
			}
		case "policy":
			f.Policy = d.str(kv.val, "policy")
		case "defaults":
			for _, dkv := range d.fields(kv.val, "defaults", "region", "token_region", "time", "tenant") {
				p := "defaults." + dkv.key
				switch dkv.key {
				case "region":
					f.Defaults.Region = d.str(dkv.val, p)
				case "token_region":
					f.Defaults.TokenRegion = d.str(dkv.val, p)
				case "time":
					f.Defaults.Time = d.str(dkv.val, p)
				case "tenant":
					f.Defaults.Tenant = d.str(dkv.val, p)
				}
			}
		case "cases":
			if kv.val.Kind != yaml.SequenceNode {
				d.add(kv.val, "cases", policies.CodeType, "", "want a list of cases, got %s", kindName(kv.val))
				continue
			}
			for i, cn := range kv.val.Content {
				f.Cases = append(f.Cases, d.testCase(cn, fmt.Sprintf("cases[%d]", i)))
			}
		}
	}
	d.required(root, "", fs, "apiVersion", "kind", "policy", "cases")
	names := map[string]string{}
	for i, c := range f.Cases {
		p := fmt.Sprintf("cases[%d]", i)
		if c.Name == "" {
			continue
		}
		if prev, ok := names[c.Name]; ok {
			d.errs = append(d.errs, &policies.Error{Code: policies.CodeDuplicate, Location: c.Location, Path: p + ".name",
				Message: fmt.Sprintf("case name %q is also used by %s", c.Name, prev), Hint: "give each case its own name so failures can be told apart"})
		}
		names[c.Name] = p
	}
	d.errs.Sort()
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return f, nil
}

func (d *dec) testCase(n *yaml.Node, path string) Case {
	c := Case{Location: policies.Location{File: d.file, Line: n.Line, Col: n.Column}}
	fs := d.fields(n, path, "name", "agent", "acting_for", "tenant", "region", "token_region", "time", "intent",
		"spent_usd_today", "headers", "request", "expect")
	for _, kv := range fs {
		p := path + "." + kv.key
		switch kv.key {
		case "name":
			c.Name = d.str(kv.val, p)
		case "agent":
			c.Agent = d.str(kv.val, p)
		case "acting_for":
			c.ActingFor = d.strs(kv.val, p)
		case "tenant":
			c.Tenant = d.str(kv.val, p)
		case "region":
			c.Region = d.str(kv.val, p)
		case "token_region":
			c.TokenRegion = d.str(kv.val, p)
		case "time":
			c.Time = d.str(kv.val, p)
		case "intent":
			c.Intent = d.str(kv.val, p)
		case "spent_usd_today":
			if kv.val.Kind != yaml.ScalarNode || (kv.val.Tag != "!!int" && kv.val.Tag != "!!float" && kv.val.Tag != "!!str") {
				d.add(kv.val, p, policies.CodeType, "", "want a decimal number such as 19.98")
				continue
			}
			if _, ok := new(big.Rat).SetString(kv.val.Value); !ok || strings.ContainsAny(kv.val.Value, "/eE") {
				d.add(kv.val, p, policies.CodeDecimal, "write it as a plain decimal such as 19.98", "%q is not a decimal amount", kv.val.Value)
				continue
			}
			c.SpentUSDToday = kv.val.Value
		case "headers":
			c.Headers = d.headers(kv.val, p)
		case "request":
			c.Request = d.request(kv.val, p)
		case "expect":
			c.Expect = d.expect(kv.val, p)
		}
	}
	d.required(n, path, fs, "name", "agent", "request", "expect")
	return c
}

func (d *dec) request(n *yaml.Node, path string) Request {
	var r Request
	fs := d.fields(n, path, "method", "url", "headers", "json", "body")
	for _, kv := range fs {
		p := path + "." + kv.key
		switch kv.key {
		case "method":
			r.Method = d.str(kv.val, p)
		case "url":
			r.URL = d.str(kv.val, p)
		case "headers":
			r.Headers = d.headers(kv.val, p)
		case "json":
			r.JSON = d.json(kv.val, p)
			r.HasBody = true
		case "body":
			if kv.val.Kind != yaml.ScalarNode || kv.val.Tag != "!!str" {
				d.add(kv.val, p, policies.CodeType, "quote the raw body as a YAML string; use json: for structured bodies", "want a string, got %s", kindName(kv.val))
				continue
			}
			r.Body = []byte(kv.val.Value)
			r.HasBody = true
		}
	}
	d.required(n, path, fs, "method", "url")
	if r.JSON != nil && r.Body != nil {
		d.add(n, path, policies.CodeEnum, "use json: for a structured body or body: for raw bytes", "json and body are mutually exclusive")
	}
	return r
}

func (d *dec) expect(n *yaml.Node, path string) Expect {
	var e Expect
	fs := d.fields(n, path, "action", "reasons", "reasons_include", "reasons_exclude", "shadow_action",
		"shadow_reasons_include", "forwarded_json", "rule_ids_include")
	actions := []string{"allow", "deny", "sanitize", "approval_needed"}
	for _, kv := range fs {
		p := path + "." + kv.key
		switch kv.key {
		case "action":
			e.Action = d.enum(kv.val, p, actions...)
		case "reasons":
			e.Reasons = d.strs(kv.val, p)
			e.HasReasons = true
		case "reasons_include":
			e.ReasonsInclude = d.strs(kv.val, p)
		case "reasons_exclude":
			e.ReasonsExclude = d.strs(kv.val, p)
		case "shadow_action":
			e.ShadowAction = d.enum(kv.val, p, actions...)
			e.HasShadowAction = true
		case "shadow_reasons_include":
			e.ShadowReasonsInclude = d.strs(kv.val, p)
		case "forwarded_json":
			e.ForwardedJSON = d.json(kv.val, p)
		case "rule_ids_include":
			e.RuleIDsInclude = d.strs(kv.val, p)
		}
	}
	d.required(n, path, fs, "action")
	return e
}

// dec walks yaml.Nodes, collecting located errors.
type dec struct {
	file string
	errs policies.Errors
}

type keyVal struct {
	key      string
	key0     *yaml.Node
	val      *yaml.Node
	fullPath string
}

func (d *dec) add(n *yaml.Node, path, code, hint, format string, args ...any) {
	if len(d.errs) >= policies.MaxErrors {
		return
	}
	d.errs = append(d.errs, &policies.Error{Code: code, Message: fmt.Sprintf(format, args...),
		Location: policies.Location{File: d.file, Line: n.Line, Col: n.Column}, Path: path, Hint: hint})
}

func (d *dec) document(data []byte) *yaml.Node {
	yd := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := yd.Decode(&doc); err != nil {
		msg := err.Error()
		if errors.Is(err, io.EOF) {
			msg = "the document is empty"
		}
		line := 1
		if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
			if num, tail, ok := strings.Cut(rest, ":"); ok {
				if l, err := strconv.Atoi(num); err == nil {
					line, msg = l, strings.TrimSpace(tail)
				}
			}
		}
		d.errs = append(d.errs, &policies.Error{Code: policies.CodeYAML, Message: msg, Location: policies.Location{File: d.file, Line: line, Col: 1}})
		return nil
	}
	if len(doc.Content) != 1 {
		d.add(&doc, "", policies.CodeMissing, "", "the document is empty")
		return nil
	}
	return doc.Content[0]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!null":
		return "null"
	case "!!bool":
		return "a boolean"
	case "!!int", "!!float":
		return "a number"
	}
	return "a string"
}

// fields returns the entries of mapping n, reporting unknown and repeated keys.
func (d *dec) fields(n *yaml.Node, path string, allowed ...string) []keyVal {
	if n.Kind != yaml.MappingNode {
		d.add(n, path, policies.CodeType, "", "want a mapping, got %s", kindName(n))
		return nil
	}
	seen := map[string]bool{}
	var out []keyVal
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if !contains(allowed, k.Value) {
			hint := "allowed here: " + strings.Join(allowed, ", ")
			d.add(k, p, policies.CodeUnknown, hint, "unknown field %q", k.Value)
			continue
		}
		if seen[k.Value] {
			d.add(k, p, policies.CodeDuplicate, "", "field %q is given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		out = append(out, keyVal{key: k.Value, key0: k, val: v, fullPath: p})
	}
	return out
}

func (d *dec) required(n *yaml.Node, path string, fs []keyVal, names ...string) {
	if n.Kind != yaml.MappingNode {
		return
	}
	have := map[string]bool{}
	for _, kv := range fs {
		have[kv.key] = true
	}
	for _, name := range names {
		if !have[name] {
			p := name
			if path != "" {
				p = path + "." + name
			}
			d.add(n, p, policies.CodeMissing, "", "required field %q is missing", name)
		}
	}
}

func (d *dec) str(n *yaml.Node, path string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.add(n, path, policies.CodeType, "", "want a string, got %s", kindName(n))
		return ""
	}
	return n.Value
}

func (d *dec) enum(n *yaml.Node, path string, allowed ...string) string {
	s := d.str(n, path)
	if s != "" && !contains(allowed, s) {
		d.add(n, path, policies.CodeEnum, "one of: "+strings.Join(allowed, ", "), "unknown value %q", s)
		return ""
	}
	return s
}

func (d *dec) strs(n *yaml.Node, path string) []string {
	if n.Kind != yaml.SequenceNode {
		d.add(n, path, policies.CodeType, "", "want a list of strings, got %s", kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		out = append(out, d.str(c, fmt.Sprintf("%s[%d]", path, i)))
	}
	return out
}

func (d *dec) headers(n *yaml.Node, path string) [][2]string {
	if n.Kind != yaml.MappingNode {
		d.add(n, path, policies.CodeType, "", "want a mapping of header names to values, got %s", kindName(n))
		return nil
	}
	var out [][2]string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := path + "." + k.Value
		if v.Kind == yaml.SequenceNode { // a repeated header
			for _, s := range d.strs(v, p) {
				out = append(out, [2]string{k.Value, s})
			}
			continue
		}
		out = append(out, [2]string{k.Value, d.str(v, p)})
	}
	return out
}

// json renders a YAML value as JSON, keeping number literals exactly as
// written (120.5 stays 120.5; no float round trip).
func (d *dec) json(n *yaml.Node, path string) []byte {
	var b bytes.Buffer
	if !d.appendJSON(&b, n, path, 0) {
		return nil
	}
	return b.Bytes()
}

func (d *dec) appendJSON(b *bytes.Buffer, n *yaml.Node, path string, depth int) bool {
	if depth > 100 {
		d.add(n, path, policies.CodeUnsupported, "", "nesting deeper than 100 levels")
		return false
	}
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.add(k, path, policies.CodeType, "", "JSON object keys must be strings")
				return false
			}
			if seen[k.Value] {
				d.add(k, path+"."+k.Value, policies.CodeDuplicate, "to test duplicate keys, write the body raw with body:", "key %q is given twice", k.Value)
				return false
			}
			seen[k.Value] = true
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k.Value)
			b.WriteByte(':')
			if !d.appendJSON(b, v, path+"."+k.Value, depth+1) {
				return false
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if !d.appendJSON(b, c, fmt.Sprintf("%s[%d]", path, i), depth+1) {
				return false
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			b.WriteString("null")
		case "!!bool":
			v, err := strconv.ParseBool(n.Value)
			if err != nil {
				d.add(n, path, policies.CodeType, "", "%q is not a boolean", n.Value)
				return false
			}
			b.WriteString(strconv.FormatBool(v))
		case "!!int", "!!float":
			if _, err := engine.Number(n.Value); err != nil { // RFC 8259 grammar, as the engine reads numbers
				d.add(n, path, policies.CodeType, "write numbers in JSON form (no hex, octal, .inf or .nan)", "%q is not a JSON number", n.Value)
				return false
			}
			b.WriteString(n.Value)
		default:
			writeJSONString(b, n.Value)
		}
	default:
		d.add(n, path, policies.CodeUnsupported, "write the value out in full", "YAML aliases are not supported here")
		return false
	}
	return true
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // a Go string always marshals
	b.Write(q)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
