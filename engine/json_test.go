package engine

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestFromJSONStrict: the documents FromJSON reads are signed or checked,
// so what two readers could read differently is refused, with its place.
func TestFromJSONStrict(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{`{"a":1,"a":2}`, `line 1, column 8 (at .a): duplicate key "a"`},
		{"{\"a\":\"\xff\"}", "invalid UTF-8"},
		{`["\ud800"]`, "lone surrogate"},
		{`{} {}`, "unexpected data after the JSON value"},
		{`{"a":1e99999}`, `line 1, column 6: invalid number literal "1e99999"`},
		{`[01]`, "line 1, column 3"},
		{strings.Repeat("[", 10001) + strings.Repeat("]", 10001), "nesting deeper than 10000"},
	} {
		_, err := FromJSON([]byte(tc.in))
		e, ok := err.(*Error)
		if !ok || e.Code != CodeInvalidValue || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("FromJSON(%.40q) = %v, want %s containing %q", tc.in, err, CodeInvalidValue, tc.msg)
		}
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	if _, err := FromJSON([]byte(deep)); err != nil {
		t.Errorf("FromJSON refuses the nesting encoding/json read: %v", err)
	}
}

// TestJSONBuiltinsFollowEncodingJSON: json.unmarshal and json.is_valid are
// encoding/json in OPA, lenient where FromJSON is strict.
func TestJSONBuiltinsFollowEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"a":1,"a":2}`, "{\"a\":\"\xff\"}", `["\ud800x"]`, `{"a":{"b":1},"a":[2,{"c":3,"c":"4"}]}`,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`{} {}`, `{"a" 1}`, ``, ` 1 `,
	} {
		valid, err := bJSONIsValid(nil, []Value{stringValue(in)})
		if err != nil || valid != Bool(json.Valid([]byte(in))) {
			t.Errorf("json.is_valid(%.40q) = %v, %v; json.Valid says %v", in, valid, err, json.Valid([]byte(in)))
		}
		got, err := bJSONUnmarshal(nil, []Value{stringValue(in)})
		var x any
		stdErr := json.Unmarshal([]byte(in), &x)
		if (err != nil) != (stdErr != nil) {
			t.Errorf("json.unmarshal(%.40q) error %v, encoding/json %v", in, err, stdErr)
			continue
		}
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Code != CodeBuiltinError {
				t.Errorf("json.unmarshal(%.40q) error %v, want %s", in, err, CodeBuiltinError)
			}
			continue
		}
		want, ferr := FromGo(x)
		if ferr != nil || !Equal(got, want) {
			t.Errorf("json.unmarshal(%.40q) = %v, encoding/json %v", in, got, want)
		}
	}
	if v, _ := bJSONIsValid(nil, []Value{Int(1)}); v != valFalse {
		t.Errorf("json.is_valid(1) = %v", v)
	}
}
