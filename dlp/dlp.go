// Package dlp finds and redacts sensitive spans (card numbers, IBANs, custom
// RE2 patterns) in strings. It is compiled into the wasm filter and into the
// CLI, so it depends on the standard library only.
//
// Semantics, in one place:
//
//   - A Set holds detectors in the order they were given. Redact runs them in
//     that order, each over the output of the previous one, so when spans of
//     two detectors overlap the earlier detector wins and the later one sees
//     only its replacement text.
//   - One round of all detectors can create a new match (a removed card can
//     leave an IBAN at a word boundary it did not have before, a custom
//     pattern can match across a replacement). Redact therefore repeats
//     rounds until one changes nothing, so its output contains no match of
//     any detector and Redact(Redact(x)) == Redact(x). The number of rounds
//     is bounded (maxRounds); replacement strings that a detector of the set
//     would match are refused by Compile, so the builtins and ordinary
//     patterns settle in two or three rounds. A set that does not settle
//     (a pattern feeding on its own output) fails closed: the whole text
//     becomes one replacement.
//   - Pattern detectors are RE2, unanchored; empty matches are ignored; the
//     replacement is literal (no $1 expansion).
//   - Builtins work on ASCII: see cardSpans and ibanSpans for the exact
//     grammar.
package dlp

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// Builtin detector names accepted in Spec.Builtin.
const (
	BuiltinCardNumber = "card_number"
	BuiltinIBAN       = "iban"
)

// maxRounds bounds how often Redact re-runs the detectors over its own
// output; see the package comment.
const maxRounds = 8

// Spec describes one named detector. Exactly one of Pattern (an RE2
// expression) or Builtin (BuiltinCardNumber, BuiltinIBAN) is set. Each match
// is replaced by Replace; an empty Replace means "[" + Name + "]".
type Spec struct {
	Name    string
	Pattern string
	Builtin string
	Replace string
}

// Set is a compiled, immutable list of detectors, safe for concurrent use.
type Set struct {
	dets []detector
}

type detector struct {
	name    string
	replace string
	re      *regexp.Regexp        // pattern detectors
	find    func(string) [][2]int // builtin detectors: non-overlapping spans, ascending
}

// Compile checks and compiles specs. Errors name the offending spec.
func Compile(specs []Spec) (*Set, error) {
	s := &Set{dets: make([]detector, 0, len(specs))}
	seen := make(map[string]bool, len(specs))
	for i, sp := range specs {
		label := fmt.Sprintf("dlp detector %d (%q)", i, sp.Name)
		if sp.Name == "" {
			return nil, errs.Errorf("dlp detector %d: name is empty", i)
		}
		if seen[sp.Name] {
			return nil, errs.Errorf("%s: duplicate name", label)
		}
		seen[sp.Name] = true
		d := detector{name: sp.Name, replace: sp.Replace}
		if d.replace == "" {
			d.replace = "[" + sp.Name + "]"
		}
		switch {
		case sp.Pattern != "" && sp.Builtin != "":
			return nil, errs.Errorf("%s: set either pattern or builtin, not both", label)
		case sp.Pattern != "":
			re, err := regexp.Compile(sp.Pattern)
			if err != nil {
				return nil, errs.Errorf("%s: pattern: %w", label, err)
			}
			if re.MatchString("") {
				// A pattern matching nothing at all would "redact" every
				// position; that is always a policy mistake.
				return nil, errs.Errorf("%s: pattern %q matches the empty string", label, sp.Pattern)
			}
			d.re = re
		case sp.Builtin == BuiltinCardNumber:
			d.find = cardSpans
		case sp.Builtin == BuiltinIBAN:
			d.find = ibanSpans
		case sp.Builtin != "":
			return nil, errs.Errorf("%s: unknown builtin %q (known: %s, %s)", label, sp.Builtin, BuiltinCardNumber, BuiltinIBAN)
		default:
			return nil, errs.Errorf("%s: needs a pattern or a builtin", label)
		}
		s.dets = append(s.dets, d)
	}
	// A replacement that a detector matches would make redaction feed on
	// itself; refuse it up front instead of discovering it per request.
	for _, d := range s.dets {
		for _, other := range s.dets {
			if len(other.spans(d.replace)) > 0 {
				return nil, errs.Errorf("dlp detector %q: replacement %q is itself matched by detector %q", d.name, d.replace, other.name)
			}
		}
	}
	return s, nil
}

// SpecsFromGo converts detector specs as decoded from JSON (a []any of
// map[string]any with keys name, pattern, builtin, replace) into Specs.
// Unknown keys and non-string values are errors.
func SpecsFromGo(x any) ([]Spec, error) {
	var items []any
	switch v := x.(type) {
	case []any:
		items = v
	case []map[string]any:
		items = make([]any, len(v))
		for i := range v {
			items[i] = v[i]
		}
	case nil:
		return nil, nil
	default:
		return nil, errs.Errorf("dlp specs: want a list of objects, got %T", x)
	}
	specs := make([]Spec, 0, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, errs.Errorf("dlp specs[%d]: want an object, got %T", i, it)
		}
		var sp Spec
		for k, v := range m {
			str, ok := v.(string)
			if !ok {
				return nil, errs.Errorf("dlp specs[%d].%s: want a string, got %T", i, k, v)
			}
			switch k {
			case "name":
				sp.Name = str
			case "pattern":
				sp.Pattern = str
			case "builtin":
				sp.Builtin = str
			case "replace":
				sp.Replace = str
			default:
				return nil, errs.Errorf("dlp specs[%d]: unknown field %q", i, k)
			}
		}
		specs = append(specs, sp)
	}
	return specs, nil
}

// Names returns the detector names in application order.
func (s *Set) Names() []string {
	names := make([]string, len(s.dets))
	for i, d := range s.dets {
		names[i] = d.name
	}
	return names
}

// Select returns a Set of the named detectors, applied in the order given
// (a tool's sanitize list picks from the policy-wide detectors).
func (s *Set) Select(names []string) (*Set, error) {
	out := &Set{dets: make([]detector, 0, len(names))}
	for _, n := range names {
		i := slices.IndexFunc(s.dets, func(d detector) bool { return d.name == n })
		if i < 0 {
			return nil, errs.Errorf("dlp: unknown detector %q", n)
		}
		if slices.ContainsFunc(out.dets, func(d detector) bool { return d.name == n }) {
			return nil, errs.Errorf("dlp: detector %q selected twice", n)
		}
		out.dets = append(out.dets, s.dets[i])
	}
	return out, nil
}

// Redact replaces every detected span. hits lists the names of the
// detectors that matched, sorted and unique; it is nil and out == text when
// nothing matched (no allocation on that path).
func (s *Set) Redact(text string) (out string, hits []string) {
	out = text
	for range maxRounds {
		changed := false
		for _, d := range s.dets {
			spans := d.spans(out)
			if len(spans) == 0 {
				continue
			}
			changed = true
			out = replaceSpans(out, spans, d.replace)
			if !slices.Contains(hits, d.name) {
				hits = append(hits, d.name)
			}
		}
		if !changed {
			slices.Sort(hits)
			return out, hits
		}
	}
	// Still finding matches after maxRounds (a custom pattern feeding on
	// its own output, e.g. `ab` -> "b" over "aaaa…ab"): fail closed and
	// replace the whole text with the replacement of the first detector
	// that matched, which Compile verified no detector matches.
	for _, d := range s.dets {
		if slices.Contains(hits, d.name) {
			out = d.replace
			break
		}
	}
	slices.Sort(hits)
	return out, hits
}

func (d *detector) spans(text string) [][2]int {
	if d.find != nil {
		return d.find(text)
	}
	var spans [][2]int
	for _, m := range d.re.FindAllStringIndex(text, -1) {
		if m[1] > m[0] {
			spans = append(spans, [2]int{m[0], m[1]})
		}
	}
	return spans
}

func replaceSpans(text string, spans [][2]int, repl string) string {
	var b strings.Builder
	b.Grow(len(text))
	prev := 0
	for _, sp := range spans {
		b.WriteString(text[prev:sp[0]])
		b.WriteString(repl)
		prev = sp[1]
	}
	b.WriteString(text[prev:])
	return b.String()
}
