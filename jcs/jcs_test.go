package jcs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
)

// TestNumbers: the IEEE 754 → text table of RFC 8785 Appendix B, plus the
// boundaries of the plain/exponent layouts.
func TestNumbers(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, tt := range tests {
		got, err := AppendNumber(nil, math.Float64frombits(tt.bits))
		if err != nil || string(got) != tt.want {
			t.Errorf("%#016x: %q %v, want %q", tt.bits, got, err, tt.want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got, err := AppendNumber(nil, f); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %q %v, want ErrInvalid", f, got, err)
		}
	}
	layouts := []struct {
		f    float64
		want string
	}{
		{1, "1"}, {-1, "-1"}, {0.5, "0.5"}, {100, "100"}, {1e20, "100000000000000000000"},
		{1e21, "1e+21"}, {1.5e21, "1.5e+21"}, {1e-6, "0.000001"}, {1.5e-6, "0.0000015"},
		{1e-7, "1e-7"}, {1.25e-7, "1.25e-7"}, {123.456, "123.456"}, {0.1, "0.1"},
	}
	for _, tt := range layouts {
		if got, _ := AppendNumber(nil, tt.f); string(got) != tt.want {
			t.Errorf("%v: %q, want %q", tt.f, got, tt.want)
		}
	}
}

// TestRFCExamples: the worked examples of RFC 8785 §3.2.2 and §3.2.3.
func TestRFCExamples(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{`{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"דּ\":\"Hebrew Letter Dalet With Dagesh\"}"},
	}
	for _, tt := range tests {
		got, err := Canonicalize([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("Canonicalize:\n got %s %v\nwant %s", got, err, tt.want)
		}
	}
}

func TestCanonicalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{`  true `, `true`},
		{`[]`, `[]`},
		{`{}`, `{}`},
		{`[ 1 , [ ] , { } ]`, `[1,[],{}]`},
		{`{"b":{"d":1,"c":2},"a":[{"y":0,"x":-0.0}]}`, `{"a":[{"x":0,"y":0}],"b":{"c":2,"d":1}}`},
		{`"\u001f\b\f\t\u007f\u2028"`, "\"\\u001f\\b\\f\\t\u007f\u2028\""},
		{`1e400000000000000000000000`, ``},
		{`1E-400`, `0`},
		{`12345678901234567890`, `12345678901234567000`},
	}
	for _, tt := range tests {
		got, err := Canonicalize([]byte(tt.in))
		if tt.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %s %v, want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: %s %v, want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	bad := []string{
		``, ` `, `{`, `[`, `[1,]`, `[,1]`, `{"a":1,}`, `{"a"}`, `{"a" 1}`, `{1:1}`, `{'a':1}`,
		`01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `NaN`, `Infinity`, `tru`, `nul`, `True`,
		`"abc`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"a\x01\"", "\"\xff\"", "\"\xc0\xaf\"",
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud800x"`,
		`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `1 2`, `{} x`,
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
	}
	for _, in := range bad {
		if got, err := Canonicalize([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %s %v, want ErrInvalid", in, got, err)
		}
	}
	deep := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, err := Canonicalize([]byte(deep)); err != nil {
		t.Errorf("depth %d refused: %v", MaxDepth, err)
	}
}

func TestParamsDigest(t *testing.T) {
	got, err := ParamsDigest("acme", "agent-a", "payments.refund", []byte(`{"b": 2.50, "a": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(`{"agent":"agent-a","params":{"a":"x","b":2.5},"tenant":"acme","tool":"payments.refund"}`))
	if want := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("digest %s, want %s", got, want)
	}
	// Spelling of the same values does not matter; the values do.
	same, _ := ParamsDigest("acme", "agent-a", "payments.refund", []byte(`{"a":"\u0078","b":25e-1}`))
	other, _ := ParamsDigest("acme", "agent-a", "payments.refund", []byte(`{"a":"x","b":2.51}`))
	if same != got || other == got {
		t.Errorf("same %s other %s, base %s", same, other, got)
	}
	none, _ := ParamsDigest("acme", "agent-a", "t", nil)
	null, _ := ParamsDigest("acme", "agent-a", "t", []byte("null"))
	if none != null {
		t.Error("absent params differ from null")
	}
	if _, err := ParamsDigest("acme", "a", "t", []byte(`{"a":1,"a":1}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate keys: %v", err)
	}
	// Names with quotes cannot break out of their strings.
	q1, _ := ParamsDigest(`a","tool":"x`, "b", "t", nil)
	q2, _ := ParamsDigest("a", "b", "x", nil)
	if q1 == q2 {
		t.Error("a quote in a name changed the structure")
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x"],"b":null}`, `"\ud83d\ude00"`, `1e21`, `-0.0`, `[{}]`, `{"a":1,"a":2}`, `"\u0000"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Canonicalize(data)
		if err != nil {
			return
		}
		// Anything accepted is JSON encoding/json also reads, and the
		// canonical form is a fixed point.
		if !json.Valid(data) || !json.Valid(out) {
			t.Fatalf("accepted %q → %q, not valid JSON", data, out)
		}
		again, err := Canonicalize(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent: %q → %q → %q %v", data, out, again, err)
		}
		if ref := reference(t, data); string(ref) != string(out) {
			t.Fatalf("%q → %q, the reference gives %q", data, out, ref)
		}
	})
}

// TestCanonicalizeCases: the object reordering, key order by UTF-16 code
// units, the verbatim integers and string escapes, one case each.
func TestCanonicalizeCases(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ordered object kept", `{"a":1,"b":[true,null],"c":"x"}`, `{"a":1,"b":[true,null],"c":"x"}`},
		{"reordered", `{"c":"x","a":1,"b":2}`, `{"a":1,"b":2,"c":"x"}`},
		{"nested reordered inside an ordered one", `{"a":{"z":1,"y":{"q":2,"p":3}},"b":[{"d":4,"c":5}]}`, `{"a":{"y":{"p":3,"q":2},"z":1},"b":[{"c":5,"d":4}]}`},
		{"nested inside a reordered one", `{"b":{"y":1,"x":2},"a":{"d":3,"c":4}}`, `{"a":{"c":4,"d":3},"b":{"x":2,"y":1}}`},
		{"prefix key first", `{"ab":1,"a":2}`, `{"a":2,"ab":1}`},
		{"escaped keys sort by value", `{"\u0062":1,"\u0061":2}`, `{"a":2,"b":1}`},
		{"quote key sorts by its value", `{"a":1,"\"":2}`, `{"\"":2,"a":1}`},
		{"surrogate pair before U+E000", "{\"\ue000\":1,\"\U0001F600\":2}", "{\"\U0001F600\":2,\"\ue000\":1}"},
		{"U+FFFF before a pair? no: pair first", "{\"\uffff\":1,\"\U00010000\":2}", "{\"\U00010000\":2,\"\uffff\":1}"},
		{"two pairs", "{\"\U0001F601\":1,\"\U0001F600\":2}", "{\"\U0001F600\":2,\"\U0001F601\":1}"},
		{"BMP below surrogates", "{\"\U0001F600\":1,\"\u00e9\":2}", "{\"\u00e9\":2,\"\U0001F600\":1}"},
		{"minus zero", `[-0,0,-0.0,-0e5]`, `[0,0,0,0]`},
		{"15 digits verbatim", `[999999999999999,-123456789012345]`, `[999999999999999,-123456789012345]`},
		{"16 digits through the double", `[1234567890123456789,9007199254740993]`, `[1234567890123456800,9007199254740992]`},
		{"exponent and fraction", `[1E2,1.0,0.50,-1e-7]`, `[100,1,0.5,-1e-7]`},
		{"string escapes", `["\/\u00e9\n\u0000","plain"]`, "[\"/\u00e9\\n\\u0000\",\"plain\"]"},
		{"escaped value then raw", `{"a":"\u0041","b":"B"}`, `{"a":"A","b":"B"}`},
	}
	for _, tt := range tests {
		got, err := Canonicalize([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: %s → %s %v, want %s", tt.name, tt.in, got, err, tt.want)
		}
		if ref := reference(t, []byte(tt.in)); string(ref) != tt.want {
			t.Errorf("%s: the reference gives %s", tt.name, ref)
		}
	}
	dups := []string{`{"b":1,"a":2,"b":3}`, `{"a":1,"b":{"x":1,"x":2}}`, `{"\u00e9":1,"é":2}`, `{"b":0,"a":1,"a":1}`}
	for _, in := range dups {
		if _, err := Canonicalize([]byte(in)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "duplicate") {
			t.Errorf("%s: %v, want a duplicate key error", in, err)
		}
	}
}

func TestAppendCanonicalPrefix(t *testing.T) {
	tests := []struct {
		in, want string
		n        int
	}{
		{` {"b":1,"a":2} ,rest`, `{"a":2,"b":1}`, 14},
		{`[1, 2]]`, `[1,2]`, 6},
		{`"x"x`, `"x"`, 3},
		{`12,`, `12`, 2},
	}
	for _, tt := range tests {
		got, n, err := AppendCanonicalPrefix([]byte("pre:"), []byte(tt.in))
		if err != nil || string(got) != "pre:"+tt.want || n != tt.n {
			t.Errorf("%q: %q %d %v, want %q %d", tt.in, got, n, err, "pre:"+tt.want, tt.n)
		}
	}
	if got, n, err := AppendCanonicalPrefix([]byte("pre:"), []byte(`{"a":`)); err == nil || string(got) != "pre:" || n != 0 {
		t.Errorf("truncated: %q %d %v", got, n, err)
	}
}

// TestCanonicalizeAgreesWithReference compares the parser with a second,
// naive implementation (encoding/json into any, then sort) on generated
// documents that mix orders, escapes, characters around the UTF-16 order
// differences, and numbers of every layout.
func TestCanonicalizeAgreesWithReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		doc := genValue(r, nil, 0)
		got, err := Canonicalize(doc)
		if err != nil {
			// Duplicate keys are the only refusal the generator makes.
			if !strings.Contains(err.Error(), "duplicate") {
				t.Fatalf("%s: %v", doc, err)
			}
			continue
		}
		if want := reference(t, doc); string(got) != string(want) {
			t.Fatalf("%s:\n got %s\nwant %s", doc, got, want)
		}
	}
}

var genChars = []string{"a", "b", "z", "A", "_", "0", "\"", "\\", "/", "\n", "\u001f", "\u007f", "é", "€", "\ue000", "\uffff", "\U00010000", "\U0001F600", "ﬆ"}

func genString(r *rand.Rand, dst []byte) []byte {
	dst = append(dst, '"')
	for n := r.IntN(4); n > 0; n-- {
		c := genChars[r.IntN(len(genChars))]
		switch {
		case c == "\"" || c == "\\":
			dst = append(dst, '\\', c[0])
		case c == "\n":
			dst = append(dst, `\n`...)
		case c == "\u001f":
			dst = append(dst, `\u001F`...)
		case r.IntN(4) == 0:
			// Written as escapes: \uXXXX, or a surrogate pair.
			for _, u := range utf16.Encode([]rune(c)) {
				dst = fmt.Appendf(dst, `\u%04x`, u)
			}
		default:
			dst = append(dst, c...)
		}
	}
	return append(dst, '"')
}

var genNumbers = []string{"0", "-0", "7", "-42", "100", "999999999999999", "1000000000000000", "12345678901234567890", "9007199254740993",
	"0.5", "-0.0", "1.25e3", "1E-7", "2e+21", "1e21", "123.456e-2", "5e-324", "1.7976931348623157e308"}

func genValue(r *rand.Rand, dst []byte, depth int) []byte {
	ws := func() {
		if r.IntN(3) == 0 {
			dst = append(dst, " \n\t"[r.IntN(3)])
		}
	}
	k := r.IntN(7)
	if depth > 3 {
		k = r.IntN(4)
	}
	switch k {
	case 0:
		dst = append(dst, []string{"true", "false", "null"}[r.IntN(3)]...)
	case 1, 2:
		dst = append(dst, genNumbers[r.IntN(len(genNumbers))]...)
	case 3:
		dst = genString(r, dst)
	case 4:
		dst = append(dst, '[')
		for i, n := 0, r.IntN(4); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			ws()
			dst = genValue(r, dst, depth+1)
			ws()
		}
		dst = append(dst, ']')
	default:
		dst = append(dst, '{')
		for i, n := 0, r.IntN(6); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			ws()
			dst = genString(r, dst)
			ws()
			dst = append(dst, ':')
			ws()
			dst = genValue(r, dst, depth+1)
		}
		dst = append(dst, '}')
	}
	return dst
}

// reference canonicalises through encoding/json: slow and obviously
// following RFC 8785 (keys sorted by UTF-16 code units, numbers through
// the double). It takes the last of duplicate keys, so it is only asked
// about documents Canonicalize accepts.
func reference(t testing.TB, data []byte) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("reference: %s: %v", data, err)
	}
	var app func(dst []byte, v any) []byte
	app = func(dst []byte, v any) []byte {
		switch v := v.(type) {
		case nil:
			return append(dst, "null"...)
		case bool:
			return strconv.AppendBool(dst, v)
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				t.Fatalf("reference: %s: %v", v, err)
			}
			out, err := AppendNumber(dst, f)
			if err != nil {
				t.Fatal(err)
			}
			return out
		case string:
			return AppendString(dst, v)
		case []any:
			dst = append(dst, '[')
			for i, e := range v {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = app(dst, e)
			}
			return append(dst, ']')
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b string) int {
				return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
			})
			dst = append(dst, '{')
			for i, k := range keys {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = AppendString(dst, k)
				dst = append(dst, ':')
				dst = app(dst, v[k])
			}
			return append(dst, '}')
		}
		t.Fatalf("reference: %T", v)
		return nil
	}
	return app(nil, v)
}
