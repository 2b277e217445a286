package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// encodingJSON is how the manifest was written before: the bytes every
// published bundle's signature covers.
func encodingJSON(t testing.TB, m *Manifest) []byte {
	t.Helper()
	c := *m
	if c.Builtins == nil {
		c.Builtins = []string{}
	}
	if c.Entrypoints == nil {
		c.Entrypoints = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestEncodeLikeJSON(t *testing.T) {
	odd := "<&> \u2028\u2029 \"q\" \\ \x01\x1f\x7f \xff é \t\n"
	full := testManifest()
	full.Files = map[string]string{"b": odd, "a": "", odd: "x"}
	full.Release = &Release{Approvers: []string{odd, ""}, Publisher: odd, Stage: "s", Replaces: -3}
	full.Policy = map[string]any{
		odd: odd, "n": nil, "t": true, "f": false, "i": -7, "i64": int64(math.MinInt64),
		"fl": 1.5, "big": 1e21, "small": 1e-7, "zero": 0.0, "num": Number("1.50"), "jnum": json.Number("-2e3"), "empty": Number(""),
		"ss": []string{"a", odd}, "nilss": []string(nil), "sm": map[string]string{"k": odd}, "nilsm": map[string]string(nil),
		"arr": []any{1, "x", []any{}, map[string]any{}, []any{nil}}, "nilarr": []any(nil), "nilmap": map[string]any(nil),
		"deep": map[string]any{"a": map[string]any{"b": []any{map[string]any{"c": 1}}}},
	}
	empty := Manifest{}
	emptyRelease := testManifest()
	emptyRelease.Release = &Release{}
	emptyRelease.Policy = map[string]any{}
	zone := testManifest()
	zone.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", -5400))
	for i, m := range []*Manifest{ptr(testManifest()), &full, &empty, &emptyRelease, &zone} {
		got, err := m.appendJSON(nil)
		if want := encodingJSON(t, m); err != nil || !bytes.Equal(got, want) {
			t.Errorf("manifest %d: %v\ngot\n%s\nwant\n%s", i, err, got, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestEncodeRefuses(t *testing.T) {
	for _, v := range []any{math.NaN(), math.Inf(-1), struct{}{}, []int{1}, int32(1), uint64(1), []map[string]any{}, Number("01"), json.Number("x"), map[string]any{"a": make(chan int)}} {
		m := testManifest()
		m.Policy = map[string]any{"v": v}
		if b, err := m.appendJSON(nil); err == nil {
			t.Errorf("%T %v encoded as %s", v, v, b)
		}
	}
}

func TestNumber(t *testing.T) {
	n := Number("12")
	if i, err := n.Int64(); i != 12 || err != nil {
		t.Errorf("Int64 = %d, %v", i, err)
	}
	if f, err := Number("1.5").Float64(); f != 1.5 || err != nil {
		t.Errorf("Float64 = %v, %v", f, err)
	}
	if b, err := json.Marshal(map[string]any{"n": Number("1.50")}); string(b) != `{"n":1.50}` || err != nil {
		t.Errorf("encoding/json writes Number as %s, %v", b, err)
	}
}

// TestParseManifestPolicy: policy numbers come back as written, and the
// manifest re-encodes to the bytes it was read from.
func TestParseManifestPolicy(t *testing.T) {
	m := testManifest()
	m.Format = Format
	m.Files = map[string]string{"plan.json": strings.Repeat("a", 64)}
	m.Policy = map[string]any{"n": Number("1.50"), "e": Number("1E+400"), "l": []any{Number("-0"), nil, false, "<&>"}}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Policy["n"] != Number("1.50") || got.Policy["l"].([]any)[0] != Number("-0") {
		t.Errorf("policy = %#v", got.Policy)
	}
	again, err := got.Marshal()
	if err != nil || !bytes.Equal(again, data) {
		t.Errorf("re-encoded:\n%s\n%v", again, err)
	}
}

func TestParseManifestRejectsShapes(t *testing.T) {
	b, err := Open(mustBuild(t, testManifest(), testFiles(), nil), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	good := string(b.ManifestBytes)
	rel := strings.Replace(good, `"files":`, `"release": {"stage": "canary"}, "files":`, 1)
	if _, err := ParseManifest([]byte(rel)); err != nil {
		t.Fatalf("manifest with release: %v", err)
	}
	tests := []struct{ name, data, want string }{
		{"array", `[]`, "want an object, got array"},
		{"revision fraction", strings.Replace(good, `"revision": 7`, `"revision": 7.0`, 1), "revision"},
		{"revision string", strings.Replace(good, `"revision": 7`, `"revision": "7"`, 1), "revision"},
		{"time number", strings.Replace(good, `"created_at": "2026-11-01T12:00:00Z"`, `"created_at": 1`, 1), "created_at"},
		{"time not RFC 3339", strings.Replace(good, `"created_at": "2026-11-01T12:00:00Z"`, `"created_at": "2026-11-01"`, 1), "created_at"},
		{"null builtins", strings.Replace(good, `"builtins": [`, `"builtins": null, "x": [`, 1), "builtins"},
		{"file hash number", strings.Replace(good, `"files": {`, `"files": {"x": 1,`, 1), "files.x"},
		{"policy array", strings.Replace(good, `"policy": {`, `"policy": [], "x": {`, 1), "policy"},
		{"release unknown member", strings.Replace(rel, `"stage"`, `"stages": 1, "stage"`, 1), "release.stages"},
		{"release case variant", strings.Replace(rel, `"canary"}`, `"canary", "Stage": "x"}`, 1), "differ only in case"},
		{"release case variant alone", strings.Replace(rel, `"stage"`, `"STAGE"`, 1), `must be spelled "stage"`},
		{"release null", strings.Replace(rel, `{"stage": "canary"}`, `null`, 1), "release"},
		{"case duplicate deep in policy", strings.Replace(good, `"b": 1`, `"b": [{"x": 1, "X": 2}]`, 1), `policy.b[0].X`},
		{"lone surrogate", strings.Replace(good, `"<&>"`, `"\ud800"`, 1), "surrogate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tt.data))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	b, err := Open(mustBuild(f, testManifest(), testFiles(), nil), Limits{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b.ManifestBytes)
	f.Add([]byte(`{"format":"aegis.bundle/v1","policy":{"a":[1.5e3,{"b":null}]}}`))
	f.Add([]byte(`{"release":{"Stage":1},"Kind":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		// What was accepted encodes as encoding/json encoded it, and reads
		// back to the same encoding.
		enc, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted manifest does not marshal: %v", err)
		}
		if want := encodingJSON(t, m); !bytes.Equal(enc, want) {
			t.Fatalf("encoding differs from encoding/json:\n%s\n%s", enc, want)
		}
		m2, err := ParseManifest(enc)
		if err != nil {
			t.Fatalf("re-encoded manifest refused: %v", err)
		}
		if enc2, _ := m2.Marshal(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "<&>", "a<b\xff>c&\u2028", "\x00\x1f\"\\", "é<\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if got, want := string(appendString(nil, s)), strings.TrimSuffix(buf.String(), "\n"); got != want {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}
