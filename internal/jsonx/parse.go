// Package jsonx reads and writes JSON without encoding/json. The filter
// links every package on its path into one wasm module, and encoding/json
// with the reflection and type data it keeps alive is about 700 kB of it
// (issue 3). It is also stricter than encoding/json where a lenient reader
// would let two parties read one signed document differently: duplicate
// keys, field names in another case, invalid UTF-8 and lone surrogates
// are refused, and every error names the line, column and path.
//
// Parse builds a small tree (Value); Object decodes an object's members
// into Go fields by name and reports the first member that is missing,
// mistyped or unknown. Writer appends JSON.
//
// The small methods the filter's decoders and writers call at hundreds of
// sites (Obj.Get, Obj.Path, the Writer's punctuation, error constructors)
// are marked //go:noinline: inlined, their copies cost about 70 kB of the
// wasm module, and a call costs nanoseconds on paths that take hundreds of
// microseconds.
package jsonx

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Kind is the JSON type of a Value.
type Kind uint8

const (
	Null Kind = iota
	Bool
	Number
	String
	Array
	Object
)

var kindNames = [...]string{"null", "boolean", "number", "string", "array", "object"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind " + strconv.Itoa(int(k))
}

// Value is one parsed JSON value. Raw is its exact text in the document
// (a subslice of the input, not a copy).
type Value struct {
	Kind    Kind
	Bool    bool
	Str     string   // a String's unescaped content, or a Number's literal text
	Elems   []Value  // Array elements
	Members []Member // Object members in document order, keys unique
	Raw     []byte
	Line    int32 // 1-based position of the value's first byte
	Col     int32
}

// Member is one object member.
type Member struct {
	Key   string
	Value Value
}

// Options relax Parse for documents that are not ours to judge (OPA's
// json builtins, which follow encoding/json).
type Options struct {
	// MaxDepth bounds nesting of arrays and objects; 0 means 128.
	MaxDepth int
	// Lenient accepts what encoding/json accepts: a duplicate key replaces
	// the earlier member, and invalid UTF-8 and lone surrogate escapes
	// become U+FFFD.
	Lenient bool
}

// SyntaxError says why and where a document was refused.
type SyntaxError struct {
	Line, Col int
	Offset    int
	Path      string // `.a[3]["b c"]`, "" for the root
	Msg       string
}

func (e *SyntaxError) Error() string {
	at := "line " + strconv.Itoa(e.Line) + ", column " + strconv.Itoa(e.Col)
	if e.Path != "" {
		at += " (at " + e.Path + ")"
	}
	return at + ": " + e.Msg
}

// Parse parses exactly one strict JSON document (RFC 8259; anything but
// white space after it is an error).
func Parse(data []byte) (*Value, error) { return ParseWith(data, Options{}) }

// ParseWith parses one JSON document under opts.
func ParseWith(data []byte, opts Options) (*Value, error) {
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = 128
	}
	p := parser{data: data, opts: opts, line: 1}
	p.space()
	v := new(Value)
	if err := p.value(v); err != nil {
		return nil, err
	}
	p.space()
	if p.pos < len(data) {
		return nil, p.fail("unexpected data after the JSON value")
	}
	return v, nil
}

// Valid reports whether data is one JSON document under opts.
func Valid(data []byte, opts Options) bool {
	_, err := ParseWith(data, opts)
	return err == nil
}

type pathSeg struct {
	key   string
	index int // -1 for an object member
}

type parser struct {
	data      []byte
	pos       int
	line      int
	lineStart int // offset of the current line's first byte
	colOff    int // offset on the current line up to which colRunes counts
	colRunes  int
	depth     int
	opts      Options
	path      []pathSeg
	buf       []byte
}

//go:noinline
func (p *parser) fail(msg string) *SyntaxError {
	return p.failAt(p.pos, msg)
}

//go:noinline
func (p *parser) failAt(off int, msg string) *SyntaxError {
	// Recount from the start: errors are rare and p.line may be ahead of off.
	line, start := 1, 0
	for i := 0; i < off && i < len(p.data); i++ {
		if p.data[i] == '\n' {
			line, start = line+1, i+1
		}
	}
	col := utf8.RuneCount(p.data[start:min(off, len(p.data))]) + 1
	return &SyntaxError{Line: line, Col: col, Offset: off, Path: formatPath(p.path), Msg: msg}
}

func (p *parser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '\n':
			p.line++
			p.pos++
			p.lineStart = p.pos
		case ' ', '\t', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(v *Value) error {
	if p.pos >= len(p.data) {
		return p.fail("unexpected end of input")
	}
	start := p.pos
	v.Line = int32(p.line)
	v.Col = p.col(start)
	var err error
	switch c := p.data[p.pos]; {
	case c == '{':
		v.Kind = Object
		err = p.object(v)
	case c == '[':
		v.Kind = Array
		err = p.array(v)
	case c == '"':
		v.Kind = String
		v.Str, err = p.str()
	case c == '-' || isDigit(c):
		v.Kind = Number
		err = p.number(v)
	case c == 't':
		v.Kind, v.Bool = Bool, true
		err = p.literal("true")
	case c == 'f':
		v.Kind = Bool
		err = p.literal("false")
	case c == 'n':
		v.Kind = Null
		err = p.literal("null")
	default:
		return p.fail("unexpected character " + QuoteByte(c))
	}
	if err != nil {
		return err
	}
	v.Raw = p.data[start:p.pos]
	return nil
}

// col returns the 1-based column of off, a position on the current line
// at or after the last one asked for. It counts on from that position:
// counting from the line's start for every value made a long one-line
// document (plan.json is one) quadratic.
func (p *parser) col(off int) int32 {
	if p.colOff < p.lineStart {
		p.colOff, p.colRunes = p.lineStart, 0
	}
	p.colRunes += utf8.RuneCount(p.data[p.colOff:off])
	p.colOff = off
	return int32(p.colRunes + 1)
}

func (p *parser) literal(word string) error {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(word)) {
		return p.fail("invalid literal, want " + word)
	}
	p.pos += len(word)
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > p.opts.MaxDepth {
		return p.fail("nesting deeper than " + strconv.Itoa(p.opts.MaxDepth))
	}
	return nil
}

func (p *parser) object(v *Value) error {
	if err := p.enter(); err != nil {
		return err
	}
	p.pos++ // '{'
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		v.Members = []Member{}
		return nil
	}
	var ms []Member
	var seen map[string]int // built once an object is big enough to need it
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return p.fail("want a string object key")
		}
		off := p.pos
		key, err := p.str()
		if err != nil {
			return err
		}
		dup := -1
		if seen != nil {
			if i, ok := seen[key]; ok {
				dup = i
			}
		} else {
			for i := range ms {
				if ms[i].Key == key {
					dup = i
					break
				}
			}
		}
		if dup >= 0 && !p.opts.Lenient {
			p.path = append(p.path, pathSeg{key: key, index: -1})
			return p.failAt(off, "duplicate key "+strconv.Quote(key))
		}
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.fail("want ':' after object key")
		}
		p.pos++
		p.space()
		p.path = append(p.path, pathSeg{key: key, index: -1})
		var mv Value
		if err := p.value(&mv); err != nil {
			return err
		}
		p.path = p.path[:len(p.path)-1]
		if dup >= 0 {
			ms[dup].Value = mv // encoding/json: the last one wins
		} else {
			ms = append(ms, Member{Key: key, Value: mv})
			if seen != nil {
				seen[key] = len(ms) - 1
			} else if len(ms) == 16 {
				// A linear scan is cheapest for the small objects of
				// configs; a hostile object with many keys must not make
				// it quadratic.
				seen = make(map[string]int, 32)
				for i := range ms {
					seen[ms[i].Key] = i
				}
			}
		}
		p.space()
		if p.pos >= len(p.data) {
			return p.fail("unexpected end of input in object")
		}
		c := p.data[p.pos]
		if c == '}' {
			p.pos++
			break
		}
		if c != ',' {
			return p.fail("want ',' or '}' in object")
		}
		p.pos++
		p.space()
	}
	v.Members = ms
	p.depth--
	return nil
}

func (p *parser) array(v *Value) error {
	if err := p.enter(); err != nil {
		return err
	}
	p.pos++ // '['
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		v.Elems = []Value{}
		return nil
	}
	var es []Value
	for i := 0; ; i++ {
		p.path = append(p.path, pathSeg{index: i})
		es = append(es, Value{})
		if err := p.value(&es[len(es)-1]); err != nil {
			return err
		}
		p.path = p.path[:len(p.path)-1]
		p.space()
		if p.pos >= len(p.data) {
			return p.fail("unexpected end of input in array")
		}
		c := p.data[p.pos]
		if c == ']' {
			p.pos++
			break
		}
		if c != ',' {
			return p.fail("want ',' or ']' in array")
		}
		p.pos++
		p.space()
	}
	v.Elems = es
	p.depth--
	return nil
}

// number checks the RFC 8259 grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and keeps the text.
func (p *parser) number(v *Value) error {
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
		return p.fail("invalid number: want a digit")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			p.pos = i
			return p.fail("invalid number: want a digit after '.'")
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
			return p.fail("invalid number: want a digit in the exponent")
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	v.Str = string(d[start:i])
	p.pos = i
	return nil
}

// str parses a string at its opening quote and returns its content.
func (p *parser) str() (string, error) {
	s, end, buf, serr := ScanString(p.data, p.pos, p.opts.Lenient, p.buf)
	p.buf = buf
	if serr != nil {
		p.pos = serr.Offset
		return "", p.fail(serr.Msg)
	}
	p.pos = end
	return s, nil
}

// StringError is a string ScanString refuses: where, why, and whether it
// is text that is not UTF-8 (or a lone surrogate escape) rather than
// text that is not JSON.
type StringError struct {
	Offset      int
	InvalidUTF8 bool
	Msg         string
}

// ScanString reads the JSON string whose opening quote is d[start] and
// returns its content and the offset just past its closing quote. buf is
// scratch for unescaping; the (possibly grown) buffer is returned for the
// next call. Lenient replaces invalid UTF-8 and lone surrogates with
// U+FFFD, as encoding/json does, instead of refusing them.
func ScanString(d []byte, start int, lenient bool, buf []byte) (s string, end int, scratch []byte, err *StringError) {
	start++ // opening quote
	for i := start; i < len(d); {
		c := d[i]
		switch {
		case c == '"':
			return string(d[start:i]), i + 1, buf, nil
		case c == '\\':
			return scanEscaped(d, start, i, lenient, buf)
		case c < 0x20:
			return "", 0, buf, &StringError{Offset: i, Msg: "unescaped control character " + QuoteByte(c) + " in string"}
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size <= 1 {
				if lenient {
					return scanEscaped(d, start, i, lenient, buf)
				}
				return "", 0, buf, &StringError{Offset: i, InvalidUTF8: true, Msg: "invalid UTF-8 in string"}
			}
			i += size
		}
	}
	return "", 0, buf, &StringError{Offset: len(d), Msg: "unterminated string"}
}

// scanEscaped continues ScanString from offset i, where the content stops
// being a plain slice of d, copying it into buf.
func scanEscaped(d []byte, start, i int, lenient bool, buf []byte) (string, int, []byte, *StringError) {
	b := append(buf[:0], d[start:i]...)
	fail := func(off int, utf bool, msg string) (string, int, []byte, *StringError) {
		return "", 0, b[:0], &StringError{Offset: off, InvalidUTF8: utf, Msg: msg}
	}
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			return string(b), i + 1, b[:0], nil
		case c == '\\':
			if i+1 >= len(d) {
				return fail(len(d), false, "unterminated string")
			}
			e := d[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := hex4(d, i)
				if !ok {
					return fail(i-2, false, `invalid \u escape`)
				}
				i += 4
				if utf16.IsSurrogate(r) {
					// Only a high surrogate followed by a low one is a
					// character; anything else has no UTF-8 form and
					// parsers disagree on what to make of it.
					lo, ok := rune(-1), false
					if r < 0xDC00 && i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
						lo, ok = hex4(d, i+2)
					}
					switch {
					case ok && lo >= 0xDC00 && lo <= 0xDFFF:
						i += 6
						r = utf16.DecodeRune(r, lo)
					case lenient:
						r = utf8.RuneError
					default:
						return fail(i-6, true, `lone surrogate in \u escape`)
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				return fail(i-2, false, "invalid escape "+QuoteByte(e))
			}
		case c < 0x20:
			return fail(i, false, "unescaped control character "+QuoteByte(c)+" in string")
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size <= 1 {
				if !lenient {
					return fail(i, true, "invalid UTF-8 in string")
				}
				b = utf8.AppendRune(b, utf8.RuneError)
				i++
				continue
			}
			b = append(b, d[i:i+size]...)
			i += size
		}
	}
	return fail(len(d), false, "unterminated string")
}

func hex4(d []byte, i int) (rune, bool) {
	if i+4 > len(d) {
		return 0, false
	}
	var r rune
	for _, c := range d[i : i+4] {
		var v byte
		switch {
		case isDigit(c):
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// QuoteByte names one byte for a message without echoing raw binary.
func QuoteByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		const hex = "0123456789ABCDEF"
		return "0x" + string([]byte{hex[c>>4], hex[c&15]})
	}
	return "'" + string(rune(c)) + "'"
}

// formatPath renders a path as `.name`, `["odd key"]` and `[3]`.
func formatPath(segs []pathSeg) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteString(s.String())
	}
	return b.String()
}

func (s pathSeg) String() string {
	switch {
	case s.index >= 0:
		return "[" + strconv.Itoa(s.index) + "]"
	case isIdent(s.key):
		return "." + s.key
	default:
		return "[" + strconv.Quote(s.key) + "]"
	}
}

func isIdent(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (i > 0 && (isDigit(c) || c == '-')) {
			continue
		}
		return false
	}
	return true
}
