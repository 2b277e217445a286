package policies

import (
	"fmt"
	"sort"
	"strings"
)

// Error codes. They are API: the CLI, the REST API and editors receive the
// same strings.
const (
	CodeYAML        = "yaml_syntax"        // the document is not well-formed YAML
	CodeUnknown     = "unknown_field"      // a key that aegis.policy/v1 does not define
	CodeType        = "wrong_type"         // a value of the wrong YAML type
	CodeMissing     = "missing_field"      // a required field is absent
	CodeEnum        = "bad_value"          // a value outside the allowed set or format
	CodeRegex       = "invalid_regex"      // a pattern RE2 does not accept
	CodeDuplicate   = "duplicate"          // a repeated id, name or key
	CodeReference   = "dangling_reference" // a name that refers to nothing
	CodeRange       = "invalid_range"      // min > max and similar
	CodeDuration    = "invalid_duration"   // not a Go duration, or not positive
	CodeDecimal     = "invalid_decimal"    // not an exact decimal in range
	CodeRego        = "rego_error"         // custom Rego does not parse or compile
	CodeTooMany     = "too_many_errors"    // the error cap was reached
	CodeCompile     = "compile_error"      // OPA rejected generated code (a bug in aegis)
	CodeIO          = "io_error"           // a file could not be read
	CodeUnsupported = "unsupported"        // valid YAML that aegis refuses (aliases, several documents)
)

// MaxErrors caps how many errors one load reports, so a hostile or badly
// broken file cannot make the report itself a denial of service.
const MaxErrors = 100

// Location is a place in a policy file; Line and Col are 1-based.
type Location struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

// Error is the one user-facing error type of the policy toolchain.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Location
	// Path is the field path inside the document, e.g. tools[0].params.amount.max.
	Path string `json:"path,omitempty"`
	Hint string `json:"hint,omitempty"`
}

// Error prints "file:line:col: path: message" and the hint on an indented line.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Col)
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Hint != "" {
		b.WriteString("\n\thint: ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Errors is a list of errors, sorted by location once a stage finishes.
type Errors []*Error

// Error prints one error per line (hints indented below their error).
func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Err returns nil for an empty list, so callers can write `if err := errs.Err(); err != nil`.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Sort orders errors by file, line, column, then path and message, so the
// report is stable however the checks were ordered.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Message < b.Message
	})
}

// errList accumulates errors up to MaxErrors.
type errList struct {
	file string
	errs Errors
	full bool
}

func (l *errList) add(code string, p pos, path, hint, format string, args ...any) {
	if l.full {
		return
	}
	if len(l.errs) == MaxErrors {
		l.full = true
		l.errs = append(l.errs, &Error{Code: CodeTooMany, Message: fmt.Sprintf("more than %d errors, stopping", MaxErrors),
			Location: Location{File: l.file, Line: p.Line, Col: p.Col}})
		return
	}
	l.errs = append(l.errs, &Error{
		Code:     code,
		Message:  fmt.Sprintf(format, args...),
		Location: Location{File: l.file, Line: p.Line, Col: p.Col},
		Path:     path,
		Hint:     hint,
	})
}

// closest returns the candidate nearest to s by edit distance, or "" when
// nothing is close enough to be a plausible typo.
func closest(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
