package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNumberLiterals(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"integer", "42", true},
		{"negative", "-7", true},
		{"fraction", "1.50", true},
		{"exponent", "1e3", true},
		{"signed exponent", "2.5E-3", true},
		{"huge integer", "123456789012345678901234567890", true},
		{"empty", "", false},
		{"leading plus", "+1", false},
		{"leading zero", "01", false},
		{"bare dot", "1.", false},
		{"missing mantissa", ".5", false},
		{"hex", "0x10", false},
		{"nan", "NaN", false},
		{"inf", "Infinity", false},
		{"exponent out of range", "1e40000", false},
		{"trailing garbage", "1a", false},
		{"space", " 1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Number(tc.text)
			if tc.ok != (err == nil) {
				t.Fatalf("Number(%q) error = %v, want ok=%v", tc.text, err, tc.ok)
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Code != CodeInvalidValue {
					t.Fatalf("error %v is not an %s *Error", err, CodeInvalidValue)
				}
				return
			}
			if got, _ := AsNumber(v); got != tc.text {
				t.Fatalf("literal changed: %q -> %q", tc.text, got)
			}
		})
	}
}

func TestCompareOrder(t *testing.T) {
	// Each value sorts strictly before the next one, as in OPA.
	ordered := []string{
		`null`, `false`, `true`, `-1e400`, `-1`, `-0.5`, `0`, `1e-400`, `0.1`, `0.10000000000000001`,
		`1`, `1.5`, `2`, `9007199254740993`, `1e300`, `""`, `"A"`, `"a"`, `"é"`, `[]`, `[1]`, `[1,2]`,
		`[2]`, `{}`, `{"a":1}`, `{"a":2}`, `{"b":0}`,
	}
	vals := make([]Value, len(ordered))
	for i, s := range ordered {
		v, err := FromJSON([]byte(s))
		if err != nil {
			// 1e400 is beyond float64 but a valid OPA number.
			t.Fatalf("FromJSON(%s): %v", s, err)
		}
		vals[i] = v
	}
	set := NewSet(0)
	set.Add(Int(1))
	vals = append(vals, NewSet(0), set)
	for i := range vals {
		for j := range vals {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := Compare(vals[i], vals[j]); got != want {
				a, _ := ToJSON(vals[i])
				b, _ := ToJSON(vals[j])
				t.Errorf("Compare(%s, %s) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestNumericEquality(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"1", "1.0"}, {"100", "1e2"}, {"0", "-0"}, {"0.5", "5e-1"}, {"1.10", "1.1"},
	} {
		a, _ := Number(tc.a)
		b, _ := Number(tc.b)
		if !Equal(a, b) || Compare(a, b) != 0 {
			t.Errorf("%s and %s should be equal", tc.a, tc.b)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, in, out string }{
		{"keys sorted", `{"b":1,"a":{"d":[1,2],"c":null}}`, `{"a":{"c":null,"d":[1,2]},"b":1}`},
		{"numbers kept", `[1.50,1e3,-0,12345678901234567890123]`, `[1.50,1e3,-0,12345678901234567890123]`},
		{"html escaped like encoding/json", `"<a&b>"`, `"\u003ca\u0026b\u003e"`},
		{"unicode", `"héllo \u2028"`, `"héllo \u2028"`},
		// FromJSON refuses duplicate keys (TestFromJSONStrict); OPA's
		// json.unmarshal, as encoding/json, keeps the last.
		{"duplicate key last wins in json.unmarshal", `{"a":1,"a":2}`, `{"a":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := FromJSON
			if strings.Contains(tc.name, "json.unmarshal") {
				read = func(b []byte) (Value, error) { return bJSONUnmarshal(nil, []Value{stringValue(b)}) }
			}
			v, err := read([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			b, err := ToJSON(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.out {
				t.Fatalf("got %s, want %s", b, tc.out)
			}
		})
	}
}

func TestFromJSONRejects(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a":1} {}`, `[1,]`, `nul`, `1e99999`, `"\ud800"x`, `{"a" 1}`} {
		t.Run(in, func(t *testing.T) {
			if v, err := FromJSON([]byte(in)); err == nil {
				b, _ := ToJSON(v)
				t.Fatalf("FromJSON(%q) accepted: %s", in, b)
			}
		})
	}
}

func TestSetsAndObjects(t *testing.T) {
	s := NewSet(0)
	for _, v := range []Value{String("b"), Int(2), String("a"), Int(2), Null(), mustNumber(t, "2.0")} {
		s.Add(v)
	}
	if b, _ := ToJSON(s); string(b) != `[null,2,"a","b"]` {
		t.Fatalf("set = %s", b)
	}
	if !s.Contains(mustNumber(t, "2.00")) || s.Contains(String("c")) {
		t.Fatal("Contains is wrong")
	}
	o := NewObject(0)
	o.Set("z", Int(1))
	o.Insert(Int(5), String("five"))
	o.Set("a", Bool(true))
	o.Set("z", Int(2))
	if o.Len() != 3 {
		t.Fatalf("Len = %d", o.Len())
	}
	if v, ok := o.Get("z"); !ok || !Equal(v, Int(2)) {
		t.Fatalf("Get(z) = %v, %v", v, ok)
	}
	if v, ok := o.GetValue(mustNumber(t, "5.0")); !ok || !Equal(v, String("five")) {
		t.Fatal("number keys compare by value")
	}
	if _, ok := o.Get("missing"); ok {
		t.Fatal("Get(missing) found something")
	}
	if b, _ := ToJSON(o); string(b) != `{"5":"five","a":true,"z":2}` {
		t.Fatalf("object = %s", b)
	}
}

func TestObjectOf(t *testing.T) {
	keys := []Value{Int(1), String("a"), String("b"), String("c")}
	for _, tc := range []struct {
		name   string
		values []Value
		want   string
	}{
		{"all present", []Value{Bool(true), Int(2), String("x"), Null()}, `{"1":true,"a":2,"b":"x","c":null}`},
		{"nil left out", []Value{nil, Int(2), nil, NewObject(0)}, `{"a":2,"c":{}}`},
		{"none", []Value{nil, nil, nil, nil}, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ObjectOf(keys, tc.values...)
			// The same object as built by Insert: same JSON, and equal.
			want := NewObject(0)
			for i, v := range tc.values {
				if v != nil {
					want.Insert(keys[i], v)
				}
			}
			if b, _ := ToJSON(o); string(b) != tc.want || !Equal(o, want) {
				t.Fatalf("ObjectOf = %s, want %s", b, tc.want)
			}
			if v, ok := o.Get("a"); (tc.values[1] != nil) != ok || (ok && !Equal(v, tc.values[1])) {
				t.Fatalf(`Get("a") = %v, %v`, v, ok)
			}
		})
	}
	for name, f := range map[string]func(){
		"keys out of order": func() { ObjectOf([]Value{String("b"), String("a")}, Int(1), Int(2)) },
		"duplicate key":     func() { ObjectOf([]Value{String("a"), String("a")}, Int(1), nil) },
		"more values":       func() { ObjectOf([]Value{String("a")}, Int(1), Int(2)) },
		"more keys":         func() { ObjectOf([]Value{String("a"), String("b")}, Int(1)) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}

// TestNumberDecimalAllocations: a decimal literal costs its number value
// only, not the error strconv.ParseInt allocates to refuse it.
func TestNumberDecimalAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, lit := range []string{"120.5", "1e3", "-2.5E-3"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = Number(lit) }); n != 1 {
			t.Errorf("Number(%q): %v allocations, want 1", lit, n)
		}
	}
}

func TestGoConversion(t *testing.T) {
	v, err := FromGo(map[string]any{
		"n": json.Number("1.50"), "i": 3, "f": 0.25, "s": []any{"x", true, nil}, "m": map[string]string{"k": "v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ToJSON(v)
	if string(b) != `{"f":0.25,"i":3,"m":{"k":"v"},"n":1.50,"s":["x",true,null]}` {
		t.Fatalf("got %s", b)
	}
	g := ToGo(v).(map[string]any)
	if g["n"] != JSONNumber("1.50") || g["s"].([]any)[1] != true {
		t.Fatalf("ToGo = %#v", g)
	}
	// encoding/json writes ToGo's numbers as their literals, as it wrote
	// the json.Number values ToGo used to return.
	if js, err := json.Marshal(g); err != nil || string(js) != string(b) {
		t.Fatalf("json.Marshal(ToGo) = %s, %v; want %s", js, err, b)
	}
	std := ToGoWith(v, func(lit string) any { return json.Number(lit) }).(map[string]any)
	if std["n"] != json.Number("1.50") || std["i"] != json.Number("3") {
		t.Fatalf("ToGoWith = %#v", std)
	}
	if back, err := FromGo(g); err != nil || !Equal(back, v) {
		t.Fatalf("FromGo(ToGo) = %v, %v", back, err)
	}
	if n, _ := JSONNumber("1.50").Float64(); n != 1.5 {
		t.Fatalf("Float64 = %v", n)
	}
	if _, err := JSONNumber("1.50").Int64(); err == nil {
		t.Fatal("Int64 of 1.50 succeeded")
	}
	if _, err := json.Marshal(JSONNumber("1.")); err == nil {
		t.Fatal("json.Marshal of an invalid JSONNumber succeeded")
	}
	for _, bad := range []any{struct{}{}, make(chan int), []int{1}, json.Number("x"), JSONNumber("1e99999"), JSONNumber("")} {
		if _, err := FromGo(bad); err == nil {
			t.Errorf("FromGo(%T) accepted", bad)
		}
	}
}

func mustNumber(t *testing.T, s string) Value {
	t.Helper()
	v, err := Number(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAppendJSONStringMatchesEncodingJSON: the direct path for plain
// strings must write exactly what encoding/json writes, for every single
// byte and for the characters at the edges of the plain range.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	cases := []string{"", "plain text 42", "a\"b", `a\b`, "<tag>", "a&b", "tab\there", "del\x7f", "é", "\u2028", "\xff"}
	for c := 0; c < 256; c++ {
		cases = append(cases, string([]byte{byte(c)}), "x"+string([]byte{byte(c)})+"y")
	}
	for _, s := range cases {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		appendJSONString(&buf, s)
		if buf.String() != string(want) {
			t.Errorf("appendJSONString(%q) = %s, encoding/json writes %s", s, buf.String(), want)
		}
	}
}

func TestRuneCount(t *testing.T) {
	for _, s := range []string{
		"", "a", "abcdefg", "abcdefgh", "abcdefghi", strings.Repeat("9", 64<<10),
		"é", "abcdefgé", "abcdefghé", "héllo wörld, 日本語 text", strings.Repeat("ab", 9) + "\xff" + "cd",
		"\xe6\x97", strings.Repeat("x", 15) + "\xe6\x97",
	} {
		if got, want := runeCount(s), utf8.RuneCountInString(s); got != want {
			t.Errorf("runeCount(%q) = %d, want %d", s, got, want)
		}
	}
}

func FuzzRuneCount(f *testing.F) {
	for _, s := range []string{"", "abcdefghij", "abcdefgé", "\xff\xfe" + strings.Repeat("a", 20)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := runeCount(s), utf8.RuneCountInString(s); got != want {
			t.Errorf("runeCount(%q) = %d, want %d", s, got, want)
		}
	})
}

// FuzzCompareNumbers holds the float64 shortcuts of number comparison and
// integer conversion to the exact rationals.
func FuzzCompareNumbers(f *testing.F) {
	for _, p := range [][2]string{
		{"1e30102", "100"}, {"1e30102", "2e30102"}, {"-1e30102", "1e-30103"}, {"1e-30103", "0"},
		{"9007199254740993", "9007199254740992"}, {"0.1", "0.10000000000000001"}, {"1e400", "1e401"},
		{"9223372036854775807", "9223372036854775808"}, {"-9223372036854775808.0", "-9.223372036854775808e18"},
		{"0.0", "-0e5"}, {"12345678901234567890", "1.2345678901234567890e19"},
	} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, x, y string) {
		a, errA := Number(x)
		b, errB := Number(y)
		if errA != nil || errB != nil || len(x) > 64 || len(y) > 64 {
			return
		}
		ra, _ := new(big.Rat).SetString(x)
		rb, _ := new(big.Rat).SetString(y)
		want := ra.Cmp(rb)
		if got := Compare(a, b); got != want {
			t.Fatalf("Compare(%s, %s) = %d, exact %d", x, y, got, want)
		}
		if got, ok := compareDecimals(x, y); !ok || got != want {
			t.Fatalf("compareDecimals(%s, %s) = %d, %v; exact %d", x, y, got, ok, want)
		}
		i, ok := a.(*numberValue).int64()
		wantOK := ra.IsInt() && ra.Num().IsInt64()
		if ok != wantOK || ok && i != ra.Num().Int64() {
			t.Fatalf("int64(%s) = %d, %v; exact %v", x, i, ok, ra)
		}
	})
}
