package jsonx

import (
	"strconv"
	"strings"
)

// FieldError says which member of a document is wrong and why.
type FieldError struct {
	Path      string // e.g. "config.bundles[1].tenant"
	Line, Col int    // where the offending value starts; 0 when it is absent
	Msg       string
}

func (e *FieldError) Error() string {
	// Concatenation, not a strings.Builder: one runtime call instead of an
	// inlined copy check and append per piece (module size, issue 3).
	if e.Line > 0 {
		return e.Path + " (line " + strconv.Itoa(e.Line) + ", column " + strconv.Itoa(e.Col) + "): " + e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errorf-free constructors keep fmt's reflection off the hot paths.

//go:noinline
func typeError(path string, v *Value, want string) *FieldError {
	return &FieldError{Path: path, Line: int(v.Line), Col: int(v.Col), Msg: "want " + want + ", got " + v.Kind.String()}
}

// Fail returns a FieldError for v at path with msg, for checks of a
// value's content that the caller makes.
//
//go:noinline
func (v *Value) Fail(path, msg string) error {
	return &FieldError{Path: path, Line: int(v.Line), Col: int(v.Col), Msg: msg}
}

// Member returns the member named key (exact case), or nil.
//
//go:noinline
func (v *Value) Member(key string) *Value {
	for i := range v.Members {
		if v.Members[i].Key == key {
			return &v.Members[i].Value
		}
	}
	return nil
}

// AsString returns a String's content.
func (v *Value) AsString(path string) (string, error) {
	if v.Kind != String {
		return "", typeError(path, v, "a string")
	}
	return v.Str, nil
}

// AsBool returns a Bool's value.
func (v *Value) AsBool(path string) (bool, error) {
	if v.Kind != Bool {
		return false, typeError(path, v, "true or false")
	}
	return v.Bool, nil
}

// AsInt64 returns a Number written as an integer (no fraction, no
// exponent, as encoding/json requires for integer fields) within int64.
func (v *Value) AsInt64(path string) (int64, error) {
	if v.Kind != Number {
		return 0, typeError(path, v, "an integer")
	}
	n, err := strconv.ParseInt(v.Str, 10, 64)
	if err != nil {
		return 0, v.Fail(path, "want an integer within 64 bits, got "+v.Str)
	}
	return n, nil
}

// AsUint64 returns a Number written as a non-negative integer.
func (v *Value) AsUint64(path string) (uint64, error) {
	if v.Kind != Number {
		return 0, typeError(path, v, "a non-negative integer")
	}
	n, err := strconv.ParseUint(v.Str, 10, 64)
	if err != nil {
		return 0, v.Fail(path, "want a non-negative integer within 64 bits, got "+v.Str)
	}
	return n, nil
}

// AsFloat64 returns a Number as the nearest float64; numbers beyond its
// range are refused.
func (v *Value) AsFloat64(path string) (float64, error) {
	if v.Kind != Number {
		return 0, typeError(path, v, "a number")
	}
	f, err := strconv.ParseFloat(v.Str, 64)
	if err != nil {
		return 0, v.Fail(path, "number "+v.Str+" is out of range")
	}
	return f, nil
}

// AsStrings returns an Array of Strings.
func (v *Value) AsStrings(path string) ([]string, error) {
	if v.Kind != Array {
		return nil, typeError(path, v, "an array of strings")
	}
	out := make([]string, len(v.Elems))
	for i := range v.Elems {
		s, err := v.Elems[i].AsString(Index(path, i))
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// AsArray returns an Array's elements; Index(path, i) names each.
func (v *Value) AsArray(path string) ([]Value, error) {
	if v.Kind != Array {
		return nil, typeError(path, v, "an array")
	}
	return v.Elems, nil
}

// AsObject starts decoding an Object's members.
func (v *Value) AsObject(path string) (*Obj, error) {
	if v.Kind != Object {
		return nil, typeError(path, v, "an object")
	}
	return &Obj{V: v, path: path, read: make([]bool, len(v.Members))}, nil
}

// Index names element i of the array at path.
//
//go:noinline
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// Key names member key of the object at path.
//
//go:noinline
func Key(path, key string) string {
	s := pathSeg{key: key, index: -1}.String()
	if path == "" && s[0] == '.' {
		return s[1:]
	}
	return path + s
}

// Obj decodes one object: each getter reads a member by its exact name and
// marks it read, and the first error sticks. End reports it, or the first
// member nobody read: a misspelt field is an error, not a silent default.
//
// A member that is null is a type error like any other: the documents we
// read have no use for null, and accepting it would let "field": null pass
// where the field's check expects a value.
type Obj struct {
	V    *Value
	path string
	read []bool
	err  error
}

// Path names the object, or member name of it.
//
//go:noinline
func (o *Obj) Path(name string) string { return Key(o.path, name) }

// Get returns member name, marked read, or nil when absent.
//
//go:noinline
func (o *Obj) Get(name string) *Value {
	for i := range o.V.Members {
		if o.V.Members[i].Key == name {
			o.read[i] = true
			return &o.V.Members[i].Value
		}
	}
	return nil
}

// Has reports whether member name is present, without reading it.
func (o *Obj) Has(name string) bool { return o.V.Member(name) != nil }

// Fail records err unless an earlier error is recorded.
//
//go:noinline
func (o *Obj) Fail(err error) {
	if o.err == nil && err != nil {
		o.err = err
	}
}

// Failf records a message about member name (present or not).
//
//go:noinline
func (o *Obj) FailMember(name, msg string) {
	if v := o.V.Member(name); v != nil {
		o.Fail(v.Fail(o.Path(name), msg))
		return
	}
	o.Fail(&FieldError{Path: o.Path(name), Msg: msg})
}

// Require records an error for the first of names that is absent.
func (o *Obj) Require(names ...string) {
	for _, n := range names {
		if !o.Has(n) {
			o.Fail(&FieldError{Path: o.Path(n), Msg: "required member is missing"})
			return
		}
	}
}

// String sets *dst to member name when present; it reports presence.
func (o *Obj) String(name string, dst *string) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	s, err := v.AsString(o.Path(name))
	o.Fail(err)
	if err == nil {
		*dst = s
	}
	return true
}

// Bool sets *dst to member name when present.
func (o *Obj) Bool(name string, dst *bool) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	b, err := v.AsBool(o.Path(name))
	o.Fail(err)
	if err == nil {
		*dst = b
	}
	return true
}

// Int64 sets *dst to member name when present.
func (o *Obj) Int64(name string, dst *int64) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	n, err := v.AsInt64(o.Path(name))
	o.Fail(err)
	if err == nil {
		*dst = n
	}
	return true
}

// Int sets *dst to member name when present and within int.
func (o *Obj) Int(name string, dst *int) bool {
	var n int64
	if !o.Int64(name, &n) {
		return false
	}
	if int64(int(n)) != n {
		o.FailMember(name, "integer out of range")
		return true
	}
	*dst = int(n)
	return true
}

// Uint64 sets *dst to member name when present.
func (o *Obj) Uint64(name string, dst *uint64) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	n, err := v.AsUint64(o.Path(name))
	o.Fail(err)
	if err == nil {
		*dst = n
	}
	return true
}

// Float64 sets *dst to member name when present.
func (o *Obj) Float64(name string, dst *float64) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	f, err := v.AsFloat64(o.Path(name))
	o.Fail(err)
	if err == nil {
		*dst = f
	}
	return true
}

// Strings sets *dst to member name, an array of strings, when present.
func (o *Obj) Strings(name string, dst *[]string) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	ss, err := v.AsStrings(o.Path(name))
	o.Fail(err)
	if err == nil {
		*dst = ss
	}
	return true
}

// Raw sets *dst to member name's exact JSON text (a subslice of the
// parsed document) when present.
func (o *Obj) Raw(name string, dst *[]byte) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	*dst = v.Raw
	return true
}

// Object returns member name as an Obj when present and an object; nil
// when absent or (error recorded) not an object. The caller must End it
// or hand its error to this object with Fail(sub.End()).
func (o *Obj) Object(name string) *Obj {
	v := o.Get(name)
	if v == nil {
		return nil
	}
	sub, err := v.AsObject(o.Path(name))
	o.Fail(err)
	return sub
}

// Array returns member name's elements when present and an array.
func (o *Obj) Array(name string) ([]Value, bool) {
	v := o.Get(name)
	if v == nil {
		return nil, false
	}
	es, err := v.AsArray(o.Path(name))
	o.Fail(err)
	return es, err == nil
}

// Err returns the first recorded error.
func (o *Obj) Err() error { return o.err }

// End returns the first recorded error, else an error naming the first
// member that was not read.
func (o *Obj) End() error {
	if o.err != nil {
		return o.err
	}
	for i, r := range o.read {
		if !r {
			m := &o.V.Members[i]
			msg := "unknown member"
			for j := range o.V.Members {
				// A known name in another case is the likeliest mistake,
				// and one a case-insensitive reader would accept.
				if o.read[j] && j != i && strings.EqualFold(o.V.Members[j].Key, m.Key) {
					msg = "unknown member (names are case-sensitive)"
				}
			}
			return m.Value.Fail(o.Path(m.Key), msg)
		}
	}
	return nil
}

// Rest marks every member read and returns those not read before, for
// objects whose remaining members are a free-form map.
//
//go:noinline
func (o *Obj) Rest() []*Member {
	var out []*Member
	for i, r := range o.read {
		if !r {
			o.read[i] = true
			out = append(out, &o.V.Members[i])
		}
	}
	return out
}
