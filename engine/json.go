package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
)

// FromJSON decodes one JSON document into a Value. Numbers keep their exact
// literal text.
func FromJSON(data []byte) (Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, &Error{Code: CodeInvalidValue, Message: "decoding JSON: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Code: CodeInvalidValue, Message: "decoding JSON: trailing data after the document"}
	}
	return FromGo(x)
}

// FromGo converts plain Go data (as produced by encoding/json, or built by
// hand) into a Value. Values are passed through unchanged.
func FromGo(x any) (Value, error) {
	switch x := x.(type) {
	case nil:
		return valNull, nil
	case Value:
		return x, nil
	case bool:
		return Bool(x), nil
	case string:
		return stringValue(x), nil
	case json.Number:
		n, ok := parseNumber(string(x))
		if !ok {
			return nil, &Error{Code: CodeInvalidValue, Message: "invalid number literal " + strconv.Quote(string(x))}
		}
		return n, nil
	case int:
		return intNumber(int64(x)), nil
	case int32:
		return intNumber(int64(x)), nil
	case int64:
		return intNumber(x), nil
	case uint32:
		return intNumber(int64(x)), nil
	case uint64:
		if x > math.MaxInt64 {
			n, _ := parseNumber(strconv.FormatUint(x, 10))
			return n, nil
		}
		return intNumber(int64(x)), nil
	case float32:
		return FromGo(float64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, &Error{Code: CodeInvalidValue, Message: fmt.Sprintf("number %v cannot be represented", x)}
		}
		n, _ := parseNumber(strconv.FormatFloat(x, 'g', -1, 64))
		return n, nil
	case []any:
		arr := NewArray(len(x))
		for i, e := range x {
			v, err := FromGo(e)
			if err != nil {
				return nil, fmt.Errorf("array index %d: %w", i, err)
			}
			arr.Append(v)
		}
		return arr, nil
	case []string:
		arr := NewArray(len(x))
		for _, e := range x {
			arr.Append(stringValue(e))
		}
		return arr, nil
	case map[string]any:
		entries := make([]objectEntry, 0, len(x))
		for k, e := range x {
			v, err := FromGo(e)
			if err != nil {
				return nil, fmt.Errorf("object key %q: %w", k, err)
			}
			entries = append(entries, objectEntry{stringValue(k), v})
		}
		return objectFromStringEntries(entries), nil
	case map[string]string:
		entries := make([]objectEntry, 0, len(x))
		for k, e := range x {
			entries = append(entries, objectEntry{stringValue(k), stringValue(e)})
		}
		return objectFromStringEntries(entries), nil
	}
	return nil, &Error{Code: CodeInvalidValue, Message: fmt.Sprintf("unsupported Go type %T", x)}
}

// ToGo converts a Value into plain Go data: map[string]any, []any,
// json.Number, string, bool and nil. Sets become sorted slices; object keys
// that are not strings become their JSON text, as in OPA.
func ToGo(v Value) any {
	switch v := v.(type) {
	case nullValue:
		return nil
	case boolValue:
		return bool(v)
	case stringValue:
		return string(v)
	case *numberValue:
		return json.Number(v.lit)
	case *Array:
		out := make([]any, len(v.elems))
		for i, e := range v.elems {
			out[i] = ToGo(e)
		}
		return out
	case *Set:
		out := make([]any, len(v.elems))
		for i, e := range v.elems {
			out[i] = ToGo(e)
		}
		return out
	case *Object:
		out := make(map[string]any, len(v.entries))
		for _, e := range v.entries {
			out[objectKeyString(e.key)] = ToGo(e.value)
		}
		return out
	}
	return nil
}

// objectFromStringEntries sorts entries with unique string keys once instead
// of inserting them one by one.
func objectFromStringEntries(entries []objectEntry) *Object {
	sort.Slice(entries, func(i, j int) bool {
		return entries[i].key.(stringValue) < entries[j].key.(stringValue)
	})
	return &Object{entries: entries}
}

func objectKeyString(k Value) string {
	if s, ok := k.(stringValue); ok {
		return string(s)
	}
	b, err := ToJSON(k)
	if err != nil {
		return ""
	}
	return string(b)
}

// ToJSON encodes v deterministically: object keys sorted, sets as sorted
// arrays, numbers as their literal text, strings escaped like encoding/json.
func ToJSON(v Value) ([]byte, error) {
	var buf bytes.Buffer
	if err := appendJSON(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func appendJSON(buf *bytes.Buffer, v Value) error {
	switch v := v.(type) {
	case nullValue:
		buf.WriteString("null")
	case boolValue:
		if v {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case stringValue:
		appendJSONString(buf, string(v))
	case *numberValue:
		buf.WriteString(v.lit)
	case *Array:
		buf.WriteByte('[')
		for i, e := range v.elems {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := appendJSON(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case *Set:
		buf.WriteByte('[')
		for i, e := range v.elems {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := appendJSON(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case *Object:
		// Non-string keys are rendered as JSON text, which can reorder them
		// relative to string keys; sort by the rendered key like OPA does.
		type kv struct {
			k string
			v Value
		}
		entries := make([]kv, len(v.entries))
		sorted := true
		for i, e := range v.entries {
			entries[i] = kv{objectKeyString(e.key), e.value}
			if _, ok := e.key.(stringValue); !ok {
				sorted = false
			}
		}
		if !sorted {
			sortKV(entries, func(a, b kv) bool { return a.k < b.k })
		}
		buf.WriteByte('{')
		for i, e := range entries {
			if i > 0 {
				buf.WriteByte(',')
			}
			appendJSONString(buf, e.k)
			buf.WriteByte(':')
			if err := appendJSON(buf, e.v); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return &Error{Code: CodeInvalidValue, Message: fmt.Sprintf("cannot encode %T", v)}
	}
	return nil
}

func sortKV[T any](s []T, less func(a, b T) bool) {
	// Insertion sort is enough: only objects with non-string keys get here.
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && less(s[j], s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// appendJSONString writes s as encoding/json does (OPA's json.marshal is
// encoding/json, HTML characters escaped). Strings of plain printable
// ASCII, nearly all of them, are written directly: going through
// json.Marshal costs an allocation and reflection per string, which showed
// up in every decision (DLP cache keys, is_integer's json.marshal).
func appendJSONString(buf *bytes.Buffer, s string) {
	if plainJSONString(s) {
		buf.Grow(len(s) + 2)
		buf.WriteByte('"')
		buf.WriteString(s)
		buf.WriteByte('"')
		return
	}
	b, err := json.Marshal(s)
	if err != nil {
		// json.Marshal of a string cannot fail; invalid UTF-8 is replaced.
		buf.WriteString(`""`)
		return
	}
	buf.Write(b)
}

// plainJSONString reports whether encoding/json writes s unchanged between
// quotes: printable ASCII other than the quote, the backslash and the
// characters it escapes for HTML.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
