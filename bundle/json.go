package bundle

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// Number is a JSON number in policy data, kept as written so that a
// parse/marshal cycle does not change it (encoding/json's Number, which
// this package cannot name without linking encoding/json into the filter).
type Number = jsonx.NumberLiteral

// indenter writes JSON laid out as encoding/json's Encoder with
// SetIndent("", "  ") and SetEscapeHTML(false) lays it out: the manifest's
// signed form. Its small methods are kept out of line: inlined into every
// caller they cost the filter module kilobytes (see maxModuleBytes in
// filter/filter_test.go).
type indenter struct {
	b    []byte
	more []bool // per open container: an element precedes
}

//go:noinline
func (e *indenter) newline() {
	e.b = append(e.b, '\n')
	for range e.more {
		e.b = append(e.b, "  "...)
	}
}

//go:noinline
func (e *indenter) open(c byte) {
	e.b = append(e.b, c)
	e.more = append(e.more, false)
}

// elem starts the next element of the innermost container.
//
//go:noinline
func (e *indenter) elem() {
	top := len(e.more) - 1
	if e.more[top] {
		e.b = append(e.b, ',')
	}
	e.more[top] = true
	e.newline()
}

//go:noinline
func (e *indenter) key(k string) {
	e.elem()
	e.b = appendString(e.b, k)
	e.b = append(e.b, ':', ' ')
}

//go:noinline
func (e *indenter) close(c byte) {
	top := len(e.more) - 1
	nonEmpty := e.more[top]
	e.more = e.more[:top]
	if nonEmpty {
		e.newline()
	}
	e.b = append(e.b, c)
}

func (e *indenter) strings(ss []string) {
	if ss == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.open('[')
	for _, s := range ss {
		e.elem()
		e.b = appendString(e.b, s)
	}
	e.close(']')
}

func (e *indenter) stringMap(m map[string]string) {
	if m == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.open('{')
	for _, k := range sortedMapKeys(m) {
		e.key(k)
		e.b = appendString(e.b, m[k])
	}
	e.close('}')
}

func (e *indenter) time(t time.Time) error {
	js, err := t.MarshalJSON()
	e.b = append(e.b, js...)
	return err
}

// value writes the policy values Go code puts into Manifest.Policy (the
// compiler: maps, slices, strings, ints) and ParseManifest reads back;
// other types are an error rather than a guess at what encoding/json would
// have written. The list is short on purpose: every case is code in the
// filter module.
func (e *indenter) value(v any) error {
	switch v := v.(type) {
	case nil:
		e.b = append(e.b, "null"...)
	case bool:
		e.b = strconv.AppendBool(e.b, v)
	case string:
		e.b = appendString(e.b, v)
	case int:
		e.b = strconv.AppendInt(e.b, int64(v), 10)
	case int64:
		e.b = strconv.AppendInt(e.b, v, 10)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("unsupported value: NaN or infinity")
		}
		e.b = jsonx.AppendFloat(e.b, v)
	case jsonx.NumberLike: // Number, or json.Number from other code
		b, err := jsonx.AppendNumber(e.b, v.String())
		if err != nil {
			return err
		}
		e.b = b
	case []string:
		e.strings(v)
	case map[string]string:
		e.stringMap(v)
	case []any:
		if v == nil {
			e.b = append(e.b, "null"...)
			return nil
		}
		e.open('[')
		for _, x := range v {
			e.elem()
			if err := e.value(x); err != nil {
				return err
			}
		}
		e.close(']')
	case map[string]any:
		if v == nil {
			e.b = append(e.b, "null"...)
			return nil
		}
		e.open('{')
		for _, k := range sortedMapKeys(v) {
			e.key(k)
			if err := e.value(v[k]); err != nil {
				return err
			}
		}
		e.close('}')
	default:
		return errs.Errorf("unsupported policy value of type %T", v)
	}
	return nil
}

func sortedMapKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// appendString is jsonx.AppendString without the HTML escaping of <, >
// and &: the manifest is written with SetEscapeHTML(false), so policy data
// reads as written ("a": "<&>"). Escaping works rune by rune and the three
// are ASCII, so the pieces between them escape as the whole would.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for {
		i := strings.IndexAny(s, "<>&")
		if i < 0 {
			break
		}
		b = appendInner(b, s[:i])
		b = append(b, s[i])
		s = s[i+1:]
	}
	return append(appendInner(b, s), '"')
}

// appendInner appends s escaped, without the quotes.
func appendInner(b []byte, s string) []byte {
	start := len(b)
	b = jsonx.AppendString(b, s)
	copy(b[start:], b[start+1:len(b)-1])
	return b[:len(b)-2]
}

// decodeManifest reads the members of a manifest, every one by its exact
// name; a member this version does not know is an error (an older node
// must not silently ignore a field it does not understand).
func decodeManifest(v *jsonx.Value) (Manifest, error) {
	var m Manifest
	o, err := v.AsObject("")
	if err != nil {
		return m, err
	}
	o.String("format", &m.Format)
	o.String("kind", &m.Kind)
	o.String("tenant", &m.Tenant)
	o.String("name", &m.Name)
	o.Int64("revision", &m.Revision)
	decodeTime(o, "created_at", &m.CreatedAt)
	decodeTime(o, "expires_at", &m.ExpiresAt)
	o.String("engine_version", &m.EngineVersion)
	o.Strings("builtins", &m.Builtins)
	o.Strings("entrypoints", &m.Entrypoints)
	if f := o.Object("files"); f != nil {
		rest := f.Rest()
		m.Files = make(map[string]string, len(rest))
		for _, mem := range rest {
			s, err := mem.Value.AsString(f.Path(mem.Key))
			o.Fail(err)
			m.Files[mem.Key] = s
		}
	}
	if r := o.Object("release"); r != nil {
		m.Release = new(Release)
		r.Strings("approvers", &m.Release.Approvers)
		r.String("publisher", &m.Release.Publisher)
		r.String("stage", &m.Release.Stage)
		r.Int64("replaces", &m.Release.Replaces)
		o.Fail(r.End())
	}
	if p := o.Get("policy"); p != nil {
		if p.Kind != jsonx.Object {
			o.Fail(p.Fail(o.Path("policy"), "want an object, got "+p.Kind.String()))
		} else {
			m.Policy = policyValue(p).(map[string]any)
		}
	}
	return m, o.End()
}

func decodeTime(o *jsonx.Obj, name string, dst *time.Time) {
	v := o.Get(name)
	switch {
	case v == nil:
	case v.Kind != jsonx.String:
		o.Fail(v.Fail(o.Path(name), "want an RFC 3339 time string, got "+v.Kind.String()))
	default:
		if err := dst.UnmarshalJSON(v.Raw); err != nil {
			o.Fail(v.Fail(o.Path(name), err.Error()))
		}
	}
}

// policyValue converts free-form policy data to the Go values
// encoding/json's UseNumber decoding gave: map[string]any, []any, string,
// bool, nil and Number.
func policyValue(v *jsonx.Value) any {
	switch v.Kind {
	case jsonx.Object:
		m := make(map[string]any, len(v.Members))
		for i := range v.Members {
			m[v.Members[i].Key] = policyValue(&v.Members[i].Value)
		}
		return m
	case jsonx.Array:
		a := make([]any, len(v.Elems))
		for i := range v.Elems {
			a[i] = policyValue(&v.Elems[i])
		}
		return a
	case jsonx.String:
		return v.Str
	case jsonx.Number:
		return Number(v.Str)
	case jsonx.Bool:
		return v.Bool
	}
	return nil
}
