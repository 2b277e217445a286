package wal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/aegis-mesh/aegis/jcs"
)

// maxDepth bounds nesting in an event: events are flat records with a few
// lists, so anything deeper is hostile input, not an audit event.
const maxDepth = 16

// object keeps the members of a JSON object; keys are unique (checked while
// decoding) and sorted only when encoded.
type object map[string]any

// decodeEvent reads one JSON object strictly: duplicate keys, invalid
// UTF-8, non-integer numbers, numbers outside the IEEE-754 safe range and
// trailing data are refused, because each would let two readers hash
// different bytes for one event.
func decodeEvent(raw []byte) (object, error) {
	if !utf8.Valid(raw) {
		return nil, errors.New("event is not valid UTF-8")
	}
	// The shared canonicalizer's grammar first: it refuses what
	// encoding/json would quietly repair (lone surrogate escapes become
	// U+FFFD there), so the WAL never hashes a reading of its own.
	if _, err := jcs.Canonicalize(raw); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("event: data after the object")
	}
	obj, ok := v.(object)
	if !ok {
		return nil, errors.New("event is not a JSON object")
	}
	return obj, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("event nested deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := object{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("event: %w", err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("event: object key is not a string")
				}
				if _, dup := obj[k]; dup {
					return nil, fmt.Errorf("event: duplicate key %q", k)
				}
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj[k] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("event: %w", err)
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("event: %w", err)
			}
			return arr, nil
		}
		return nil, fmt.Errorf("event: unexpected %q", t)
	case json.Number:
		n, err := safeInt(t)
		if err != nil {
			return nil, err
		}
		return n, nil
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("event: unexpected token %v", tok)
}

// safeInt accepts only integers JCS prints as plain decimals: audit events
// carry counters and nanoseconds, never fractions.
func safeInt(n json.Number) (int64, error) {
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("event: number %s is not an integer", n)
	}
	if v > 1<<53 || v < -(1<<53) {
		return 0, fmt.Errorf("event: number %d is not a safe integer", v)
	}
	return v, nil
}

// appendJCS writes v in RFC 8785 form: members sorted by the UTF-16 code
// units of their keys, no whitespace, minimal string escapes.
func appendJCS(b []byte, v any) []byte {
	switch t := v.(type) {
	case object:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jcs.AppendString(b, k)
			b = append(b, ':')
			b = appendJCS(b, t[k])
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, e := range t {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJCS(b, e)
		}
		return append(b, ']')
	case string:
		return jcs.AppendString(b, t)
	case int64:
		return strconv.AppendInt(b, t, 10)
	case bool:
		return strconv.AppendBool(b, t)
	case nil:
		return append(b, "null"...)
	}
	panic(fmt.Sprintf("wal: appendJCS: unexpected %T", v))
}

func compareUTF16(a, b string) int {
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	return slices.Compare(ua, ub)
}

// Canonical returns the JCS form of one event object, refusing what
// decodeEvent refuses.
func Canonical(raw []byte) ([]byte, error) {
	obj, err := decodeEvent(raw)
	if err != nil {
		return nil, err
	}
	return appendJCS(nil, obj), nil
}
