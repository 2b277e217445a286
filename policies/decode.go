package policies

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks yaml.Nodes by hand, instead of yaml.Unmarshal into structs,
// so every value keeps its line and column and every problem is reported,
// not only the first.
type decoder struct {
	errs *errList
}

// field is one key: value pair of a mapping.
type field struct {
	key  string
	kpos pos
	val  *yaml.Node
}

func at(n *yaml.Node) pos { return pos{Line: n.Line, Col: n.Column} }

func src(n *yaml.Node, path string) Source { return Source{Line: n.Line, Col: n.Column, Path: path} }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		}
		return "a scalar"
	}
	return "an unsupported node"
}

// fields checks that n is a mapping with only the allowed keys, each at most
// once, and returns its entries in document order. Unknown keys get a "did you
// mean" hint.
func (d *decoder) fields(n *yaml.Node, path string, allowed ...string) ([]field, bool) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(CodeType, at(n), path, "", "expected a mapping, got %s", kindName(n))
		return nil, false
	}
	seen := map[string]bool{}
	var out []field
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!bool" && k.Tag != "!!float") {
			d.errs.add(CodeType, at(k), path, "", "expected a string key, got %s", kindName(k))
			continue
		}
		key := k.Value
		if seen[key] {
			d.errs.add(CodeDuplicate, at(k), join(path, key), "", "duplicate key %q", key)
			continue
		}
		seen[key] = true
		if allowed != nil && !contains(allowed, key) {
			hint := ""
			if c := closest(key, allowed); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			} else {
				hint = "allowed fields: " + strings.Join(sorted(allowed), ", ")
			}
			d.errs.add(CodeUnknown, at(k), join(path, key), hint, "unknown field %q", key)
			continue
		}
		out = append(out, field{key: key, kpos: at(k), val: v})
	}
	return out, true
}

func (d *decoder) required(n *yaml.Node, path string, fs []field, names ...string) {
	for _, name := range names {
		found := false
		for _, f := range fs {
			if f.key == name {
				found = true
			}
		}
		if !found {
			d.errs.add(CodeMissing, at(n), path, "", "missing required field %q", name)
		}
	}
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
			hint = "quote the value to make it a string"
		}
		d.errs.add(CodeType, at(n), path, hint, "expected a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// nonEmpty reads a string that must not be empty.
func (d *decoder) nonEmpty(n *yaml.Node, path string) (string, bool) {
	s, ok := d.str(n, path)
	if ok && s == "" {
		d.errs.add(CodeEnum, at(n), path, "", "must not be empty")
		return "", false
	}
	return s, ok
}

func (d *decoder) enum(n *yaml.Node, path string, allowed ...string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if !contains(allowed, s) {
		hint := ""
		if c := closest(s, allowed); c != "" {
			hint = fmt.Sprintf("did you mean %q?", c)
		}
		d.errs.add(CodeEnum, at(n), path, hint, "%q is not one of %s", s, strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.errs.add(CodeType, at(n), path, "", "expected a boolean (true or false), got %s", kindName(n))
		return false, false
	}
	return n.Value == "true", true
}

// integer reads a non-negative integer no larger than maxV.
func (d *decoder) integer(n *yaml.Node, path string, minV, maxV int64) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.errs.add(CodeType, at(n), path, "", "expected an integer, got %s", kindName(n))
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		d.errs.add(CodeEnum, at(n), path, "", "%q is not a decimal integer", n.Value)
		return 0, false
	}
	if v < minV || v > maxV {
		d.errs.add(CodeRange, at(n), path, "", "%d is out of range [%d, %d]", v, minV, maxV)
		return 0, false
	}
	return v, true
}

func (d *decoder) decimal(n *yaml.Node, path string) (*Decimal, bool) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.errs.add(CodeType, at(n), path, "", "expected a number, got %s", kindName(n))
		return nil, false
	}
	v, err := ParseDecimal(n.Value)
	if err != nil {
		d.errs.add(CodeDecimal, at(n), path, "write an exact decimal such as 0.05", "%v", err)
		return nil, false
	}
	return v, true
}

func (d *decoder) duration(n *yaml.Node, path string) (int64, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 || v%time.Second != 0 || v > 30*24*time.Hour {
		d.errs.add(CodeDuration, at(n), path, "use whole seconds up to 720h, e.g. 90s, 15m, 2h", "%q is not a valid duration", s)
		return 0, false
	}
	return int64(v / time.Second), true
}

func (d *decoder) seq(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		d.errs.add(CodeType, at(n), path, "", "expected a list, got %s", kindName(n))
		return nil, false
	}
	return n.Content, true
}

// strList reads a list of non-empty, distinct strings; when check is not nil
// it validates each element.
func (d *decoder) strList(n *yaml.Node, path string, check func(s string) string) ([]string, []Source, bool) {
	items, ok := d.seq(n, path)
	if !ok {
		return nil, nil, false
	}
	out := make([]string, 0, len(items))
	srcs := make([]Source, 0, len(items))
	seen := map[string]bool{}
	for i, it := range items {
		p := index(path, i)
		s, ok := d.nonEmpty(it, p)
		if !ok {
			continue
		}
		if seen[s] {
			d.errs.add(CodeDuplicate, at(it), p, "", "%q is listed twice", s)
			continue
		}
		seen[s] = true
		if check != nil {
			if msg := check(s); msg != "" {
				d.errs.add(CodeEnum, at(it), p, "", "%s", msg)
				continue
			}
		}
		out = append(out, s)
		srcs = append(srcs, src(it, p))
	}
	return out, srcs, true
}

func (d *decoder) refList(n *yaml.Node, path string) []Ref {
	names, srcs, _ := d.strList(n, path, nil)
	out := make([]Ref, len(names))
	for i := range names {
		out[i] = Ref{Src: srcs[i], Name: names[i]}
	}
	return out
}

// scalar reads a string, number or boolean constant for enum and conditions.
func (d *decoder) scalar(n *yaml.Node, path string) (Scalar, bool) {
	if n.Kind == yaml.ScalarNode {
		switch n.Tag {
		case "!!str":
			return Scalar{Kind: "string", Text: n.Value}, true
		case "!!bool":
			return Scalar{Kind: "boolean", Text: n.Value}, true
		case "!!int", "!!float":
			v, err := ParseDecimal(n.Value)
			if err != nil {
				d.errs.add(CodeDecimal, at(n), path, "", "%v", err)
				return Scalar{}, false
			}
			return Scalar{Kind: "number", Text: v.String()}, true
		}
	}
	d.errs.add(CodeType, at(n), path, "", "expected a string, number or boolean, got %s", kindName(n))
	return Scalar{}, false
}

// parseDocument decodes exactly one YAML document and refuses constructs
// whose meaning is easy to get wrong: aliases (and so merge keys) and
// several documents in one file.
func parseDocument(file string, data []byte, errs *errList) *yaml.Node {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			errs.add(CodeMissing, pos{1, 1}, "", "", "the document is empty")
			return nil
		}
		line, msg := yamlErrorLine(err)
		errs.add(CodeYAML, pos{Line: line, Col: 1}, "", "", "%s", msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		errs.add(CodeUnsupported, pos{extra.Line, extra.Column}, "", "put each policy set in its own file", "a policy file holds one YAML document")
		return nil
	} else if !errors.Is(err, io.EOF) {
		line, msg := yamlErrorLine(err)
		errs.add(CodeYAML, pos{Line: line, Col: 1}, "", "", "%s", msg)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		errs.add(CodeMissing, pos{1, 1}, "", "", "the document is empty")
		return nil
	}
	bad := false
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if bad {
			return
		}
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			errs.add(CodeUnsupported, at(n), "", "write the value out in full", "YAML anchors and aliases are not supported in policies")
			bad = true
			return
		}
		if depth > 64 {
			errs.add(CodeUnsupported, at(n), "", "", "nesting deeper than 64 levels")
			bad = true
			return
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(doc.Content[0], 0)
	if bad {
		return nil
	}
	return doc.Content[0]
}

// yamlErrorLine extracts the line number yaml.v3 puts in its messages
// ("yaml: line 3: ...").
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "yaml: line ")
	if !ok {
		return 1, strings.TrimPrefix(msg, "yaml: ")
	}
	num, tail, ok := strings.Cut(rest, ":")
	if !ok {
		return 1, msg
	}
	line, err2 := strconv.Atoi(num)
	if err2 != nil || line < 1 {
		return 1, msg
	}
	return line, strings.TrimSpace(tail)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sorted(list []string) []string {
	out := append([]string(nil), list...)
	sort.Strings(out)
	return out
}
