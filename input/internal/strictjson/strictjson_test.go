package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/engine"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, in, want string // want: engine.ToJSON of the result
	}{
		{"object", `{"b":1,"a":[true,false,null]}`, `{"a":[true,false,null],"b":1}`},
		{"scalar root", ` "x" `, `"x"`},
		{"number text kept", `[1.50, -0, 1E+2, 0.1e-7, 123456789012345678901234567890]`, `[1.50,-0,1E+2,0.1e-7,123456789012345678901234567890]`},
		{"escapes", `"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"`, `"a\"\\/\b\f\n\r\t` + "é😀" + `"`},
		{"escaped NUL is allowed", `"\u0000"`, `"\u0000"`},
		{"utf-8 passes through", `{"k":"日本"}`, `{"k":"日本"}`},
		{"empty containers", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
		{"whitespace", "\t\r\n {\n\"a\" : 1 }\n", `{"a":1}`},
		{"keys that differ only in case", `{"a":1,"A":2}`, `{"A":2,"a":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Parse([]byte(tt.in), 64)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := engine.ToJSON(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	okDeep := strings.Repeat("[", 64) + strings.Repeat("]", 64)
	if _, err := Parse([]byte(okDeep), 64); err != nil {
		t.Fatalf("depth 64 must pass: %v", err)
	}
	tests := []struct {
		name, in   string
		code, path string
	}{
		{"duplicate key", `{"amount":1,"amount":2}`, CodeDuplicateKey, ".amount"},
		{"duplicate after unescaping", `{"a":1,"\u0061":2}`, CodeDuplicateKey, ".a"},
		{"duplicate nested with path", `{"items":[{},{},{},{"name":1,"name":2}]}`, CodeDuplicateKey, ".items[3].name"},
		{"duplicate odd key", `{"a b":1,"a b":1}`, CodeDuplicateKey, `["a b"]`},
		{"invalid utf-8", "{\"a\":\"\xff\"}", CodeInvalidUTF8, ".a"},
		{"utf-8 encoded surrogate", "\"\xed\xa0\x80\"", CodeInvalidUTF8, ""},
		{"overlong utf-8", "\"\xc0\xaf\"", CodeInvalidUTF8, ""},
		{"invalid utf-8 in key", "{\"\xfe\":1}", CodeInvalidUTF8, ""},
		{"lone high surrogate", `{"x":["\ud800"]}`, CodeInvalidUTF8, ".x[0]"},
		{"lone low surrogate", `"\udc00"`, CodeInvalidUTF8, ""},
		{"high then non-surrogate", `"\ud800\u0041"`, CodeInvalidUTF8, ""},
		{"reversed pair", `"\udc00\ud800"`, CodeInvalidUTF8, ""},
		{"too deep", deep, CodeTooDeep, strings.Repeat("[0]", 64)},
		{"trailing garbage", `{} x`, CodeSyntax, ""},
		{"two documents", `{}{}`, CodeSyntax, ""},
		{"trailing comma object", `{"a":1,}`, CodeSyntax, ""},
		{"trailing comma array", `[1,]`, CodeSyntax, "[1]"},
		{"unescaped NUL", "\"a\x00\"", CodeSyntax, ""},
		{"unescaped newline", "{\"k\":\"a\nb\"}", CodeSyntax, ".k"},
		{"unescaped tab", "\"\t\"", CodeSyntax, ""},
		{"bad escape", `"\x41"`, CodeSyntax, ""},
		{"short unicode escape", `"\u12"`, CodeSyntax, ""},
		{"leading zero", `01`, CodeSyntax, ""},
		{"plus sign", `+1`, CodeSyntax, ""},
		{"bare dot", `1.`, CodeSyntax, ""},
		{"leading dot", `.5`, CodeSyntax, ""},
		{"empty exponent", `1e`, CodeSyntax, ""},
		{"hex", `0x10`, CodeSyntax, ""},
		{"NaN", `NaN`, CodeSyntax, ""},
		{"Infinity", `-Infinity`, CodeSyntax, ""},
		{"single quotes", `{'a':1}`, CodeSyntax, ""},
		{"unquoted key", `{a:1}`, CodeSyntax, ""},
		{"comment", `{"a":1 /* x */}`, CodeSyntax, ""},
		{"BOM", "\xef\xbb\xbf{}", CodeSyntax, ""},
		{"empty", ``, CodeSyntax, ""},
		{"only space", `  `, CodeSyntax, ""},
		{"truncated", `{"jsonrpc": "2.0", "method": "tools/call", "params": `, CodeSyntax, ".params"},
		{"unterminated string", `"abc`, CodeSyntax, ""},
		{"bad literal", `tru`, CodeSyntax, ""},
		{"capital literal", `True`, CodeSyntax, ""},
		{"vertical tab is not whitespace", "\v1", CodeSyntax, ""},
		{"NUL after value", "1\x00", CodeSyntax, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Parse([]byte(tt.in), 64)
			if err == nil {
				t.Fatalf("Parse accepted %q as %v", tt.in, v)
			}
			if v != nil {
				t.Errorf("value returned with error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if e.Code != tt.code || e.Path != tt.path {
				t.Errorf("got code %q path %q (%v), want %q %q", e.Code, e.Path, err, tt.code, tt.path)
			}
			if e.Offset < 0 || e.Offset > len(tt.in) {
				t.Errorf("offset %d out of range", e.Offset)
			}
		})
	}
}

// TestNumberRange pins the engine's number bound as the parser sees it:
// the magnitude must lie in [2^-100001, 2^100000), about 5.005e-30104 to
// 9.990e30102, or be zero. Beyond it the body is valid JSON, so the code is
// CodeNumberOutOfRange, never CodeSyntax, and the body is still refused.
func TestNumberRange(t *testing.T) {
	zeros := func(n int) string { return strings.Repeat("0", n) }
	tests := []struct {
		name, in string
		code     string // "" when accepted
		path     string
		offset   int
	}{
		{"largest exponent", `1e30102`, "", "", 0},
		{"largest exponent, upper case and plus", `1E+30102`, "", "", 0},
		{"largest mantissa at the largest exponent", `9.99e30102`, "", "", 0},
		{"negative sign does not change the bound", `-9.99e30102`, "", "", 0},
		{"smallest refused exponent", `1e30103`, CodeNumberOutOfRange, "", 0},
		{"smallest refused, negative", `-1e30103`, CodeNumberOutOfRange, "", 0},
		{"mantissa tips it over", `9.991e30102`, CodeNumberOutOfRange, "", 0},
		{"leading zeros in the exponent", `1e030103`, CodeNumberOutOfRange, "", 0},
		{"fraction moves the bound up", `0.1e30103`, "", "", 0},
		{"the fuzz crasher", `1e70000`, CodeNumberOutOfRange, "", 0},
		{"as in a request body", `{"a":1e70000}`, CodeNumberOutOfRange, ".a", 5},
		{"in an array", `[0,1e-70000]`, CodeNumberOutOfRange, "[1]", 3},
		{"negative exponent accepted", `1e-30103`, "", "", 0},
		{"smallest accepted magnitude", `5.005e-30104`, "", "", 0},
		{"just below the smallest", `5.004e-30104`, CodeNumberOutOfRange, "", 0},
		{"negative exponent refused", `1e-30104`, CodeNumberOutOfRange, "", 0},
		{"negative exponent, minus sign", `-1E-30104`, CodeNumberOutOfRange, "", 0},
		{"zero with a large exponent", `0e1000000000`, "", "", 0},
		// OPA (big.Float) cannot read an exponent beyond int64, even on zero.
		{"zero with an exponent beyond int64", `0e99999999999999999999`, CodeNumberOutOfRange, "", 0},
		// big.Float rounds it to zero and OPA accepts it; the engine does not.
		{"too small to be anything but zero", `1e-700000000`, CodeNumberOutOfRange, "", 0},
		{"exponent that overflows int64", `1e99999999999999999999`, CodeNumberOutOfRange, "", 0},
		// Literals longer than MaxNumberLen are refused by their length
		// whatever their magnitude (TestNumberLength); the engine's own
		// bound on long literals is tested in engine.
		{"long mantissa the engine holds", `1` + zeros(30102) + `e0`, CodeNumberOutOfRange, "", 0},
		{"long integer without an exponent", `1` + zeros(30103), CodeNumberOutOfRange, "", 0},
		{"1 MiB mantissa", `1` + zeros(1<<20) + `e0`, CodeNumberOutOfRange, "", 0},
		{"1 MiB mantissa the engine holds", `1` + zeros(1<<20) + `e-1018474`, CodeNumberOutOfRange, "", 0},
		{"long mantissa, exponent brings it back", `1234567890123456789e30084`, "", "", 0},
		{"long mantissa, exponent one more", `1234567890123456789e30085`, CodeNumberOutOfRange, "", 0},
		{"syntax error still wins inside the number", `1e+`, CodeSyntax, "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Parse([]byte(tt.in), 8)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				got, err := engine.ToJSON(v)
				if err != nil || string(got) != tt.in {
					t.Fatalf("number text not kept: %.40s (%v)", got, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse = %v, %v; want a *Error", v, err)
			}
			if v != nil || e.Code != tt.code || e.Path != tt.path || e.Offset != tt.offset {
				t.Fatalf("got %v code %q path %q offset %d, want nil %q %q %d", v, e.Code, e.Path, e.Offset, tt.code, tt.path, tt.offset)
			}
			if len(e.Msg) > 200 {
				t.Errorf("message of %d bytes: the literal must not be copied into it", len(e.Msg))
			}
		})
	}
}

// TestNumberLength pins MaxNumberLen: a literal of up to MaxNumberLen bytes,
// sign, fraction and exponent included, is accepted with its text kept; one
// byte more is number_out_of_range at the literal's start.
func TestNumberLength(t *testing.T) {
	// lit is prefix + digits + suffix, n bytes in all.
	lit := func(prefix, suffix string, n int) string {
		return prefix + strings.Repeat("7", n-len(prefix)-len(suffix)) + suffix
	}
	shapes := []struct{ name, prefix, suffix string }{
		{"integer", "1", ""},
		{"negative integer", "-1", ""},
		{"fraction", "0.", ""},
		{"negative fraction", "-3.", ""},
		{"exponent", "1", "e5"},
		{"fraction and exponent", "1.", "E+300"},
		{"sign, fraction, negative exponent", "-0.", "e-30000"},
		// Leading zeros of the exponent count: they are bytes the
		// engine's conversions read.
		{"long exponent", "1", "e" + strings.Repeat("0", 200) + "1"},
	}
	for _, sh := range shapes {
		for _, n := range []int{MaxNumberLen - 1, MaxNumberLen, MaxNumberLen + 1} {
			in := lit(sh.prefix, sh.suffix, n)
			if len(in) != n {
				t.Fatalf("%s: built %d bytes, want %d", sh.name, len(in), n)
			}
			for _, wrap := range []struct {
				name, before, after, path string
			}{
				{"root", "", "", ""},
				{"member", `{"amount":`, `}`, ".amount"},
				{"array element", `[1,`, `,2]`, "[1]"},
			} {
				t.Run(fmt.Sprintf("%s/%d/%s", sh.name, n, wrap.name), func(t *testing.T) {
					doc := wrap.before + in + wrap.after
					v, err := Parse([]byte(doc), 8)
					if n <= MaxNumberLen {
						if err != nil {
							t.Fatalf("Parse: %v", err)
						}
						if got, err := engine.ToJSON(v); err != nil || string(got) != doc {
							t.Fatalf("number text not kept: %.60s (%v)", got, err)
						}
						return
					}
					var e *Error
					if !errors.As(err, &e) {
						t.Fatalf("Parse = %v, %v; want a *Error", v, err)
					}
					if v != nil || e.Code != CodeNumberOutOfRange || e.Path != wrap.path || e.Offset != len(wrap.before) {
						t.Fatalf("got %v %q path %q offset %d, want %q %q %d", v, e.Code, e.Path, e.Offset, CodeNumberOutOfRange, wrap.path, len(wrap.before))
					}
					want := fmt.Sprintf("%d bytes long, at most %d allowed", n, MaxNumberLen)
					if !strings.Contains(e.Msg, want) || strings.Contains(e.Msg, in) {
						t.Fatalf("message %q: want the limit (%q) and not the literal", e.Msg, want)
					}
				})
			}
		}
	}
	// Grammar is checked before length: a long malformed number is a
	// syntax error where it goes wrong.
	long := "1." + strings.Repeat("0", 2*MaxNumberLen) + "e"
	var e *Error
	if _, err := Parse([]byte(long), 8); !errors.As(err, &e) || e.Code != CodeSyntax || e.Offset != len(long) {
		t.Fatalf("long malformed number: %v, want %s at byte %d", err, CodeSyntax, len(long))
	}
}

// TestLongNumberRefusedBeforeTheEngine: the length decides on its own. A
// 1 MiB literal never reaches engine.Number, whose range check and the
// math/big conversions after it are what a long literal would make slow.
func TestLongNumberRefusedBeforeTheEngine(t *testing.T) {
	calls := 0
	defer func(f func(string) (engine.Value, error)) { newNumber = f }(newNumber)
	newNumber = func(s string) (engine.Value, error) {
		calls++
		return engine.Number(s)
	}
	mib := strings.Repeat("9", 1<<20)
	for _, in := range []string{
		`{"amount":` + mib + `}`,
		`{"amount":-` + mib + `.5e3}`,
		`{"amount":0.` + mib + `}`,
		`[1,2,` + mib + `]`,
	} {
		_, err := Parse([]byte(in), 8)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeNumberOutOfRange {
			t.Fatalf("%.20s...: %v, want %s", in, err, CodeNumberOutOfRange)
		}
		if len(e.Msg) > 200 {
			t.Errorf("message of %d bytes: the literal must not be copied into it", len(e.Msg))
		}
	}
	// Only the short numbers before the long one went to the engine.
	if calls != 2 {
		t.Fatalf("engine.Number called %d times, want 2 (for the 1 and 2 of the last document)", calls)
	}
}

func TestDuplicateOffsetPointsAtSecondKey(t *testing.T) {
	in := `{"b":1,"a":2,"b":3}`
	_, err := Parse([]byte(in), 8)
	var e *Error
	if !errors.As(err, &e) || e.Offset != strings.LastIndex(in, `"b"`) {
		t.Fatalf("err = %v, want offset %d", err, strings.LastIndex(in, `"b"`))
	}
}

// TestDuplicateReportedInKeyOrder: with several duplicated keys, the first
// in key order is reported, whether the object is small (built by
// insertion, sorted only to report) or large (sorted first).
func TestDuplicateReportedInKeyOrder(t *testing.T) {
	small := `{"b":1,"a":1,"b":2,"a":2}`
	var b strings.Builder
	b.WriteString(`{"b":1,"a":1,"b":2,"a":2`)
	for i := range 20 {
		fmt.Fprintf(&b, `,"k%02d":0`, i)
	}
	b.WriteString(`}`)
	for _, in := range []string{small, b.String()} {
		_, err := Parse([]byte(in), 8)
		var e *Error
		want := strings.LastIndex(in, `"a"`)
		if !errors.As(err, &e) || e.Code != CodeDuplicateKey || e.Path != ".a" || e.Offset != want {
			t.Errorf("%.30s...: err = %v, want duplicate_key at .a, offset %d", in, err, want)
		}
	}
}

func TestManyKeysInReverseOrder(t *testing.T) {
	// A hostile body: 50,000 keys in descending order. Building this by
	// one-by-one sorted insertion would be quadratic.
	var b bytes.Buffer
	b.WriteByte('{')
	const n = 50000
	for i := n; i > 0; i-- {
		if i != n {
			b.WriteByte(',')
		}
		b.WriteString(`"k`)
		fmt.Fprintf(&b, "%06d", i)
		b.WriteString(`":0`)
	}
	b.WriteByte('}')
	v, err := Parse(b.Bytes(), 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(*engine.Object).Len(); got != n {
		t.Fatalf("len = %d", got)
	}
}

func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[1,2,{"c":null}],"d":"\u00e9\ud83d\ude00"}`,
		`{"a":1,"a":2}`,
		`{"a":1,"\u0061":2}`,
		`"\ud800"`,
		"\"\xff\"",
		`[1.5e10,-0,0.0]`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`,
		`[[[[[[[[[[]]]]]]]]]]`,
		` 1 `,
		`{"a" :"b" , "c":[ ]}`,
		`{"a":1e70000}`,
		`[1e-30104,1]`,
		`[` + strings.Repeat("1", MaxNumberLen+1) + `]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxDepth = 16
		v, err := Parse(data, maxDepth)
		if (v == nil) == (err == nil) {
			t.Fatalf("want exactly one of value and error: %v, %v", v, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var x any
		stdErr := dec.Decode(&x)
		if stdErr == nil {
			if _, e := dec.Token(); e != io.EOF {
				stdErr = fmt.Errorf("trailing data: %v", e)
			}
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if e.Code == CodeNumberOutOfRange {
				// Allowed only for a literal encoding/json accepts and the
				// engine cannot hold; the rest of the document may still be
				// invalid, as the first problem is the one reported.
				lit := jsonNumber.Find(data[e.Offset:])
				if lit == nil || !json.Valid(lit) {
					t.Fatalf("%q: out of range at byte %d, where no JSON number starts", data, e.Offset)
				}
				if _, nerr := engine.Number(string(lit)); nerr == nil && len(lit) <= MaxNumberLen {
					t.Fatalf("%q: %s called out of range, the engine holds it and it is not too long", data, lit)
				}
				return
			}
			if e.Code == CodeSyntax && stdErr == nil {
				t.Fatalf("we call %q a syntax error (%v), encoding/json accepts it", data, err)
			}
			return
		}
		if stdErr != nil {
			t.Fatalf("we accept %q, encoding/json does not: %v", data, stdErr)
		}
		if got := engine.ToGoWith(v, func(lit string) any { return json.Number(lit) }); !reflect.DeepEqual(got, x) {
			t.Fatalf("values differ for %q:\n ours %#v\n std  %#v", data, got, x)
		}
		if d := depth(v); d > maxDepth {
			t.Fatalf("depth %d > %d", d, maxDepth)
		}
		if n := longestNumber(v); n > MaxNumberLen {
			t.Fatalf("%q: accepted a number of %d bytes", data, n)
		}
	})
}

// jsonNumber is RFC 8259's number grammar, written apart from the parser.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`)

// longestNumber is the length of the longest number literal in v.
func longestNumber(v engine.Value) int {
	switch v := v.(type) {
	case *engine.Array:
		m := 0
		for i := range v.Len() {
			m = max(m, longestNumber(v.Index(i)))
		}
		return m
	case *engine.Object:
		m := 0
		v.Range(func(_, e engine.Value) bool { m = max(m, longestNumber(e)); return true })
		return m
	}
	lit, _ := engine.AsNumber(v)
	return len(lit)
}

func depth(v engine.Value) int {
	switch v := v.(type) {
	case *engine.Array:
		m := 0
		for i := range v.Len() {
			m = max(m, depth(v.Index(i)))
		}
		return m + 1
	case *engine.Object:
		m := 0
		v.Range(func(_, e engine.Value) bool { m = max(m, depth(e)); return true })
		return m + 1
	}
	return 0
}

func BenchmarkParse(b *testing.B) {
	data := []byte(`{"amount": 120.5, "currency": "EUR", "beneficiary_iban": "DE89370400440532013000", "memo": "thanks"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, 64); err != nil {
			b.Fatal(err)
		}
	}
}
