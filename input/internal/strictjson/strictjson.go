// Package strictjson parses RFC 8259 JSON straight into engine values and
// refuses everything a more lenient parser on the tool's side might read
// differently: duplicate object keys (compared after unescaping), invalid
// UTF-8 including lone surrogate escapes, unescaped control characters,
// nesting beyond a limit, a byte order mark, and anything after the value.
// Numbers keep their exact literal text; a number longer than MaxNumberLen
// or beyond the engine's range is refused too, with its own code.
package strictjson

import (
	"bytes"
	"sort"
	"strconv"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// Error codes, stable: they end up in deny reasons.
const (
	CodeSyntax       = "invalid_json"
	CodeDuplicateKey = "duplicate_key"
	CodeInvalidUTF8  = "invalid_utf8"
	CodeTooDeep      = "too_deep"
	// CodeNumberOutOfRange is valid JSON with a number the engine cannot hold.
	// It is not CodeSyntax: the body is well formed, and a reason calling
	// it malformed would send whoever reads the deny looking for a typo.
	CodeNumberOutOfRange = "number_out_of_range"
)

// MaxNumberLen bounds a number literal's length in bytes, sign, fraction
// and exponent included. The engine keeps a number's text and converts it
// to math/big when a policy compares it or does arithmetic, and those
// conversions are quadratic in the length: `input.amount > 100` on a 1 MiB
// integer (valid JSON, and in range: OPA bounds only exponents) stalls a
// worker for seconds. 256 leaves room for everything a tool call sends: a
// float64 in shortest form takes at most 24 bytes, an int64 20, a uint256
// (token amounts in wei) 78, a decimal128 about 45. A comparison of a
// 256-byte literal costs 12-18 µs without an exponent (15-29 ms at
// 64 KiB); with one, the exponent's magnitude dominates, as it does for
// short literals.
const MaxNumberLen = 256

// Error says why and where a document was refused. Path is relative to the
// document root, in the form `.a[3]["b c"]` ("" for the root itself).
type Error struct {
	Code   string
	Path   string
	Offset int // byte offset into the input
	Msg    string
}

func (e *Error) Error() string {
	p := e.Path
	if p == "" {
		p = "(root)"
	}
	return e.Code + " at " + p + " (byte " + strconv.Itoa(e.Offset) + "): " + e.Msg
}

// Parse parses one JSON document. maxDepth bounds how many arrays and
// objects may be nested (the outermost container is depth 1).
func Parse(data []byte, maxDepth int) (engine.Value, error) {
	// One allocation for the scratch stacks of typical, shallow bodies
	// instead of several as they grow.
	var scratch struct {
		members [8]member
		path    [8]pathSeg
	}
	p := parser{data: data, maxDepth: maxDepth, members: scratch.members[:0], path: scratch.path[:0]}
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(data) {
		return nil, p.fail(CodeSyntax, "unexpected data after the JSON value")
	}
	return v, nil
}

type pathSeg struct {
	key   string
	index int // -1 for object members
}

type member struct {
	key string
	val engine.Value
	off int
}

type parser struct {
	data     []byte
	pos      int
	depth    int
	maxDepth int
	path     []pathSeg
	members  []member       // scratch stack of open objects' members
	elems    []engine.Value // scratch stack of open arrays' elements
	buf      []byte         // scratch for unescaping strings
}

//go:noinline
func (p *parser) fail(code, msg string) *Error {
	return &Error{Code: code, Path: formatPath(p.path), Offset: p.pos, Msg: msg}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value() (engine.Value, error) {
	if p.pos >= len(p.data) {
		return nil, p.fail(CodeSyntax, "unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return engine.String(s), nil
	case c == '-' || isDigit(c):
		return p.number()
	case c == 't':
		return p.literal("true", engine.Bool(true))
	case c == 'f':
		return p.literal("false", engine.Bool(false))
	case c == 'n':
		return p.literal("null", engine.Null())
	default:
		return nil, p.fail(CodeSyntax, "unexpected character "+jsonx.QuoteByte(c))
	}
}

func (p *parser) literal(word string, v engine.Value) (engine.Value, error) {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(word)) {
		return nil, p.fail(CodeSyntax, "invalid literal, want "+word)
	}
	p.pos += len(word)
	return v, nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > p.maxDepth {
		return p.fail(CodeTooDeep, "nesting deeper than "+strconv.Itoa(p.maxDepth))
	}
	return nil
}

func (p *parser) object() (engine.Value, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // '{'
	base := len(p.members)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return engine.NewObject(0), nil
	}
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.fail(CodeSyntax, "want a string object key")
		}
		off := p.pos
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.fail(CodeSyntax, "want ':' after object key")
		}
		p.pos++
		p.skipSpace()
		p.path = append(p.path, pathSeg{key: key, index: -1})
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		p.members = append(p.members, member{key: key, val: v, off: off})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.fail(CodeSyntax, "unexpected end of input in object")
		}
		c := p.data[p.pos]
		p.pos++
		if c == '}' {
			break
		}
		if c != ',' {
			p.pos--
			return nil, p.fail(CodeSyntax, "want ',' or '}' in object")
		}
		p.skipSpace()
	}
	ms := p.members[base:]
	var obj *engine.Object
	if len(ms) <= 16 {
		// Small objects, most of them, are built by inserting in arrival
		// order: sort.SliceStable costs three allocations (the slice and
		// the closure boxed, reflect's swapper). A key that did not add
		// a member is a duplicate; the sort below then reports the same
		// one it always has.
		obj = engine.NewObject(len(ms))
		for _, m := range ms {
			obj.Set(m.key, m.val)
		}
	}
	if obj == nil || obj.Len() != len(ms) {
		// Sorting is O(n log n) and gives both duplicate detection and
		// the key order engine objects keep; inserting one by one would
		// be quadratic for a hostile body with many keys in reverse
		// order.
		// sort, not slices.Sort*Func: each struct type would instantiate
		// its own ~15 kB copy of the generic sort in the wasm filter
		// (issue 3).
		sort.SliceStable(ms, func(i, j int) bool { return ms[i].key < ms[j].key })
		for i := 1; i < len(ms); i++ {
			if ms[i].key == ms[i-1].key {
				e := p.fail(CodeDuplicateKey, "duplicate key "+strconv.Quote(ms[i].key))
				e.Path = formatPath(append(p.path, pathSeg{key: ms[i].key, index: -1}))
				e.Offset = ms[i].off
				return nil, e
			}
		}
		obj = engine.NewObject(len(ms))
		for _, m := range ms {
			obj.Set(m.key, m.val)
		}
	}
	clear(ms)
	p.members = p.members[:base]
	p.depth--
	return obj, nil
}

func (p *parser) array() (engine.Value, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // '['
	base := len(p.elems)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return engine.NewArray(0), nil
	}
	for i := 0; ; i++ {
		p.path = append(p.path, pathSeg{index: i})
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		p.elems = append(p.elems, v)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.fail(CodeSyntax, "unexpected end of input in array")
		}
		c := p.data[p.pos]
		p.pos++
		if c == ']' {
			break
		}
		if c != ',' {
			p.pos--
			return nil, p.fail(CodeSyntax, "want ',' or ']' in array")
		}
		p.skipSpace()
	}
	es := p.elems[base:]
	arr := engine.NewArray(len(es))
	for _, e := range es {
		arr.Append(e)
	}
	clear(es)
	p.elems = p.elems[:base]
	p.depth--
	return arr, nil
}

// number validates the RFC 8259 grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and keeps the text.
func (p *parser) number() (engine.Value, error) {
	d, start := p.data, p.pos
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	default:
		p.pos = i
		return nil, p.fail(CodeSyntax, "invalid number: want a digit")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			p.pos = i
			return nil, p.fail(CodeSyntax, "invalid number: want a digit after '.'")
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			p.pos = i
			return nil, p.fail(CodeSyntax, "invalid number: want a digit in the exponent")
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	// Decided here, before engine.Number: the length alone refuses, and
	// what a policy later does with an accepted literal (math/big) is not
	// linear in it.
	if i-start > MaxNumberLen {
		return nil, p.fail(CodeNumberOutOfRange, "number out of range: "+strconv.Itoa(i-start)+" bytes long, at most "+strconv.Itoa(MaxNumberLen)+" allowed")
	}
	v, err := newNumber(string(d[start:i]))
	if err != nil {
		// The grammar is checked above, so the engine refused the
		// magnitude (its bound is OPA's, maxNumberExp in engine/value.go).
		// The literal stays out of the message: it can be as long as the
		// body.
		return nil, p.fail(CodeNumberOutOfRange, "number out of range: the engine holds magnitudes from about 5e-30104 to 9.99e30102")
	}
	p.pos = i
	return v, nil
}

// str parses a string starting at the opening quote and returns its
// unescaped content.
func (p *parser) str() (string, error) {
	// Plain ASCII without escapes, most keys and values, stays inline
	// here: a call per string costs a quarter of the parse. Anything else
	// goes to jsonx's scanner.
	d := p.data
	for i := p.pos + 1; i < len(d); i++ {
		c := d[i]
		if c == '"' {
			str := string(d[p.pos+1 : i])
			p.pos = i + 1
			return str, nil
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			break
		}
	}
	str, end, buf, serr := jsonx.ScanString(p.data, p.pos, false, p.buf)
	p.buf = buf
	if serr != nil {
		p.pos = serr.Offset
		code := CodeSyntax
		if serr.InvalidUTF8 {
			code = CodeInvalidUTF8
		}
		return "", p.fail(code, serr.Msg)
	}
	p.pos = end
	return str, nil
}

// newNumber is engine.Number, a variable so that tests can see it is not
// called for a literal refused by its length.
var newNumber = engine.Number

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// formatPath renders segments as `.name`, `["odd key"]` and `[3]`.
func formatPath(segs []pathSeg) string {
	var b []byte
	for _, s := range segs {
		switch {
		case s.index >= 0:
			b = append(strconv.AppendInt(append(b, '['), int64(s.index), 10), ']')
		case isIdent(s.key):
			b = append(append(b, '.'), s.key...)
		default:
			b = append(strconv.AppendQuote(append(b, '['), s.key), ']')
		}
	}
	return string(b)
}

// isIdent reports whether key can be written after a dot in a path: the
// characters Rego allows in a reference, so `params.amount` reads the same
// in a reason and in a policy.
func isIdent(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (i > 0 && isDigit(c)) {
			continue
		}
		return false
	}
	return true
}
