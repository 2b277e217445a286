package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// toAny converts v to what encoding/json with UseNumber decodes.
func toAny(v *Value) any {
	switch v.Kind {
	case Null:
		return nil
	case Bool:
		return v.Bool
	case Number:
		return json.Number(v.Str)
	case String:
		return v.Str
	case Array:
		out := make([]any, len(v.Elems))
		for i := range v.Elems {
			out[i] = toAny(&v.Elems[i])
		}
		return out
	default:
		out := make(map[string]any, len(v.Members))
		for i := range v.Members {
			out[v.Members[i].Key] = toAny(&v.Members[i].Value)
		}
		return out
	}
}

func stdDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

func TestParseMatchesEncodingJSON(t *testing.T) {
	docs := []string{
		`null`, `true`, `false`, `0`, `-0`, `1.5e-7`, `123456789012345678901234567890`,
		`""`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\ud83d\ude00"`, `"é😀"`,
		`[]`, `{}`, `[1,[2,[3]]]`, ` {"a": {"b": [true, null, "x"]}, "c": -1.25E+3} `,
		"{\n  \"k\": [\n    1,\n    2\n  ]\n}\n",
	}
	for _, d := range docs {
		v, err := Parse([]byte(d))
		if err != nil {
			t.Errorf("Parse(%q): %v", d, err)
			continue
		}
		want, err := stdDecode([]byte(d))
		if err != nil {
			t.Fatalf("encoding/json refuses %q: %v", d, err)
		}
		if got := toAny(v); !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %#v, encoding/json %#v", d, got, want)
		}
		if !bytes.Equal(v.Raw, bytes.TrimSpace([]byte(d))) {
			t.Errorf("Parse(%q).Raw = %q", d, v.Raw)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	deep := strings.Repeat("[", 129) + strings.Repeat("]", 129)
	cases := []struct {
		doc       string
		line, col int
		path, msg string
	}{
		{``, 1, 1, "", "unexpected end of input"},
		{`{"a":1,"a":2}`, 1, 8, ".a", `duplicate key "a"`},
		{"{\n \"x\": {\"a\":1,\n \"\\u0061\":2}}", 3, 2, ".x.a", `duplicate key "a"`},
		{"\"\xff\"", 1, 2, "", "invalid UTF-8 in string"},
		{`"\ud800"`, 1, 2, "", "lone surrogate"},
		{`"\udc00\ud800"`, 1, 2, "", "lone surrogate"},
		{"\"a\nb\"", 1, 3, "", "unescaped control character"},
		{`{"a":1} x`, 1, 9, "", "unexpected data after the JSON value"},
		{`{"a":1}{}`, 1, 8, "", "unexpected data after"},
		{`01`, 1, 2, "", "unexpected data after"},
		{`1.`, 1, 3, "", "want a digit after '.'"},
		{`-`, 1, 2, "", "want a digit"},
		{`1e+`, 1, 4, "", "exponent"},
		{`[1,]`, 1, 4, "[1]", "unexpected character ']'"},
		{`{"a" 1}`, 1, 6, "", "want ':'"},
		{`{a:1}`, 1, 2, "", "want a string object key"},
		{`[1 2]`, 1, 4, "", "want ',' or ']'"},
		{`tru`, 1, 1, "", "want true"},
		{`"\x"`, 1, 2, "", "invalid escape 'x'"},
		{`"\u12"`, 1, 2, "", `invalid \u escape`},
		{"\ufeff{}", 1, 1, "", "unexpected character 0xEF"},
		{deep, 1, 129, strings.Repeat("[0]", 128), "nesting deeper than 128"},
		{`"abc`, 1, 5, "", "unterminated string"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%.40q) = %v, want a *SyntaxError", c.doc, err)
			continue
		}
		if se.Line != c.line || se.Col != c.col || se.Path != c.path || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("Parse(%.40q) = line %d col %d path %q %q; want line %d col %d path %q %q",
				c.doc, se.Line, se.Col, se.Path, se.Msg, c.line, c.col, c.path, c.msg)
		}
	}
}

func TestLenientMatchesEncodingJSON(t *testing.T) {
	docs := []string{`{"a":1,"a":2}`, "\"\xff\xfe\"", `"\ud800x"`, `"\udc00\ud800"`, `{"a":{"b":1},"a":[2]}`, "[\"\xc3\"]"}
	for _, d := range docs {
		v, err := ParseWith([]byte(d), Options{Lenient: true})
		if err != nil {
			t.Errorf("lenient Parse(%q): %v", d, err)
			continue
		}
		want, err := stdDecode([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		if got := toAny(v); !reflect.DeepEqual(got, want) {
			t.Errorf("lenient Parse(%q) = %#v, encoding/json %#v", d, got, want)
		}
	}
}

func TestManyKeysDuplicate(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 1000 {
		b.WriteString(`"k` + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + `":1,`)
	}
	b.WriteString(`"kb":2}`)
	if _, err := Parse([]byte(b.String())); err == nil || !strings.Contains(err.Error(), `duplicate key "kb"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestObj(t *testing.T) {
	doc := []byte("{\n  \"name\": \"n\",\n  \"n\": 3,\n  \"big\": 1.5,\n  \"ok\": true,\n  \"tags\": [\"a\", \"b\"],\n  \"sub\": {\"x\": 1},\n  \"raw\": {\"y\": [1]}\n}")
	v, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	o, err := v.AsObject("cfg")
	if err != nil {
		t.Fatal(err)
	}
	var (
		name string
		n    int
		f    float64
		ok   bool
		tags []string
		raw  []byte
		x    int64
	)
	o.Require("name", "n")
	o.String("name", &name)
	o.Int("n", &n)
	o.Float64("big", &f)
	o.Bool("ok", &ok)
	o.Strings("tags", &tags)
	o.Raw("raw", &raw)
	if sub := o.Object("sub"); sub != nil {
		sub.Int64("x", &x)
		o.Fail(sub.End())
	}
	if o.String("absent", &name) {
		t.Error("absent member reported present")
	}
	if err := o.End(); err != nil {
		t.Fatal(err)
	}
	if name != "n" || n != 3 || f != 1.5 || !ok || !reflect.DeepEqual(tags, []string{"a", "b"}) || string(raw) != `{"y": [1]}` || x != 1 {
		t.Errorf("decoded %q %d %v %v %v %q %d", name, n, f, ok, tags, raw, x)
	}
}

func TestObjErrors(t *testing.T) {
	cases := []struct {
		doc  string
		read func(o *Obj)
		want string
	}{
		{`{"a":1}`, func(o *Obj) { var s string; o.String("a", &s) }, "cfg.a (line 1, column 6): want a string, got number"},
		{`{"a":1.5}`, func(o *Obj) { var n int64; o.Int64("a", &n) }, "cfg.a (line 1, column 6): want an integer within 64 bits, got 1.5"},
		{`{"a":1e3}`, func(o *Obj) { var n int; o.Int("a", &n) }, "want an integer within 64 bits, got 1e3"},
		{`{"a":-1}`, func(o *Obj) { var n uint64; o.Uint64("a", &n) }, "want a non-negative integer"},
		{`{"a":1e999}`, func(o *Obj) { var f float64; o.Float64("a", &f) }, "number 1e999 is out of range"},
		{`{"a":null}`, func(o *Obj) { var b bool; o.Bool("a", &b) }, "want true or false, got null"},
		{`{"a":["x",2]}`, func(o *Obj) { var ss []string; o.Strings("a", &ss) }, "cfg.a[1] (line 1, column 11): want a string, got number"},
		{`{"a":1,"b":2}`, func(o *Obj) { var n int; o.Int("a", &n) }, "cfg.b (line 1, column 12): unknown member"},
		{`{"Name":"x"}`, func(o *Obj) { var s string; o.String("name", &s) }, "cfg.Name (line 1, column 9): unknown member"},
		{`{"name":"x","Name":"y"}`, func(o *Obj) { var s string; o.String("name", &s) }, "unknown member (names are case-sensitive)"},
		{`{}`, func(o *Obj) { o.Require("tenant") }, "cfg.tenant: required member is missing"},
		{`{"odd key":{}}`, func(o *Obj) { sub := o.Object("odd key"); sub.FailMember("x", "bad"); o.Fail(sub.End()) }, `cfg["odd key"].x: bad`},
		{`{"s":[]}`, func(o *Obj) { o.Object("s") }, "cfg.s (line 1, column 6): want an object, got array"},
	}
	for _, c := range cases {
		v, err := Parse([]byte(c.doc))
		if err != nil {
			t.Fatal(err)
		}
		o, err := v.AsObject("cfg")
		if err != nil {
			t.Fatal(err)
		}
		c.read(o)
		err = o.End()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.doc, err, c.want)
		}
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: %T is not a *FieldError", c.doc, err)
		}
	}
}

func TestRest(t *testing.T) {
	v, _ := Parse([]byte(`{"a":1,"b":2,"c":3}`))
	o, _ := v.AsObject("")
	var n int
	o.Int("b", &n)
	rest := o.Rest()
	if len(rest) != 2 || rest[0].Key != "a" || rest[1].Key != "c" || o.End() != nil {
		t.Fatalf("rest = %v, end = %v", rest, o.End())
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for c := 0; c < 256; c++ {
		checkString(t, string([]byte{byte(c)}))
		checkString(t, "a"+string([]byte{byte(c)})+"b")
	}
	for _, s := range []string{"", "plain", "<a href=\"x\">&amp;</a>", "\u2028\u2029", "é😀", "\xed\xa0\x80", "\xf4\x90\x80\x80", "tab\there"} {
		checkString(t, s)
	}
}

func checkString(t *testing.T, s string) {
	t.Helper()
	want, _ := json.Marshal(s)
	if got := AppendString(nil, s); !bytes.Equal(got, want) {
		t.Errorf("AppendString(%q) = %s, encoding/json %s", s, got, want)
	}
}

func TestAppendFloatMatchesEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1.5, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, 1e-10, 5e-324} {
		checkFloat(t, f)
	}
	if got := AppendFloat(nil, math.NaN()); string(got) != "null" {
		t.Errorf("NaN = %s", got)
	}
}

func checkFloat(t *testing.T, f float64) {
	t.Helper()
	want, err := json.Marshal(f)
	if err != nil {
		return
	}
	if got := AppendFloat(nil, f); !bytes.Equal(got, want) {
		t.Errorf("AppendFloat(%v) = %s, encoding/json %s", f, got, want)
	}
}

func TestWriter(t *testing.T) {
	var w Writer
	w.BeginObject()
	w.Key("a")
	w.String("x<")
	w.Key("n")
	w.Int(-3)
	w.Key("u")
	w.Uint(7)
	w.Key("f")
	w.Float(0.5)
	w.Key("l")
	w.BeginArray()
	w.Bool(true)
	w.Null()
	w.Raw([]byte(`{"r":1}`))
	w.BeginObject()
	w.EndObject()
	w.EndArray()
	w.Key("s")
	w.Strings([]string{"p", "q"})
	w.EndObject()
	want := `{"a":"x\u003c","n":-3,"u":7,"f":0.5,"l":[true,null,{"r":1},{}],"s":["p","q"]}`
	if string(w.B) != want {
		t.Fatalf("got  %s\nwant %s", w.B, want)
	}
	if !json.Valid(w.B) {
		t.Fatal("invalid JSON")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, `"\ud83d\ude00"`, `{"a":1,"a":2}`, "\"\xff\"", `-0.0e+1`, `[[[[]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data)
		if err == nil {
			// Whatever we accept, encoding/json reads the same way.
			want, err := stdDecode(data)
			if err != nil {
				t.Fatalf("strict accepts what encoding/json refuses: %v", err)
			}
			if got := toAny(v); !reflect.DeepEqual(got, want) {
				t.Fatalf("Parse = %#v, encoding/json %#v", got, want)
			}
			if !utf8.Valid(data) {
				t.Fatal("strict accepted invalid UTF-8")
			}
		}
		// Lenient is encoding/json's grammar, up to nesting depth.
		lv, lerr := ParseWith(data, Options{Lenient: true, MaxDepth: 10000})
		if got, want := lerr == nil, json.Valid(data); got != want {
			t.Fatalf("lenient ok = %v, json.Valid = %v (%v)", got, want, lerr)
		}
		if lerr == nil {
			want, err := stdDecode(data)
			if err != nil {
				t.Fatal(err)
			}
			if got := toAny(lv); !reflect.DeepEqual(got, want) {
				t.Fatalf("lenient Parse = %#v, encoding/json %#v", got, want)
			}
		}
	})
}

func FuzzAppendString(f *testing.F) {
	f.Add("a<b>\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) { checkString(t, s) })
}

func FuzzAppendFloat(f *testing.F) {
	f.Add(1e-7)
	f.Add(1e21)
	f.Fuzz(func(t *testing.T, x float64) { checkFloat(t, x) })
}

// TestPositions checks every value's line and column against a naive count
// from the document's start, on long lines with multi-byte characters
// (columns count runes) and across line breaks.
func TestPositions(t *testing.T) {
	var b strings.Builder
	b.WriteString("[\n")
	for i := range 300 {
		if i > 0 {
			b.WriteString(", ")
		}
		if i%50 == 49 {
			b.WriteString("\r\n\t")
		}
		b.WriteString(`{"é": ["ü", 1, true, null], "k` + strconv.Itoa(i) + `": "日本"}`)
	}
	b.WriteString("\n]")
	data := []byte(b.String())
	root, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func(v *Value)
	walk = func(v *Value) {
		n++
		off := cap(data) - cap(v.Raw) // Raw is a subslice of data
		line, start := 1, 0
		for i := 0; i < off; i++ {
			if data[i] == '\n' {
				line, start = line+1, i+1
			}
		}
		col := utf8.RuneCount(data[start:off]) + 1
		if int(v.Line) != line || int(v.Col) != col {
			t.Fatalf("value %s at offset %d: line %d column %d, want %d %d", v.Raw, off, v.Line, v.Col, line, col)
		}
		for i := range v.Elems {
			walk(&v.Elems[i])
		}
		for i := range v.Members {
			walk(&v.Members[i].Value)
		}
	}
	walk(root)
	if n < 1800 {
		t.Fatalf("walked only %d values", n)
	}
}

// TestLongLineLinear: a one-line document (plan.json is one) parses in
// time linear in its length; columns counted from the line's start for
// every value made it quadratic (seconds for a 340 kB plan).
func TestLongLineLinear(t *testing.T) {
	doc := func(n int) []byte {
		var b strings.Builder
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"a":[1,"x",true]}`)
		}
		b.WriteByte(']')
		return []byte(b.String())
	}
	fastest := func(data []byte) time.Duration {
		best := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			if _, err := Parse(data); err != nil {
				t.Fatal(err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	small, large := fastest(doc(2000)), fastest(doc(16000))
	// Linear is 8x; quadratic would be 64x. The margin absorbs a loaded
	// machine.
	if large > 24*small+20*time.Millisecond {
		t.Fatalf("8x the document took %v, against %v: not linear", large, small)
	}
}

func TestNumberMatchesEncodingJSON(t *testing.T) {
	for _, lit := range []string{"", "0", "-1.5e+10", "12345678901234567890", "01", "1.", "NaN", " 1", "1 ", "+1", "0x10"} {
		want, werr := json.Marshal(json.Number(lit))
		got, gerr := NumberLiteral(lit).MarshalJSON()
		if (werr == nil) != (gerr == nil) || string(got) != string(want) {
			t.Errorf("Number(%q) = %s, %v; encoding/json %s, %v", lit, got, gerr, want, werr)
		}
	}
	var _ NumberLike = json.Number("1")
	var _ NumberLike = NumberLiteral("1")
	if f, err := NumberLiteral("2.5").Float64(); f != 2.5 || err != nil {
		t.Errorf("Float64 = %v, %v", f, err)
	}
	if n, err := NumberLiteral("-7").Int64(); n != -7 || err != nil {
		t.Errorf("Int64 = %v, %v", n, err)
	}
}

func checkCompact(t *testing.T, js []byte) {
	t.Helper()
	if !json.Valid(js) {
		return
	}
	var want bytes.Buffer
	if err := json.Compact(&want, js); err != nil {
		t.Fatal(err)
	}
	if got := AppendCompact(nil, js, false); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("AppendCompact(%q) = %q, json.Compact %q", js, got, want.Bytes())
	}
	wantHTML, err := json.Marshal(json.RawMessage(js))
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendCompact(nil, js, true); !bytes.Equal(got, wantHTML) {
		t.Errorf("AppendCompact(%q, html) = %q, encoding/json %q", js, got, wantHTML)
	}
}

func TestAppendCompact(t *testing.T) {
	for _, js := range []string{`1`, ` { "a" : [ 1 , "x y\"\\ <&>" ] , "b":"\u2028 ` + "\u2028\u2029" + `" } `, "[\n\t\"\\\\\"\r\n]", `"é"`} {
		checkCompact(t, []byte(js))
	}
}

func FuzzAppendCompact(f *testing.F) {
	f.Add([]byte(` {"a" : ["<x>", 1 ,"\\\""]} `))
	f.Fuzz(func(t *testing.T, js []byte) { checkCompact(t, js) })
}
