package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

func checkJSON(data []byte) error {
	_, err := parseJSON(data)
	return err
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" means valid
	}{
		{"object", `{"a":1,"b":[true,false,null,"x",-0.5e+3],"c":{}}`, ""},
		{"whitespace", " \t\n{ \"a\" : [ ] }\r\n", ""},
		{"scalar", `"x"`, ""},
		{"escaped key", `{"a\"b":1,"\u00e9":2}`, ""},
		{"different keys", `{"ab":1,"a":2}`, ""},
		{"duplicate", `{"a":1,"a":2}`, "duplicate key"},
		{"escaped duplicate", `{"tenant":"a","t\u0065nant":"b"}`, "duplicate key"},
		{"case duplicate", `{"role":"a","ROLE":"b"}`, "duplicate key"},
		{"long s duplicate", `{"sub":"a","ſub":"b"}`, "duplicate key"},
		{"kelvin duplicate", `{"kid":"a","\u212aid":"b"}`, "duplicate key"},
		{"nested duplicate", `{"act":{"sub":"a","sub":"b"}}`, "duplicate key"},
		{"nested case duplicate", `{"act":{"x":{"role":"a","Role":"b"}}}`, "act.x.Role"},
		{"duplicate in array element", `[{"a":1},{"a":1,"a":2}]`, "duplicate key"},
		{"same key in sibling objects", `[{"a":1},{"a":2}]`, ""},
		{"case variant field", `{"Tenant":"a"}`, `must be spelled "tenant"`},
		{"long s field", `{"ſub":"a"}`, `must be spelled "sub"`},
		{"case variant nested field", `{"act":{"Sub":"a"}}`, `must be spelled "sub"`},
		{"trailing data", `{}{}`, "after the JSON value"},
		{"trailing comma", `{"a":1,}`, "want a string object key"},
		{"array trailing comma", `[1,]`, "unexpected character"},
		{"single quotes", `{'a':1}`, "want a string object key"},
		{"leading zero", `{"a":01}`, "want ',' or '}'"},
		{"bare minus", `{"a":-}`, "invalid number"},
		{"dot without digits", `{"a":1.}`, "invalid number"},
		{"exponent without digits", `{"a":1e}`, "invalid number"},
		{"control char", "{\"a\":\"\x01\"}", "control character"},
		{"bad escape", `{"a":"\x"}`, "invalid escape"},
		{"short unicode escape", `{"a":"\u12"}`, `invalid \u escape`},
		{"lone surrogate", `{"a":"\ud800"}`, "lone surrogate"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "invalid UTF-8"},
		{"unterminated", `{"a":"b`, "unterminated"},
		{"truncated", `{"a":`, "unexpected end"},
		{"bad literal", `{"a":tru}`, "invalid literal"},
		{"empty", ``, "unexpected end"},
		{"deepest allowed", strings.Repeat("[", maxDepth+1) + "1" + strings.Repeat("]", maxDepth+1), ""},
		{"too deep", strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2), "nesting deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkJSON([]byte(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("parseJSON = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseJSON = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// oracleCheck is parseJSON's key check written the slow, obvious way on
// top of encoding/json's own tokenizer; FuzzParseJSON holds the two to the
// same answers.
func oracleCheck(data []byte) error {
	if !json.Valid(data) || !utf8.Valid(data) {
		return errors.New("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	// Numbers out of float64 range are still valid JSON.
	dec.UseNumber()
	// Folded keys per open object; nil for arrays.
	var stack []map[string]bool
	expectKey := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, map[string]bool{})
				expectKey = true
			case '[':
				stack = append(stack, nil)
				expectKey = false
			default:
				stack = stack[:len(stack)-1]
				expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
			}
			if len(stack) > maxDepth+1 {
				return errors.New("too deep")
			}
			continue
		case string:
			if expectKey {
				f := jsonx.FoldKey(v)
				if stack[len(stack)-1][f] {
					return fmt.Errorf("duplicate %q", v)
				}
				stack[len(stack)-1][f] = true
				for _, name := range fieldNames {
					if name != v && jsonx.FoldKey(name) == f {
						return fmt.Errorf("spelling %q", v)
					}
				}
				expectKey = false
				continue
			}
		}
		expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"A":2}`, `{"sub":"x","act":{"sub":"y"}}`, `[1,"2",{"x":[]}]`,
		`{"t\u0065nant":1}`, `{"ſub":1}`, `-1.5e-3`, `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := checkJSON(data)
		want := oracleCheck(data)
		if got != nil && want == nil && strings.Contains(got.Error(), "lone surrogate") {
			// encoding/json reads a lone surrogate escape as U+FFFD;
			// jsonx refuses it, which is the point.
			return
		}
		if (got == nil) != (want == nil) {
			t.Fatalf("parseJSON(%q) = %v, oracle = %v", data, got, want)
		}
	})
}
