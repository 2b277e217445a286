package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// The methods below are the encoding/json plan decoder the engine used
// before it dropped encoding/json (issue 3). They live on in the tests as
// the reference decodePlan is compared with: what the new reader accepts,
// the old one accepted with the same result.

func decodePlanStd(data []byte) (*planPolicy, error) {
	var p planPolicy
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the document")
	}
	return &p, nil
}

func (r *rawJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

func (b *block) UnmarshalJSON(data []byte) error {
	var raw struct {
		Stmts []struct {
			Type string          `json:"type"`
			Stmt json.RawMessage `json:"stmt"`
		} `json:"stmts"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	b.Stmts = make([]stmt, len(raw.Stmts))
	for i, r := range raw.Stmts {
		s, err := newStmt(r.Type)
		if err != nil {
			return fmt.Errorf("statement %d: %w", i, err)
		}
		if len(r.Stmt) == 0 || bytes.Equal(r.Stmt, []byte("null")) {
			return fmt.Errorf("statement %d (%s): missing body", i, r.Type)
		}
		if err := json.Unmarshal(r.Stmt, s); err != nil {
			return fmt.Errorf("statement %d (%s): %w", i, r.Type, err)
		}
		b.Stmts[i] = s
	}
	return nil
}

func (o *operand) UnmarshalJSON(data []byte) error {
	var raw struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	switch raw.Type {
	case "local":
		o.kind = opLocal
		return json.Unmarshal(raw.Value, &o.local)
	case "string_index":
		o.kind = opString
		return json.Unmarshal(raw.Value, &o.index)
	case "bool":
		o.kind = opBool
		return json.Unmarshal(raw.Value, &o.b)
	}
	return fmt.Errorf("unrecognized operand type %q", raw.Type)
}

func (m *makeNumberRefStmt) UnmarshalJSON(data []byte) error {
	var raw struct {
		location
		Index       *int  `json:"index"`
		IndexLegacy *int  `json:"Index"`
		Target      local `json:"target"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return err
	}
	m.location, m.Target = raw.location, raw.Target
	for _, k := range []string{"index", "Index"} {
		if v, ok := keys[k]; ok {
			return json.Unmarshal(v, &m.Index)
		}
	}
	return fmt.Errorf("MakeNumberRefStmt without index")
}

// checkDecodeAgainstStd decodes data with both readers: what decodePlan
// accepts, the encoding/json reader must accept with an equal result.
func checkDecodeAgainstStd(t *testing.T, data []byte) (ours *planPolicy, err error) {
	t.Helper()
	ours, err = decodePlan(data)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "decoding plan: ") {
			t.Fatalf("error without the decoding prefix: %v", err)
		}
		return nil, err
	}
	std, stdErr := decodePlanStd(data)
	if stdErr != nil {
		t.Fatalf("decodePlan accepts what encoding/json refused (%v):\n%s", stdErr, data)
	}
	if !reflect.DeepEqual(ours, std) {
		t.Fatalf("decodePlan and encoding/json disagree on\n%s\nours %s\nstd  %s", data, dump(ours), dump(std))
	}
	return ours, nil
}

func dump(p *planPolicy) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// TestDecodePlanMatchesStd decodes real plans from OPA's planner: every
// statement kind the shared cases produce must decode as encoding/json
// decoded it.
func TestDecodePlanMatchesStd(t *testing.T) {
	kinds := map[string]bool{}
	var plans [][]byte
	for _, tc := range sharedCases {
		plans = append(plans, mustPlan(t, map[string]string{"x.rego": tc.module}, "x/p"))
	}
	plans = append(plans,
		mustPlan(t, map[string]string{"b.rego": benchPolicy}, "bench/decision"),
		mustPlan(t, map[string]string{"fz.rego": differentialPolicy}, differentialEntrypoints...))
	for _, plan := range plans {
		p, err := checkDecodeAgainstStd(t, plan)
		if err != nil {
			t.Fatalf("real plan refused: %v", err)
		}
		var walk func(bs []*block)
		walk = func(bs []*block) {
			for _, b := range bs {
				for _, s := range b.Stmts {
					kinds[reflect.TypeOf(s).Elem().Name()] = true
					switch s := s.(type) {
					case *blockStmt:
						walk(s.Blocks)
					case *scanStmt:
						walk([]*block{s.Block})
					case *notStmt:
						walk([]*block{s.Block})
					case *withStmt:
						walk([]*block{s.Block})
					}
				}
			}
		}
		for _, pl := range p.Plans.Plans {
			walk(pl.Blocks)
		}
		for _, f := range p.Funcs.Funcs {
			walk(f.Blocks)
		}
	}
	if len(kinds) < 25 {
		t.Fatalf("real plans cover only %d statement kinds: %v", len(kinds), kinds)
	}
}

// TestDecodePlanStrict lists what encoding/json let through and the
// engine now refuses, and that each error names its place.
func TestDecodePlanStrict(t *testing.T) {
	stmt := func(kind, body string) string { return planJSON(`{"type":"`+kind+`","stmt":`+body+`}`, "") }
	for _, tc := range []struct{ name, plan, msg string }{
		{"root null", `null`, "want an object, got null"},
		{"root array", `[]`, "want an object, got array"},
		{"unknown top-level member", `{"plan":{}}`, "plan (line 1, column 9): unknown member"},
		{"case variant member", `{"Plans":{"plans":[]}}`, "Plans (line 1, column 10): unknown member"},
		{"duplicate key", `{"plans":{"plans":[]},"plans":{"plans":[]}}`, `duplicate key "plans"`},
		{"unknown statement member", stmt("MakeNullStmt", `{"target":2,"targett":3}`), `stmts[0].stmt.targett`},
		{"unknown statement wrapper member", planJSON(`{"type":"NopStmt","stmt":{},"x":1}`, ""), `stmts[0].x`},
		{"null scalar", stmt("MakeNullStmt", `{"target":null}`), "stmt.target (line 1, column 150): want an integer, got null"},
		{"string local", stmt("MakeNullStmt", `{"target":"2"}`), "want an integer, got string"},
		{"fraction local", stmt("MakeNullStmt", `{"target":2.0}`), "want an integer within 64 bits, got 2.0"},
		{"int32 overflow", stmt("MakeArrayStmt", `{"capacity":2147483648,"target":2}`), "capacity (line 1, column 153): integer 2147483648 out of range"},
		{"uint32 negative", stmt("BreakStmt", `{"index":-1}`), "want a non-negative integer"},
		{"null operand value", stmt("AssignVarStmt", `{"source":{"type":"local","value":null},"target":2}`), "source.value (line 1, column 175): want an integer, got null"},
		{"operand without value", stmt("AssignVarStmt", `{"source":{"type":"local"},"target":2}`), "source.value: required member is missing"},
		{"operand bool as number", stmt("AssignVarStmt", `{"source":{"type":"bool","value":1},"target":2}`), "want true or false, got number"},
		{"null operand", stmt("AssignVarStmt", `{"source":null,"target":2}`), "source (line 1, column 151): want an object, got null"},
		{"unknown operand type", stmt("AssignVarStmt", `{"source":{"type":"float","value":1},"target":2}`), `unrecognized operand type "float"`},
		{"unknown statement", stmt("GotoStmt", `{}`), `stmts[0] (line 1, column 110): unrecognized statement type "GotoStmt"`},
		{"null body", stmt("NopStmt", `null`), "NopStmt: missing body"},
		{"body not an object", stmt("NopStmt", `[]`), "stmt (line 1, column 135): want an object, got array"},
		{"index and Index differ", stmt("MakeNumberRefStmt", `{"index":0,"Index":1,"target":2}`), "index and Index that differ"},
		{"number ref without index", stmt("MakeNumberRefStmt", `{"target":2}`), "MakeNumberRefStmt without index"},
		{"invalid UTF-8", "{\"plans\":{\"plans\":[{\"name\":\"\xff\",\"blocks\":[]}]}}", "invalid UTF-8"},
		{"string constant not a string", `{"static":{"strings":[{"value":1}]}}`, "static.strings[0].value (line 1, column 32): want a string, got number"},
		{"deeper than encoding/json reads", strings.Repeat(`{"plans":`, 10001), "nesting deeper than 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkDecodeAgainstStd(t, []byte(tc.plan))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("decodePlan error = %v, want it to contain %q", err, tc.msg)
			}
		})
	}
}

// TestDecodePlanLenientWhereOPAIs keeps what OPA writes loading: nulls for
// empty slices and missing blocks, [] for empty ones, both index keys.
func TestDecodePlanLenientWhereOPAIs(t *testing.T) {
	for _, plan := range []string{
		`{}`,
		`{"static":null,"plans":null,"funcs":null,"unplanned_rules":null}`,
		`{"static":{"strings":null,"builtin_funcs":null,"files":null},"plans":{"plans":null},"funcs":{"funcs":null}}`,
		`{"static":{"strings":[],"builtin_funcs":[{"name":"upper","decl":{"args":[{"type":"string"}],"result":{"type":"string"},"type":"function"}}]}}`,
		`{"funcs":{"funcs":[{"name":"f","params":[0,1],"return":2,"blocks":[{"stmts":[{"type":"CallDynamicStmt","stmt":{"args":null,"result":2,"path":null}}]}],"path":null}]}}`,
		planJSON(`{"type":"MakeNumberRefStmt","stmt":{"index":0,"Index":0,"target":2,"file":0,"col":1,"row":2,"end_col":3,"end_row":4}}`, ""),
		planJSON(`{"type":"MakeNumberRefStmt","stmt":{"Index":1,"target":2}}`, ""),
		planJSON(`{"type":"WithStmt","stmt":{"local":0,"path":null,"value":{"type":"bool","value":true},"block":null}}`, ""),
		planJSON(`{"type":"BlockStmt","stmt":{"blocks":[null,{"stmts":[]},{}]}}`, ""),
		planJSON(`{"type":"BreakStmt","stmt":{"index":4294967295}}`, ""),
		`{"unplanned_rules":[{"path":"data.x.y","location":{"file":0,"row":1,"col":2}},{"path":"z","location":null},null]}`,
	} {
		if _, err := checkDecodeAgainstStd(t, []byte(plan)); err != nil {
			t.Errorf("refused %s: %v", plan, err)
		}
	}
}

// FuzzDecodePlan: decodePlan never panics, every error carries the
// decoding prefix, and what it accepts encoding/json decoded the same way.
func FuzzDecodePlan(f *testing.F) {
	f.Add(mustPlan(f, map[string]string{"b.rego": benchPolicy}, "bench/decision"))
	for _, tc := range sharedCases[:8] {
		f.Add(mustPlan(f, map[string]string{"x.rego": tc.module}, "x/p"))
	}
	f.Add([]byte(planJSON(`{"type":"MakeNumberRefStmt","stmt":{"index":0,"Index":0,"target":2}}`, "")))
	f.Add([]byte(planJSON(`{"type":"BlockStmt","stmt":{"blocks":[null,{"stmts":[]},{}]}}`, "")))
	f.Add([]byte(`{"unplanned_rules":[{"path":"data.x.y","location":{"file":0,"row":1,"col":2}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeAgainstStd(t, data)
	})
}
