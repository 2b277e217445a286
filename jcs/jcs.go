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
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
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
	p := parser{data: data}
	p.space()
	out, err := p.value(dst, 0)
	if err != nil {
		return dst, err
	}
	p.space()
	if p.pos != len(p.data) {
		return dst, p.fail("data after the JSON value")
	}
	return out, nil
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
			return "", fmt.Errorf("params digest: %w", err)
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
	const hexDigits = "0123456789abcdef"
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
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				dst = append(dst, c)
			}
		}
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
		return dst, fmt.Errorf("%w: %v has no JSON form", ErrInvalid, f)
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
		return dst, fmt.Errorf("jcs: formatting %v: %w", f, err)
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
}

func (p *parser) fail(msg string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrInvalid, msg, p.pos)
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
		s, err := p.str()
		if err != nil {
			return dst, err
		}
		return AppendString(dst, s), nil
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

type member struct {
	key   []uint16 // UTF-16 code units: the JCS sort order
	value []byte   // canonical "key":value text
}

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
	var members []member
	for {
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return dst, p.fail("want a string key in object")
		}
		key, err := p.str()
		if err != nil {
			return dst, err
		}
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return dst, p.fail("want : after object key")
		}
		p.pos++
		p.space()
		text := AppendString(nil, key)
		text = append(text, ':')
		if text, err = p.value(text, depth); err != nil {
			return dst, err
		}
		members = append(members, member{key: utf16.Encode([]rune(key)), value: text})
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
	// sort, not slices.Sort*Func: each struct type would instantiate its
	// own ~15 kB copy of the generic sort in the wasm filter (issue 3).
	sort.Slice(members, func(i, j int) bool { return slices.Compare(members[i].key, members[j].key) < 0 })
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			if slices.Equal(members[i-1].key, m.key) {
				return dst, fmt.Errorf("%w: duplicate object key %q", ErrInvalid, string(utf16.Decode(m.key)))
			}
			dst = append(dst, ',')
		}
		dst = append(dst, m.value...)
	}
	return append(dst, '}'), nil
}

// str reads a JSON string at p.pos and returns its decoded value.
func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := p.data[start:p.pos]
			if !utf8.Valid(s) {
				return "", p.fail("invalid UTF-8 in string")
			}
			p.pos++
			return string(s), nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.pos++
	}
	out := append([]byte(nil), p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return "", p.fail("invalid UTF-8 in string")
			}
			p.pos++
			return string(out), nil
		case c < 0x20:
			return "", p.fail("control character in string")
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
				return "", p.fail("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by an escaped low one
				// names a character; anything else has no UTF-8 form.
				if r >= 0xDC00 || len(p.data)-p.pos < 2 || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
					return "", p.fail("lone surrogate escape")
				}
				p.pos += 2
				lo, ok := p.hex4()
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return "", p.fail("lone surrogate escape")
				}
				r = utf16.DecodeRune(r, lo)
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", p.fail("bad escape")
		}
	}
	return "", p.fail("unterminated string")
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
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
	case p.pos < len(p.data) && p.data[p.pos] >= '1' && p.data[p.pos] <= '9':
		p.digits()
	default:
		return dst, p.fail("bad number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return dst, p.fail("bad fraction")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return dst, p.fail("bad exponent")
		}
	}
	f, err := strconv.ParseFloat(string(p.data[start:p.pos]), 64)
	if err != nil {
		// Only range errors reach here (the grammar is checked): a number
		// beyond the double range has no JCS form.
		return dst, fmt.Errorf("%w: number %s out of range", ErrInvalid, p.data[start:p.pos])
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
