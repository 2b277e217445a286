package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzLoad feeds arbitrary bytes to Load. It must return a policy or an
// *Error, never panic; loaded policies are evaluated once (bounded by a
// context deadline, which only guards against a hang) to show that what
// Validate accepts, Eval can run.
func FuzzLoad(f *testing.F) {
	for _, tc := range sharedCases[:12] {
		f.Add(mustPlan(f, map[string]string{"x.rego": tc.module}, "x/p"))
	}
	f.Add(mustPlan(f, map[string]string{"b.rego": benchPolicy}, "bench/decision"))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"plans":{"plans":[{"name":"a","blocks":[{"stmts":[{"type":"BreakStmt","stmt":{"index":7}}]}]}]}}`))
	f.Add([]byte(`{"static":{"strings":[{"value":"1e999999"}]},"plans":{"plans":[{"name":"a","blocks":[{"stmts":[{"type":"MakeNumberRefStmt","stmt":{"index":0,"target":2}}]}]}]}}`))
	f.Add([]byte(`{"funcs":{"funcs":[{"name":"f","params":[0,1],"return":2,"blocks":[{"stmts":[{"type":"CallStmt","stmt":{"func":"f","args":[{"type":"local","value":0},{"type":"local","value":1}],"result":2}}]}]}]}}`))
	f.Fuzz(func(t *testing.T, plan []byte) {
		p, err := Load(plan, nil)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Load returned %T, want *Error: %v", err, err)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		input, _ := FromJSON([]byte(`{"a": [1, "x", {"b": null}], "n": 3}`))
		for _, ep := range p.Entrypoints() {
			if _, err := p.Eval(ctx, ep, input); err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Eval returned %T, want *Error: %v", err, err)
				}
			}
		}
	})
}

const differentialPolicy = `package fz

default allow := false

allow if {
	input.user.role in {"admin", "ops"}
	regex.match("^[a-z][a-z0-9_-]{0,15}$", input.user.name)
	input.amount <= data.limits[input.user.role]
}

reasons contains "missing name" if not input.user.name

reasons contains sprintf("amount %v over limit", [input.amount]) if input.amount > 1000

reasons contains concat("/", ["tool", lower(input.tool)]) if startswith(input.tool, "DB")

tags := sort([t | some t in input.tags; is_string(t)])

total := sum([x | some x in input.values; is_number(x)])

host_ok if glob.match("*.corp.example", ["."], input.host)

decision := {
	"allow": allow,
	"reasons": reasons,
	"keys": count(object.keys(input)),
	"tags": tags,
	"total": total,
	"host_ok": host_ok,
	"upper": upper(object.get(input, "tool", "none")),
	"half": input.amount / 2,
	"size": count(input.values),
	"in_range": input.amount > 0.5,
}

numbers := {
	"sum": input.a + input.b,
	"diff": input.a - input.b,
	"prod": input.a * input.b,
	"quot": input.a / input.b,
	"rem": input.a % input.b,
	"cmp": [input.a < input.b, input.a == input.b, input.a >= input.b],
	"round": [round(input.a), ceil(input.a), floor(input.a), abs(input.a)],
	"fmt": sprintf("%v %d %s", [input.a, input.b, input.a]),
}

strs := {
	"upper": upper(input.s),
	"sub": substring(input.s, 1, 3),
	"idx": indexof(input.s, "a"),
	"split": split(input.s, ","),
	"trim": trim(input.s, " x"),
	"rev": strings.reverse(input.s),
	"count": count(input.s),
	"re": regex.find_n("[a-z]+", input.s, -1),
	"glob": glob.match("*a*", null, input.s),
	"json": json.marshal(input.v),
	"cmp": [input.v < input.s, input.v == input.s],
}
`

var differentialEntrypoints = []string{"fz/decision", "fz/numbers", "fz/strs"}

var differentialData = map[string]any{"limits": map[string]any{"admin": 10000, "ops": 500.5}}

// FuzzDifferential evaluates one policy on fuzzed input JSON with the
// engine and with OPA's topdown; the outcomes must be identical.
func FuzzDifferential(f *testing.F) {
	for _, seed := range []string{
		`{"user": {"role": "admin", "name": "alice"}, "amount": 20, "tool": "DBquery", "tags": ["b", "a", 1], "values": [1, 2.5, "x"], "host": "api.corp.example"}`,
		`{"user": {"role": "ops", "name": "Bob"}, "amount": 500.50, "values": [], "host": "a.b.corp.example"}`,
		`{"user": {"role": "ops", "name": "bob"}, "amount": 1e3, "tool": "x", "values": [1e2, 0.1, 0.2]}`,
		`{"user": {}, "amount": "12", "tool": 3, "values": {"a": 1}, "tags": "t"}`,
		`{"amount": 123456789012345678901234567890, "values": [9007199254740993, 1]}`,
		`[]`, `null`, `"s"`, `{}`,
		`{"a": 7, "b": 2, "s": "héllo, wörld", "v": [1, {"k": "<x>"}]}`,
		`{"a": 0.1, "b": 0.2, "s": " xax ", "v": "s"}`,
		`{"a": -7.5, "b": 0, "s": "", "v": null}`,
		`{"a": 12345678901234567890, "b": 1e-3, "s": "a,b,,c", "v": 1.0}`,
	} {
		f.Add([]byte(seed))
	}
	modules := map[string]string{"fz.rego": differentialPolicy}
	p, err := Load(mustPlan(f, modules, differentialEntrypoints...), mustFromGo(f, differentialData))
	if err != nil {
		f.Fatal(err)
	}
	oracles := make([]*opaOracle, len(differentialEntrypoints))
	for i, ep := range differentialEntrypoints {
		oracles[i] = newOPAOracle(f, modules, differentialData, ep)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, in []byte) {
		input, err := FromJSON(in)
		if err != nil {
			return
		}
		for i, ep := range differentialEntrypoints {
			got := engineOutcome(ctx, p, ep, input)
			if got.errCode == CodeBuiltinError && arithOutOfRange(ctx, p, ep, input) {
				// The one intended difference: arithmetic beyond float64's
				// range stops the engine; OPA computes it (TestArithmeticRange).
				continue
			}
			want := oracles[i].eval(ctx, opaGo(input))
			if got.defined {
				got.result = normalizeJSON(t, got.result)
			}
			if want.defined {
				want.result = normalizeJSON(t, want.result)
			}
			if got != want {
				t.Fatalf("%s, input %s\nengine: %v\nOPA:    %v", ep, in, got, want)
			}
		}
	})
}

func arithOutOfRange(ctx context.Context, p *Policy, entrypoint string, input Value) bool {
	_, _, err := p.EvalOne(ctx, entrypoint, input)
	return err != nil && strings.Contains(err.Error(), "outside the range of a float64")
}

func mustFromGo(t testing.TB, x any) Value {
	t.Helper()
	v, err := FromGo(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzJSON checks the value codec. json.unmarshal's lenient reader
// accepts exactly the documents encoding/json accepts (minus numbers beyond
// OPA's exponent range) with the values encoding/json decodes, and
// json.is_valid is json.Valid. FromJSON accepts a subset with the same
// values, refusing only duplicate keys, invalid UTF-8 and lone surrogates.
// ToJSON output decodes back to an equal value with the same text.
func FuzzJSON(f *testing.F) {
	for _, s := range []string{`{"b":[1,2.50,"x"],"a":null}`, `[true,false,{"k":{}}]`, `1e5`, `"\u00e9\ud83d\ude00"`, `{"a":1,"a":2}`, `-0.0`, `[`, `1e99999`, `"\ud800"`, "\"\xff\"", `{"a":{"b":1},"a":[2]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		valid := json.Valid(data)
		if got, _ := bJSONIsValid(nil, []Value{stringValue(data)}); got != Bool(valid) {
			t.Fatalf("json.is_valid(%q) = %v, json.Valid says %v", data, got, valid)
		}
		lv, lerr := fromJSON(data, lenientJSON)
		switch {
		case lerr != nil && valid && !strings.ContainsAny(string(data), "eE"):
			t.Fatalf("valid JSON rejected: %q: %v", data, lerr)
		case lerr == nil && !valid:
			t.Fatalf("invalid JSON accepted: %q", data)
		case lerr == nil:
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			var x any
			if err := dec.Decode(&x); err != nil {
				t.Fatal(err)
			}
			if sv, err := FromGo(x); err != nil || !Equal(sv, lv) {
				t.Fatalf("lenient reader and encoding/json disagree on %q: %v vs %v (%v)", data, lv, sv, err)
			}
		}
		v, err := FromJSON(data)
		if err != nil {
			if lerr == nil && !strings.Contains(err.Error(), "duplicate key") && !strings.Contains(err.Error(), "invalid UTF-8") && !strings.Contains(err.Error(), "lone surrogate") {
				t.Fatalf("FromJSON refused %q for another reason than strictness: %v", data, err)
			}
			return
		}
		if lerr != nil || !Equal(v, lv) {
			t.Fatalf("FromJSON accepts %q as %v, the lenient reader: %v, %v", data, v, lv, lerr)
		}
		out, err := ToJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := FromJSON(out)
		if err != nil {
			t.Fatalf("ToJSON output %q does not decode: %v", out, err)
		}
		if !Equal(v, v2) || Compare(v, v2) != 0 {
			t.Fatalf("round trip changed the value: %q -> %q", data, out)
		}
		if out2, _ := ToJSON(v2); string(out2) != string(out) {
			t.Fatalf("ToJSON not deterministic: %q vs %q", out, out2)
		}
	})
}

// FuzzGlob compares glob.match (pattern translated to RE2 by the engine)
// with OPA's gobwas/glob on fuzzed patterns, delimiters and subjects.
func FuzzGlob(f *testing.F) {
	for _, s := range [][3]string{
		{"*.example.com", ".", "api.example.com"}, {"**.b", ".", "a.x.b"}, {"a?c", "", "abc"},
		{"[a-c]x", ".", "bx"}, {"[!a-c]x", ".", "dx"}, {"{a,b*}.c", ".", "bzz.c"}, {`\*x`, ".", "*x"},
		{"[", ".", "["}, {"{a,b", ".", "a"}, {"a,b", ":", "a,b"}, {"*/*", "/", "a/b"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	modules := map[string]string{"g.rego": `package g
p := glob.match(input.p, input.d, input.s)`}
	p, err := Load(mustPlan(f, modules, "g/p"), nil)
	if err != nil {
		f.Fatal(err)
	}
	oracle := newOPAOracle(f, modules, map[string]any{}, "g/p")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, pattern, delims, subject string) {
		// Inputs arrive as JSON, which cannot carry invalid UTF-8.
		if !utf8.ValidString(pattern) || !utf8.ValidString(delims) || !utf8.ValidString(subject) {
			return
		}
		ds := []any{}
		for _, r := range delims {
			ds = append(ds, string(r))
		}
		in := map[string]any{"p": pattern, "d": ds, "s": subject}
		v, err := FromGo(in)
		if err != nil {
			t.Fatal(err)
		}
		got := engineOutcome(ctx, p, "g/p", v)
		want := oracle.eval(ctx, in)
		if got != want {
			t.Fatalf("glob.match(%q, %q, %q): engine %v, OPA %v", pattern, ds, subject, got, want)
		}
	})
}
