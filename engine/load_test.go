package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func planJSON(stmts string, extra string) string {
	return `{"static":{"strings":[{"value":"result"},{"value":"x"}]` + extra + `},"plans":{"plans":[{"name":"a/b","blocks":[{"stmts":[` + stmts + `]}]}]}}`
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct {
		name, plan, code, msg string
	}{
		{"not json", `{`, CodeInvalidPlan, "decoding plan"},
		{"trailing data", `{} {}`, CodeInvalidPlan, "after the JSON value"},
		{"unknown statement", planJSON(`{"type":"GotoStmt","stmt":{}}`, ""), CodeInvalidPlan, "GotoStmt"},
		{"statement without body", planJSON(`{"type":"NopStmt"}`, ""), CodeInvalidPlan, "missing body"},
		{"unknown operand", planJSON(`{"type":"EqualStmt","stmt":{"a":{"type":"float","value":1},"b":{"type":"bool","value":true}}}`, ""), CodeInvalidPlan, "operand type"},
		{"missing operand", planJSON(`{"type":"EqualStmt","stmt":{"b":{"type":"bool","value":true}}}`, ""), CodeInvalidPlan, "missing operand"},
		{"string index out of range", planJSON(`{"type":"AssignVarStmt","stmt":{"source":{"type":"string_index","value":9},"target":2}}`, ""), CodeInvalidPlan, "string index 9"},
		{"negative local", planJSON(`{"type":"MakeNullStmt","stmt":{"target":-1}}`, ""), CodeInvalidPlan, "local -1"},
		{"huge local", planJSON(`{"type":"MakeNullStmt","stmt":{"target":100000000}}`, ""), CodeInvalidPlan, "out of range"},
		{"break out of plan", planJSON(`{"type":"BreakStmt","stmt":{"index":1}}`, ""), CodeInvalidPlan, "BreakStmt"},
		{"return in plan", planJSON(`{"type":"ReturnLocalStmt","stmt":{"source":2}}`, ""), CodeInvalidPlan, "outside a function"},
		{"unsupported builtin", planJSON(`{"type":"CallStmt","stmt":{"func":"http.send","args":[{"type":"local","value":0}],"result":2,"file":0,"row":7,"col":3}}`, `,"files":[{"value":"policy.rego"}]`), CodeUnsupported, `"http.send"`},
		{"builtin arity", planJSON(`{"type":"CallStmt","stmt":{"func":"upper","args":[],"result":2}}`, ""), CodeInvalidPlan, "want 1"},
		{"number constant not a number", planJSON(`{"type":"MakeNumberRefStmt","stmt":{"index":1,"target":2}}`, ""), CodeInvalidPlan, "not a number"},
		{"number ref without index", planJSON(`{"type":"MakeNumberRefStmt","stmt":{"target":2}}`, ""), CodeInvalidPlan, "without index"},
		{"dynamic call too shallow", planJSON(`{"type":"CallDynamicStmt","stmt":{"args":[0,1],"result":2,"path":[]}}`, ""), CodeInvalidPlan, "CallDynamicStmt"},
		{"null block", `{"plans":{"plans":[{"name":"a","blocks":[null]}]}}`, CodeInvalidPlan, "null block"},
		{"duplicate plan", `{"plans":{"plans":[{"name":"a","blocks":[]},{"name":"a","blocks":[]}]}}`, CodeInvalidPlan, "twice"},
		{"recursive functions", `{"funcs":{"funcs":[{"name":"f","params":[0,1],"return":2,"blocks":[{"stmts":[{"type":"CallStmt","stmt":{"func":"f","args":[{"type":"local","value":0},{"type":"local","value":1}],"result":2}}]}]}]}}`, CodeInvalidPlan, "recursive"},
		{"function call arity", `{"funcs":{"funcs":[{"name":"f","params":[0,1],"return":2,"blocks":[{"stmts":[]}]}]},"plans":{"plans":[{"name":"a","blocks":[{"stmts":[{"type":"CallStmt","stmt":{"func":"f","args":[],"result":2}}]}]}]}}`, CodeInvalidPlan, "want 2"},
		{"function without params", `{"funcs":{"funcs":[{"name":"f","params":[],"return":2,"blocks":[{"stmts":[]}]}]}}`, CodeInvalidPlan, "no parameters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.plan), nil)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Load error = %v, want *Error", err)
			}
			if e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("Load error = %v, want code %s containing %q", err, tc.code, tc.msg)
			}
			if tc.code == CodeUnsupported && (e.Location == nil || e.Location.String() != "policy.rego:7") {
				t.Fatalf("unsupported builtin error location = %v, want policy.rego:7", e.Location)
			}
		})
	}
}

func TestEvalAPI(t *testing.T) {
	plan := mustPlan(t, map[string]string{"x.rego": `package x
now := time.now_ns()
twice := [time.now_ns(), time.now_ns()]
p := input.v
many contains v if some v in input.vs
`}, "x/now", "x/twice", "x/p", "x/many")
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	p, err := Load(plan, nil, WithClock(func() time.Time { return fixed }))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Entrypoints(); strings.Join(got, ",") != "x/many,x/now,x/p,x/twice" {
		t.Fatalf("Entrypoints = %v", got)
	}
	ctx := context.Background()
	t.Run("injected clock", func(t *testing.T) {
		v, ok, err := p.EvalOne(ctx, "x/now", nil)
		if err != nil || !ok || !Equal(v, Int(fixed.UnixNano())) {
			t.Fatalf("now = %v, %v, %v", v, ok, err)
		}
	})
	t.Run("clock read once per evaluation", func(t *testing.T) {
		calls := 0
		p2, err := Load(plan, nil, WithClock(func() time.Time { calls++; return fixed.Add(time.Duration(calls)) }))
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := p2.EvalOne(ctx, "x/twice", nil)
		if err != nil {
			t.Fatal(err)
		}
		arr := v.(*Array)
		if calls != 1 || !Equal(arr.Index(0), arr.Index(1)) {
			t.Fatalf("clock called %d times, values %v %v", calls, arr.Index(0), arr.Index(1))
		}
	})
	t.Run("result set shape", func(t *testing.T) {
		rs, err := p.Eval(ctx, "x/p", mustFromJSON(t, `{"v": [1]}`))
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := ToJSON(rs); string(b) != `[{"result":[1]}]` {
			t.Fatalf("result set = %s", b)
		}
	})
	t.Run("undefined", func(t *testing.T) {
		rs, err := p.Eval(ctx, "x/p", mustFromJSON(t, `{}`))
		if err != nil || rs.(*Set).Len() != 0 {
			t.Fatalf("Eval = %v, %v", rs, err)
		}
		if _, ok, err := p.EvalOne(ctx, "x/p", nil); ok || err != nil {
			t.Fatalf("EvalOne = %v, %v", ok, err)
		}
	})
	t.Run("unknown entrypoint", func(t *testing.T) {
		_, err := p.Eval(ctx, "x/nope", nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeUnknownEntry {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("plan cannot modify input", func(t *testing.T) {
		in := mustFromJSON(t, `{"vs": [3, 1, 2]}`)
		before, _ := ToJSON(in)
		if _, _, err := p.EvalOne(ctx, "x/many", in); err != nil {
			t.Fatal(err)
		}
		after, _ := ToJSON(in)
		if string(before) != string(after) {
			t.Fatalf("input changed: %s -> %s", before, after)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		big := NewArray(10000)
		for i := range 10000 {
			big.Append(Int(int64(i)))
		}
		in := NewObject(1)
		in.Set("vs", big)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, _, err := p.EvalOne(cctx, "x/many", in)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeCancelled {
			t.Fatalf("err = %v, want %s", err, CodeCancelled)
		}
	})
}

func TestConcurrentEval(t *testing.T) {
	data := mustFromJSON(t, benchData)
	p, err := Load(mustPlan(t, map[string]string{"bench.rego": benchPolicy}, "bench/decision"), data)
	if err != nil {
		t.Fatal(err)
	}
	inputs := []Value{mustFromJSON(t, benchAllowInput), mustFromJSON(t, benchDenyInput)}
	want := make([]string, len(inputs))
	for i, in := range inputs {
		v, _, err := p.EvalOne(context.Background(), "bench/decision", in)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ToJSON(v)
		want[i] = string(b)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := (g + i) % len(inputs)
				v, _, err := p.EvalOne(context.Background(), "bench/decision", inputs[k])
				if err != nil {
					errs <- err.Error()
					return
				}
				if b, _ := ToJSON(v); string(b) != want[k] {
					errs <- "got " + string(b)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestStrictBuiltinErrors(t *testing.T) {
	plan := mustPlan(t, map[string]string{"x.rego": `package x
p := regex.match(input.re, "a")`}, "x/p")
	in := mustFromJSON(t, `{"re": "("}`)
	for _, tc := range []struct {
		name   string
		strict bool
		code   string
	}{{"default undefined", false, ""}, {"strict error", true, CodeBuiltinError}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load(plan, nil, WithStrictBuiltinErrors(tc.strict))
			if err != nil {
				t.Fatal(err)
			}
			_, ok, err := p.EvalOne(context.Background(), "x/p", in)
			var e *Error
			switch {
			case tc.code == "" && (err != nil || ok):
				t.Fatalf("want undefined, got ok=%v err=%v", ok, err)
			case tc.code != "" && (!errors.As(err, &e) || e.Code != tc.code || e.Location == nil):
				t.Fatalf("want located %s, got %v", tc.code, err)
			}
		})
	}
}

func TestSupportedBuiltins(t *testing.T) {
	names := SupportedBuiltins()
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Fatalf("not sorted/unique at %q", names[i])
		}
	}
	for _, must := range []string{"regex.match", "sprintf", "internal.member_2", "aegis.dlp.redact", "net.cidr_contains", "time.now_ns"} {
		if _, ok := BuiltinArity(must); !ok {
			t.Errorf("%s missing", must)
		}
	}
	for name, spec := range builtinTable {
		if spec.arity < 0 || spec.arity > maxBuiltinArity || spec.fn == nil {
			t.Errorf("%s: bad table entry", name)
		}
	}
}
