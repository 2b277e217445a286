package jsonx

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// Writer appends JSON to B, placing commas itself. It does not check that
// calls nest correctly; the tests of each user do.
type Writer struct {
	B    []byte
	more bool // a value precedes: the next one needs a comma
}

//go:noinline
func (w *Writer) sep() {
	if w.more {
		w.B = append(w.B, ',')
	}
}

// BeginObject starts an object.
//
//go:noinline
func (w *Writer) BeginObject() { w.sep(); w.B = append(w.B, '{'); w.more = false }

// EndObject ends an object.
//
//go:noinline
func (w *Writer) EndObject() { w.B = append(w.B, '}'); w.more = true }

// BeginArray starts an array.
//
//go:noinline
func (w *Writer) BeginArray() { w.sep(); w.B = append(w.B, '['); w.more = false }

// EndArray ends an array.
//
//go:noinline
func (w *Writer) EndArray() { w.B = append(w.B, ']'); w.more = true }

// Key writes an object member's name; the next call writes its value.
func (w *Writer) Key(k string) {
	w.sep()
	w.B = AppendString(w.B, k)
	w.B = append(w.B, ':')
	w.more = false
}

// String writes a string.
func (w *Writer) String(s string) { w.sep(); w.B = AppendString(w.B, s); w.more = true }

// Int writes an integer.
func (w *Writer) Int(n int64) { w.sep(); w.B = strconv.AppendInt(w.B, n, 10); w.more = true }

// Uint writes a non-negative integer.
func (w *Writer) Uint(n uint64) { w.sep(); w.B = strconv.AppendUint(w.B, n, 10); w.more = true }

// Float writes f as encoding/json does; NaN and infinities, which JSON
// cannot express, are written as null.
func (w *Writer) Float(f float64) { w.sep(); w.B = AppendFloat(w.B, f); w.more = true }

// Bool writes true or false.
//
//go:noinline
func (w *Writer) Bool(b bool) { w.sep(); w.B = strconv.AppendBool(w.B, b); w.more = true }

// Null writes null.
//
//go:noinline
func (w *Writer) Null() { w.sep(); w.B = append(w.B, "null"...); w.more = true }

// Raw writes already-encoded JSON as one value.
//
//go:noinline
func (w *Writer) Raw(js []byte) { w.sep(); w.B = append(w.B, js...); w.more = true }

// Strings writes an array of strings.
func (w *Writer) Strings(ss []string) {
	w.BeginArray()
	for _, s := range ss {
		w.String(s)
	}
	w.EndArray()
}

// AppendFloat appends f formatted as encoding/json formats a float64.
func AppendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b) - start
		if n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string exactly as encoding/json writes
// it: <, > and & escaped for HTML, U+2028 and U+2029 escaped, invalid
// UTF-8 replaced by U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
