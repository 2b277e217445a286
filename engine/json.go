package engine

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// maxJSONDepth is encoding/json's nesting limit: documents are read as
// deep as before, and json.is_valid agrees with OPA's.
const maxJSONDepth = 10000

// FromJSON decodes one JSON document into a Value. Numbers keep their exact
// literal text.
//
// It is strict: a duplicate key, invalid UTF-8 or a lone surrogate escape
// is an error, since the documents it reads (bundle data, claims) are
// signed or checked, and a lenient reader would let another reader see a
// different document in the same bytes. json.unmarshal, which follows
// encoding/json as OPA does, reads leniently.
func FromJSON(data []byte) (Value, error) {
	return fromJSON(data, jsonx.Options{MaxDepth: maxJSONDepth})
}

// lenientJSON is what encoding/json accepts, for the builtins that OPA
// implements with it: the last of duplicate keys wins, and invalid UTF-8
// and lone surrogates become U+FFFD.
var lenientJSON = jsonx.Options{MaxDepth: maxJSONDepth, Lenient: true}

func fromJSON(data []byte, opts jsonx.Options) (Value, error) {
	root, err := jsonx.ParseWith(data, opts)
	if err != nil {
		return nil, &Error{Code: CodeInvalidValue, Message: "decoding JSON: " + err.Error()}
	}
	return fromJSONValue(root)
}

// fromJSONValue converts a parsed document; object keys are unique in it
// in either mode, so objects are sorted once instead of built by insertion.
func fromJSONValue(v *jsonx.Value) (Value, error) {
	switch v.Kind {
	case jsonx.Null:
		return valNull, nil
	case jsonx.Bool:
		return Bool(v.Bool), nil
	case jsonx.String:
		return stringValue(v.Str), nil
	case jsonx.Number:
		// The grammar is checked; the exponent bound is OPA's.
		if !exponentInRange(v.Str) {
			return nil, &Error{Code: CodeInvalidValue, Message: "decoding JSON: line " + itoa(int(v.Line)) + ", column " + itoa(int(v.Col)) + ": invalid number literal " + quoteLiteral(v.Str)}
		}
		return parsedNumber(v.Str), nil
	case jsonx.Array:
		arr := NewArray(len(v.Elems))
		for i := range v.Elems {
			e, err := fromJSONValue(&v.Elems[i])
			if err != nil {
				return nil, err
			}
			arr.Append(e)
		}
		return arr, nil
	case jsonx.Object:
		entries := make([]objectEntry, len(v.Members))
		for i := range v.Members {
			m := &v.Members[i]
			e, err := fromJSONValue(&m.Value)
			if err != nil {
				return nil, err
			}
			entries[i] = objectEntry{stringValue(m.Key), e}
		}
		return objectFromStringEntries(entries), nil
	}
	return nil, &Error{Code: CodeInvalidValue, Message: "decoding JSON: unknown kind " + v.Kind.String()}
}

// JSONNumber is a number's literal text, the form ToGo gives numbers in:
// encoding/json's Number without linking encoding/json into the wasm
// filter (issue 3). FromGo accepts either. ToGoWith gives numbers in
// another form.
type JSONNumber = jsonx.NumberLiteral

// FromGo converts plain Go data (as produced by encoding/json, or built by
// hand) into a Value. Values are passed through unchanged; numbers may be
// encoding/json's Number or JSONNumber (any type with their methods) as
// well as Go's integer and float types.
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
	case jsonx.NumberLike:
		n, ok := parseNumber(x.String())
		if !ok {
			return nil, &Error{Code: CodeInvalidValue, Message: "invalid number literal " + quoteLiteral(x.String())}
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
				return nil, errs.Errorf("array index %d: %w", i, err)
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
				return nil, errs.Errorf("object key %q: %w", k, err)
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
// JSONNumber, string, bool and nil. Sets become sorted slices; object keys
// that are not strings become their JSON text, as in OPA.
func ToGo(v Value) any { return ToGoWith(v, toJSONNumber) }

func toJSONNumber(lit string) any { return JSONNumber(lit) }

// ToGoWith is ToGo with numbers given as number(literal): callers that
// feed OPA pass one returning json.Number, the form OPA reads without a
// JSON round trip per number.
func ToGoWith(v Value, number func(literal string) any) any {
	switch v := v.(type) {
	case nullValue:
		return nil
	case boolValue:
		return bool(v)
	case stringValue:
		return string(v)
	case *numberValue:
		return number(v.lit)
	case *Array:
		out := make([]any, len(v.elems))
		for i, e := range v.elems {
			out[i] = ToGoWith(e, number)
		}
		return out
	case *Set:
		out := make([]any, len(v.elems))
		for i, e := range v.elems {
			out[i] = ToGoWith(e, number)
		}
		return out
	case *Object:
		out := make(map[string]any, len(v.entries))
		for _, e := range v.entries {
			out[objectKeyString(e.key)] = ToGoWith(e.value, number)
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
// encoding/json, HTML characters escaped). It runs in every decision (DLP
// cache keys, is_integer's json.marshal): growing first lets the append
// reuse the buffer's space instead of allocating.
func appendJSONString(buf *bytes.Buffer, s string) {
	buf.Grow(len(s) + 2)
	buf.Write(jsonx.AppendString(buf.AvailableBuffer(), s))
}
