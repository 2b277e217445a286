package bundle

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// encodeEqual is the rule sameContent stands in for: both manifests encode,
// to the same bytes.
func encodeEqual(a, b *Manifest) bool {
	ja, errA := a.encode()
	jb, errB := b.encode()
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

func TestSameContent(t *testing.T) {
	base := testManifest()
	base.Files = map[string]string{"plan.json": strings.Repeat("a", 64)}
	with := func(edit func(*Manifest)) *Manifest {
		m := base
		m.Policy = map[string]any{}
		for k, v := range base.Policy {
			m.Policy[k] = v
		}
		edit(&m)
		return &m
	}
	policy := func(p map[string]any) *Manifest { return with(func(m *Manifest) { m.Policy = p }) }
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		a, b *Manifest
		want bool
		// utf8 marks the one case where sameContent is stricter than the
		// encoder, which writes every invalid UTF-8 byte as U+FFFD.
		utf8 bool
	}{
		{name: "identical", a: &base, b: with(func(*Manifest) {}), want: true},
		{name: "other name", a: &base, b: with(func(m *Manifest) { m.Name = "other" })},
		{name: "other engine", a: &base, b: with(func(m *Manifest) { m.EngineVersion = "x" })},
		{name: "other kind", a: &base, b: with(func(m *Manifest) { m.Kind = KindArchive })},
		{name: "other file digest", a: &base, b: with(func(m *Manifest) { m.Files = map[string]string{"plan.json": strings.Repeat("b", 64)} })},
		{name: "extra file", a: &base, b: with(func(m *Manifest) { m.Files = map[string]string{"plan.json": strings.Repeat("a", 64), "x": ""} })},
		{name: "nil files vs empty", a: with(func(m *Manifest) { m.Files = nil }), b: with(func(m *Manifest) { m.Files = map[string]string{} })},
		{name: "nil builtins vs empty", a: with(func(m *Manifest) { m.Builtins = nil }), b: with(func(m *Manifest) { m.Builtins = []string{} }), want: true},
		{name: "builtins order", a: &base, b: with(func(m *Manifest) { m.Builtins = []string{"regex.match", "count"} })},
		{name: "same instant other zone", a: &base, b: with(func(m *Manifest) { m.CreatedAt = base.CreatedAt.In(berlin) })},
		{name: "unformattable year", a: with(func(m *Manifest) { m.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), b: with(func(m *Manifest) { m.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{name: "no release vs empty release", a: &base, b: with(func(m *Manifest) { m.Release = &Release{} })},
		{name: "nil approvers vs empty", a: with(func(m *Manifest) { m.Release = &Release{Stage: "enforce"} }), b: with(func(m *Manifest) { m.Release = &Release{Stage: "enforce", Approvers: []string{}} }), want: true},
		{name: "other replaces", a: with(func(m *Manifest) { m.Release = &Release{Replaces: 3} }), b: with(func(m *Manifest) { m.Release = &Release{Replaces: 4} })},
		{name: "nil policy vs empty", a: policy(nil), b: policy(map[string]any{}), want: true},
		{name: "empty policy vs one key", a: policy(nil), b: policy(map[string]any{"a": nil})},
		{name: "int and its Number", a: policy(map[string]any{"n": 1}), b: policy(map[string]any{"n": Number("1")}), want: true},
		{name: "int64 and float", a: policy(map[string]any{"n": int64(2)}), b: policy(map[string]any{"n": 2.0}), want: true},
		{name: "json.Number", a: policy(map[string]any{"n": json.Number("1.50")}), b: policy(map[string]any{"n": Number("1.50")}), want: true},
		{name: "Number spelled otherwise", a: policy(map[string]any{"n": Number("1.5")}), b: policy(map[string]any{"n": Number("1.50")})},
		{name: "empty Number is 0", a: policy(map[string]any{"n": Number("")}), b: policy(map[string]any{"n": 0}), want: true},
		{name: "invalid Number", a: policy(map[string]any{"n": Number("x")}), b: policy(map[string]any{"n": Number("x")})},
		{name: "NaN", a: policy(map[string]any{"n": math.NaN()}), b: policy(map[string]any{"n": math.NaN()})},
		{name: "infinity", a: policy(map[string]any{"n": math.Inf(1)}), b: policy(map[string]any{"n": math.Inf(1)})},
		{name: "unsupported type", a: policy(map[string]any{"n": uint8(1)}), b: policy(map[string]any{"n": uint8(1)})},
		{name: "string vs number", a: policy(map[string]any{"n": "1"}), b: policy(map[string]any{"n": 1})},
		{name: "bool", a: policy(map[string]any{"n": true}), b: policy(map[string]any{"n": true}), want: true},
		{name: "bool vs null", a: policy(map[string]any{"n": false}), b: policy(map[string]any{"n": nil})},
		{name: "typed list and []any", a: policy(map[string]any{"l": []string{"a"}}), b: policy(map[string]any{"l": []any{"a"}}), want: true},
		{name: "typed map and map[string]any", a: policy(map[string]any{"m": map[string]string{"k": "v"}}), b: policy(map[string]any{"m": map[string]any{"k": "v"}}), want: true},
		{name: "nil list is null", a: policy(map[string]any{"l": []any(nil)}), b: policy(map[string]any{"l": nil}), want: true},
		{name: "nil typed map is null", a: policy(map[string]any{"m": map[string]string(nil)}), b: policy(map[string]any{"m": []string(nil)}), want: true},
		{name: "empty list is not null", a: policy(map[string]any{"l": []any{}}), b: policy(map[string]any{"l": nil})},
		{name: "empty list vs empty map", a: policy(map[string]any{"l": []any{}}), b: policy(map[string]any{"l": map[string]any{}})},
		{name: "list order", a: policy(map[string]any{"l": []any{"a", "b"}}), b: policy(map[string]any{"l": []any{"b", "a"}})},
		{name: "nested difference", a: policy(map[string]any{"m": map[string]any{"k": []any{1, 2}}}), b: policy(map[string]any{"m": map[string]any{"k": []any{1, 3}}})},
		{name: "other key", a: policy(map[string]any{"a": 1}), b: policy(map[string]any{"b": 1})},
		{name: "invalid UTF-8", a: with(func(m *Manifest) { m.Name = "\xff" }), b: with(func(m *Manifest) { m.Name = "\xfe" }), utf8: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameContent(tt.a, tt.b); got != tt.want {
				t.Errorf("sameContent = %v, want %v", got, tt.want)
			}
			if got := sameContent(tt.b, tt.a); got != tt.want {
				t.Errorf("sameContent reversed = %v, want %v", got, tt.want)
			}
			if enc := encodeEqual(tt.a, tt.b); enc != tt.want && !tt.utf8 {
				t.Errorf("the encoder says %v: the table disagrees with the rule it stands for", enc)
			}
		})
	}
}

// FuzzSameContent holds sameContent to the encoder on manifests that went
// through ParseManifest, which is what CheckUpgrade compares in the filter
// and the edge.
func FuzzSameContent(f *testing.F) {
	f.Add(`{"a":1}`, `{"a":1}`, "x", "x")
	f.Add(`{"a":1}`, `{"a":1.0}`, "x", "x")
	f.Add(`{"a":[1,{"b":null}]}`, `{"a":[1,{"b":null}]}`, "x", "y")
	f.Add(`{}`, `{"a":{}}`, "", "")
	f.Add(`{"a":"<&>"}`, `{"a":"\u003c&>"}`, "a", "a")
	f.Add(`{"a":[]}`, `{"a":{}}`, "a", "a")
	f.Add(`{"a":true}`, `{"a":false}`, "a", "a")
	f.Fuzz(func(t *testing.T, policyA, policyB, nameA, nameB string) {
		parse := func(policy, name string) *Manifest {
			m := testManifest()
			m.Name = name
			m.Files = map[string]string{}
			m.Policy = nil
			v, err := jsonx.Parse([]byte(policy))
			if err != nil || v.Kind != jsonx.Object {
				return nil
			}
			m.Policy, _ = policyValue(v).(map[string]any)
			b, err := m.encode()
			if err != nil {
				return nil
			}
			// Only what ParseManifest accepts: valid UTF-8, a valid name.
			parsed, err := ParseManifest(b)
			if err != nil {
				return nil
			}
			return parsed
		}
		a, b := parse(policyA, nameA), parse(policyB, nameB)
		if a == nil || b == nil {
			return
		}
		if got, want := sameContent(a, b), encodeEqual(a, b); got != want {
			t.Fatalf("sameContent = %v, encoder says %v\na: %q\nb: %q", got, want, policyA, policyB)
		}
	})
}
