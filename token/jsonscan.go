package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// fieldNames are the members of every object this package decodes
// (header, claims, act, JWKS, JWK).
var fieldNames = map[string]bool{
	"alg": true, "kid": true, "typ": true, "crit": true,
	"iss": true, "sub": true, "aud": true, "tenant": true, "org": true, "scope": true, "region": true,
	"exp": true, "nbf": true, "iat": true, "jti": true, "act": true,
	"tool": true, "params_digest": true, "approval_id": true, // override tokens
	"keys": true, "kty": true, "crv": true, "x": true, "use": true, "key_ops": true, "d": true,
}

// maxDepth bounds nesting; a token needs at most MaxChain+2 levels.
const maxDepth = 32

// checkJSON validates data as one JSON value (RFC 8259 grammar, nothing
// after it) and fails on an object that names the same key twice, or two
// keys that encoding/json would treat as the same field: it matches field
// names with Unicode simple case folding, so "sub", "SUB", "ſub" (long s)
// all land in Claims.Subject while other JWT libraries keep them apart.
// Keys that fold to one of fieldNames must be spelled exactly.
//
// It is a hand-written scanner rather than json.Decoder.Token because it
// runs on every request in the filter, where the decoder's per-token
// allocations cost more than the signature check (see BenchmarkVerify).
func checkJSON(data []byte) error {
	s := scanner{data: data}
	s.space()
	if err := s.value(0); err != nil {
		return err
	}
	s.space()
	if s.pos != len(s.data) {
		return fmt.Errorf("data after the JSON value at offset %d", s.pos)
	}
	return nil
}

type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", s.pos, fmt.Sprintf(format, args...))
}

func (s *scanner) value(depth int) error {
	if s.pos >= len(s.data) {
		return s.errorf("unexpected end of input")
	}
	c := s.data[s.pos]
	if (c == '{' || c == '[') && depth > maxDepth {
		return s.errorf("nested deeper than %d", maxDepth)
	}
	switch {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, _, err := s.str()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		return s.errorf("unexpected byte %q", c)
	}
}

func (s *scanner) object(depth int) error {
	s.pos++ // '{'
	// Keys of this object, folded; objects here are small, so a slice
	// beats a map.
	var seen []string
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.errorf("want an object key")
		}
		key, folded, err := s.str()
		if err != nil {
			return err
		}
		for _, prev := range seen {
			if prev == folded {
				return fmt.Errorf("duplicate key %q (keys are compared case-insensitively)", key)
			}
		}
		seen = append(seen, folded)
		if !fieldNames[key] {
			for name := range fieldNames {
				if foldKey(name) == folded {
					return fmt.Errorf("key %q must be spelled %q", key, name)
				}
			}
		}
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.errorf("want ':'")
		}
		s.pos++
		s.space()
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.errorf("unexpected end of input")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or '}'")
		}
	}
}

func (s *scanner) array(depth int) error {
	s.pos++ // '['
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for {
		s.space()
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.errorf("unexpected end of input")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or ']'")
		}
	}
}

// str scans a string starting at its opening quote and returns it decoded
// and folded. Escapes are decoded by encoding/json itself, so that
// "t\u0065nant" is compared as the decoder will see it.
func (s *scanner) str() (decoded, folded string, err error) {
	start := s.pos
	s.pos++ // '"'
	escaped := false
	for {
		if s.pos >= len(s.data) {
			return "", "", s.errorf("unterminated string")
		}
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			raw := s.data[start:s.pos]
			if !escaped {
				decoded = string(raw[1 : len(raw)-1])
			} else if err := json.Unmarshal(raw, &decoded); err != nil {
				return "", "", fmt.Errorf("offset %d: %w", start, err)
			}
			return decoded, foldKey(decoded), nil
		case c < 0x20:
			return "", "", s.errorf("control character in string")
		case c == '\\':
			escaped = true
			s.pos++
			if s.pos >= len(s.data) {
				return "", "", s.errorf("unterminated escape")
			}
			switch s.data[s.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos++
			case 'u':
				if s.pos+5 > len(s.data) {
					return "", "", s.errorf("short \\u escape")
				}
				for _, h := range s.data[s.pos+1 : s.pos+5] {
					if !isHex(h) {
						return "", "", s.errorf("bad \\u escape")
					}
				}
				s.pos += 5
			default:
				return "", "", s.errorf("bad escape")
			}
		default:
			s.pos++
		}
	}
}

func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.errorf("invalid literal")
	}
	s.pos += len(word)
	return nil
}

func (s *scanner) number() error {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.data) && s.data[s.pos] == '0':
		s.pos++
	case s.pos < len(s.data) && s.data[s.pos] >= '1' && s.data[s.pos] <= '9':
		s.digits()
	default:
		return s.errorf("invalid number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.errorf("invalid number")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return s.errorf("invalid number")
		}
	}
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// foldKey maps every key to one representative of its case-fold class,
// the way encoding/json matches field names (bytes.EqualFold semantics:
// Unicode simple folding, so the Kelvin sign folds with 'k').
func foldKey(k string) string {
	ascii, lower := true, false
	for i := 0; i < len(k); i++ {
		c := k[i]
		ascii = ascii && c < utf8.RuneSelf
		lower = lower || c >= 'a' && c <= 'z'
	}
	if ascii {
		if !lower {
			return k
		}
		// For ASCII letters the smallest rune of the orbit is the upper case.
		b := []byte(k)
		for i, c := range b {
			if c >= 'a' && c <= 'z' {
				b[i] = c - ('a' - 'A')
			}
		}
		return string(b)
	}
	out := make([]rune, 0, len(k))
	for _, r := range k {
		// The smallest rune of the fold orbit.
		for r2 := unicode.SimpleFold(r); r2 != r; r2 = unicode.SimpleFold(r2) {
			if r2 < r {
				r = r2
			}
		}
		out = append(out, r)
	}
	return string(out)
}

var errNotObject = errors.New("not a JSON object")
