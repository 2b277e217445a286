package jcs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
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
	})
}
