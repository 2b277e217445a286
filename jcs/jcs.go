// Package jcs renders JSON in the RFC 8785 canonical form (JCS) and
// computes the params digest that binds an approval and its override
// token to one exact call (API.md).
//
// The filter, the control plane and the end-to-end tests must agree on
// these bytes to the bit, so there is one implementation, written without
// reflection (it is linked into the wasip1 filter). Input is parsed
// strictly: RFC 8259 grammar, valid UTF-8, no lone surrogate escapes, no
// duplicate keys, numbers that fit an IEEE 754 double; anything else is an
// error rather than a guess.
package jcs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// MaxDepth bounds nesting so hostile input cannot exhaust the stack.
const MaxDepth = 256

// ErrInvalid wraps every refusal of the input.
var ErrInvalid = errors.New("jcs: invalid JSON")

// Canonicalize parses data as one JSON value and returns its JCS form.
func Canonicalize(data []byte) ([]byte, error) {
	return AppendCanonical(nil, data)
}

// AppendCanonical appends the JCS form of the JSON value in data to dst.
func AppendCanonical(dst, data []byte) ([]byte, error) {
	out, n, err := AppendCanonicalPrefix(dst, data)
	if err != nil {
		return dst, err
	}
	p := parser{data: data, pos: n}
	p.space()
	if p.pos != len(p.data) {
		return dst, p.fail("data after the JSON value")
	}
	return out, nil
}

// AppendCanonicalPrefix appends the JCS form of the JSON value at the start
// of data (after any white space) to dst and returns how many bytes of
// data it read. What follows the value is left to the caller: a decoder
// of an enclosing document canonicalises its members in place this way.
func AppendCanonicalPrefix(dst, data []byte) ([]byte, int, error) {
	s := scratchPool.Get().(*scratch)
	p := parser{data: data, members: s.members[:0], strBuf: s.strBuf, reorder: s.reorder}
	p.space()
	out, err := p.value(dst, 0)
	// Buffers grown by a hostile document are not kept.
	if cap(p.members) <= 1024 && cap(p.strBuf) <= 64<<10 && cap(p.reorder) <= 64<<10 {
		*s = scratch{members: p.members[:0], strBuf: p.strBuf[:0], reorder: p.reorder[:0]}
		scratchPool.Put(s)
	}
	if err != nil {
		return dst, 0, err
	}
	return out, p.pos, nil
}

// ParamsDigest is the lower-case hex SHA-256 of the JCS form of
// {"agent":agent,"params":params,"tenant":tenant,"tool":tool}, where
// params is the call's parameters as JSON text (empty means null).
func ParamsDigest(tenant, agent, tool string, params []byte) (string, error) {
	b := make([]byte, 0, 64+len(tenant)+len(agent)+len(tool)+len(params))
	b = append(b, `{"agent":`...)
	b = AppendString(b, agent)
	b = append(b, `,"params":`...)
	if len(params) == 0 {
		b = append(b, "null"...)
	} else {
		var err error
		if b, err = AppendCanonical(b, params); err != nil {
			return "", errs.Errorf("params digest: %w", err)
		}
	}
	b = append(b, `,"tenant":`...)
	b = AppendString(b, tenant)
	b = append(b, `,"tool":`...)
	b = AppendString(b, tool)
	b = append(b, '}')
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// AppendString appends s as a JCS string: only '"', '\\' and the control
// characters are escaped (the short forms where JSON has them, else
// \u00xx in lower case); everything else is copied as UTF-8. Invalid UTF-8
// in s is replaced with U+FFFD, as a Go string has no other JSON form.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
			continue
		}
		dst = appendStringByte(dst, c)
		i++
	}
	return append(dst, '"')
}

// AppendNumber appends f as ECMAScript's Number.prototype.toString writes
// it (RFC 8785 §3.2.2.3): the shortest digits that round-trip, plain
// notation for decimal exponents from -7 to 20, exponent notation with an
// explicit sign otherwise, and -0 as 0. NaN and infinities have no JSON
// form and are an error.
func AppendNumber(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, errs.Errorf("%w: %v has no JSON form", ErrInvalid, f)
	}
	if f == 0 {
		return append(dst, '0'), nil
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// Shortest round-trip digits d1.d2d3...e±x; ECMAScript picks the same
	// digits (the closest shortest string), only the layout differs.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	mark := slices.Index(e, 'e')
	digits := make([]byte, 0, 17)
	digits = append(digits, e[0])
	if mark > 1 {
		digits = append(digits, e[2:mark]...)
	}
	exp, err := strconv.Atoi(string(e[mark+1:]))
	if err != nil {
		return dst, errs.Errorf("jcs: formatting %v: %w", f, err)
	}
	k, n := len(digits), exp+1 // value = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for i := k; i < n; i++ {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for i := n; i < 0; i++ {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst, nil
}

type parser struct {
	data []byte
	pos  int
	// members holds the members of every object being parsed, innermost
	// last: an object's own start at the length it found on entry.
	members []member
	// strBuf holds a string value with escapes while it is decoded;
	// reorder holds an object's text while its members are put in order.
	strBuf, reorder []byte
}

// scratch is a parser's reusable memory. Stores through the parser's
// pointer would move a stack array to the heap anyway, so it is pooled.
type scratch struct {
	members         []member
	strBuf, reorder []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{members: make([]member, 0, 32)} }}

//go:noinline
func (p *parser) fail(msg string) error {
	return errs.Errorf("%w: %s at offset %d", ErrInvalid, msg, p.pos)
}

func (p *parser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) literal(dst []byte, word string) ([]byte, error) {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return dst, p.fail("unexpected character")
	}
	p.pos += len(word)
	return append(dst, word...), nil
}

func (p *parser) value(dst []byte, depth int) ([]byte, error) {
	if p.pos >= len(p.data) {
		return dst, p.fail("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(dst, depth+1)
	case c == '[':
		return p.array(dst, depth+1)
	case c == '"':
		start := p.pos
		s, raw, err := p.str(p.strBuf[:0])
		if err != nil {
			return dst, err
		}
		if raw {
			// No escapes: the text as written, quotes included, is the
			// canonical text.
			return append(dst, p.data[start:p.pos]...), nil
		}
		p.strBuf = s
		return appendEscaped(dst, s), nil
	case c == 't':
		return p.literal(dst, "true")
	case c == 'f':
		return p.literal(dst, "false")
	case c == 'n':
		return p.literal(dst, "null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number(dst)
	default:
		return dst, p.fail("unexpected character")
	}
}

func (p *parser) array(dst []byte, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return dst, p.fail("nested too deeply")
	}
	p.pos++ // [
	dst = append(dst, '[')
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return append(dst, ']'), nil
	}
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		p.space()
		var err error
		if dst, err = p.value(dst, depth); err != nil {
			return dst, err
		}
		p.space()
		if p.pos >= len(p.data) {
			return dst, p.fail("unterminated array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return append(dst, ']'), nil
		default:
			return dst, p.fail("want , or ] in array")
		}
	}
}

// member is one parsed object member.
type member struct {
	key        []byte // the key's value (UTF-8); JCS orders by its UTF-16 code units
	start, end int    // the member's canonical "key":value text in the output
}

// object writes the members in the order they come, then puts them in key
// order only if they were not already: producers that write JCS (the
// filter, the edge) pay for one ordered scan, not a sort and a copy.
func (p *parser) object(dst []byte, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return dst, p.fail("nested too deeply")
	}
	p.pos++ // {
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return append(dst, '{', '}'), nil
	}
	base := len(p.members)
	body := len(dst) + 1 // where the first member's text starts
	dst = append(dst, '{')
	ordered := true
	for {
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return dst, p.fail("want a string key in object")
		}
		if len(p.members) > base {
			dst = append(dst, ',')
		}
		start := len(dst)
		keyStart := p.pos
		// A key with escapes is decoded into a slice of its own: it must
		// outlive the next string's decoding.
		key, raw, err := p.str(nil)
		if err != nil {
			return dst, err
		}
		if raw {
			dst = append(dst, p.data[keyStart:p.pos]...)
		} else {
			dst = appendEscaped(dst, key)
		}
		if n := len(p.members); n > base && compareUTF16(p.members[n-1].key, key) >= 0 {
			ordered = false
		}
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return dst, p.fail("want : after object key")
		}
		p.pos++
		p.space()
		dst = append(dst, ':')
		if dst, err = p.value(dst, depth); err != nil {
			return dst, err
		}
		p.members = append(p.members, member{key: key, start: start, end: len(dst)})
		p.space()
		if p.pos >= len(p.data) {
			return dst, p.fail("unterminated object")
		}
		if p.data[p.pos] == '}' {
			p.pos++
			break
		}
		if p.data[p.pos] != ',' {
			return dst, p.fail("want , or } in object")
		}
		p.pos++
	}
	ms := p.members[base:]
	if !ordered {
		// sort, not slices.Sort*Func: each struct type would instantiate its
		// own ~15 kB copy of the generic sort in the wasm filter (issue 3).
		sort.Slice(ms, func(i, j int) bool { return compareUTF16(ms[i].key, ms[j].key) < 0 })
		for i := 1; i < len(ms); i++ {
			if string(ms[i-1].key) == string(ms[i].key) {
				return dst, errs.Errorf("%w: duplicate object key %q", ErrInvalid, ms[i].key)
			}
		}
		// Nested objects are already final inside each member's text, so
		// the members move as whole byte ranges.
		p.reorder = append(p.reorder[:0], dst[body:]...)
		dst = dst[:body]
		for i, m := range ms {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, p.reorder[m.start-body:m.end-body]...)
		}
	}
	p.members = p.members[:base]
	return append(dst, '}'), nil
}

// compareUTF16 orders two UTF-8 strings by their UTF-16 code units (RFC
// 8785 §3.2.3). That is byte order except where a character above U+FFFF
// (a surrogate pair, D800–DBFF first) meets one in U+E000–U+FFFF, so only
// the first differing character is decoded.
func compareUTF16(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	if i == len(a) || i == len(b) {
		return compareInt(len(a), len(b))
	}
	if a[i] < utf8.RuneSelf && b[i] < utf8.RuneSelf {
		return compareInt(int(a[i]), int(b[i]))
	}
	// Equal bytes so far, so both strings have a character starting at the
	// same place before i (the input is valid UTF-8).
	for i > 0 && !utf8.RuneStart(a[i]) {
		i--
	}
	ra, _ := utf8.DecodeRune(a[i:])
	rb, _ := utf8.DecodeRune(b[i:])
	if ua, ub := firstUnit(ra), firstUnit(rb); ua != ub {
		return compareInt(int(ua), int(ub))
	}
	// Both above U+FFFF with the same high surrogate: the low ones, like
	// the code points, decide.
	return compareInt(int(ra), int(rb))
}

// compareInt is cmp.Compare for the one type it is needed for here: each
// instantiation of the generic would be its own code in the wasm filter.
func compareInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// firstUnit is the first UTF-16 code unit of r.
func firstUnit(r rune) rune {
	if r > 0xFFFF {
		return 0xD800 + (r-0x10000)>>10
	}
	return r
}

// appendEscaped appends s (valid UTF-8) as a JCS string: AppendString for
// text already checked.
func appendEscaped(dst, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range s {
		dst = appendStringByte(dst, c)
	}
	return append(dst, '"')
}

// appendStringByte appends one byte of a JCS string: the escapes of '"',
// '\\' and the control characters, anything else as it is.
func appendStringByte(dst []byte, c byte) []byte {
	const hexDigits = "0123456789abcdef"
	switch c {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	if c < 0x20 {
		return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(dst, c)
}

// str reads a JSON string at p.pos. Without escapes it returns the bytes
// between the quotes, a slice of the input (raw: that text is already the
// canonical one); otherwise it appends the decoded value to buf and
// returns that. Either way the value is valid UTF-8.
func (p *parser) str(buf []byte) (s []byte, raw bool, err error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes. Most strings are ASCII, and those need no
	// second pass to check their UTF-8.
	var high byte
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := p.data[start:p.pos]
			if high >= utf8.RuneSelf && !utf8.Valid(s) {
				return nil, false, p.fail("invalid UTF-8 in string")
			}
			p.pos++
			return s, true, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		high |= c
		p.pos++
	}
	out := append(buf, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return nil, false, p.fail("invalid UTF-8 in string")
			}
			p.pos++
			return out, false, nil
		case c < 0x20:
			return nil, false, p.fail("control character in string")
		case c != '\\':
			out = append(out, c)
			p.pos++
			continue
		}
		p.pos++ // backslash
		if p.pos >= len(p.data) {
			break
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, false, p.fail("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by an escaped low one
				// names a character; anything else has no UTF-8 form.
				if r >= 0xDC00 || len(p.data)-p.pos < 2 || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
					return nil, false, p.fail("lone surrogate escape")
				}
				p.pos += 2
				lo, ok := p.hex4()
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return nil, false, p.fail("lone surrogate escape")
				}
				r = utf16.DecodeRune(r, lo)
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, false, p.fail("bad escape")
		}
	}
	return nil, false, p.fail("unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// number reads an RFC 8259 number and writes its JCS form.
func (p *parser) number(dst []byte) ([]byte, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
	}
	intDigits := 0
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
		intDigits = 1
	case p.pos < len(p.data) && p.data[p.pos] >= '1' && p.data[p.pos] <= '9':
		intDigits = p.digits()
	default:
		return dst, p.fail("bad number")
	}
	integer := true
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		integer = false
		p.pos++
		if p.digits() == 0 {
			return dst, p.fail("bad fraction")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		integer = false
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return dst, p.fail("bad exponent")
		}
	}
	text := p.data[start:p.pos]
	if integer && intDigits <= 15 {
		// Below 10^15 an integer is exact as a double, and ECMAScript
		// writes such a double as its plain digits: the text as written
		// (the grammar has no leading zeros), minus zero aside.
		if string(text) == "-0" {
			return append(dst, '0'), nil
		}
		return append(dst, text...), nil
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		// Only range errors reach here (the grammar is checked): a number
		// beyond the double range has no JCS form.
		return dst, errs.Errorf("%w: number %s out of range", ErrInvalid, text)
	}
	return AppendNumber(dst, f)
}

func (p *parser) digits() int {
	n := 0
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
		n++
	}
	return n
}
