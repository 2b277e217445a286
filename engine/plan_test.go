package engine

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ir"
)

// jsonFields lists the JSON keys of a struct type, following embedded
// structs the way encoding/json does.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		name := strings.Split(tag, ",")[0]
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// TestStatementsMirrorOPA checks that every statement kind OPA's IR defines
// is decoded by the engine, with the same JSON fields.
func TestStatementsMirrorOPA(t *testing.T) {
	kinds := ir.StmtKinds()
	if len(kinds) < 30 {
		t.Fatalf("OPA reports only %d statement kinds", len(kinds))
	}
	for name, opaStmt := range kinds {
		t.Run(name, func(t *testing.T) {
			ours, err := newStmt(name)
			if err != nil {
				t.Fatalf("engine does not decode %s: %v", name, err)
			}
			want := jsonFields(reflect.TypeOf(opaStmt).Elem())
			got := jsonFields(reflect.TypeOf(ours).Elem())
			if name == "MakeNumberRefStmt" {
				// Decoded by hand from both "index" and the legacy "Index".
				got = []string{"Index", "col", "end_col", "end_row", "file", "row", "target"}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("fields differ:\nOPA:    %v\nengine: %v", want, got)
			}
		})
	}
	for _, kind := range []string{"bool", "string_index", "local"} {
		if _, ok := ir.ValKinds()[kind]; !ok {
			t.Errorf("OPA no longer has operand kind %q", kind)
		}
	}
}

// TestTopLevelMirrorsOPA compares the JSON fields of the container types.
func TestTopLevelMirrorsOPA(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opa, ours any
	}{
		{"Policy", ir.Policy{}, planPolicy{}},
		{"Static", ir.Static{}, planStatic{}},
		{"BuiltinFunc", ir.BuiltinFunc{}, builtinFunc{}},
		{"Plans", ir.Plans{}, planPlans{}},
		{"Funcs", ir.Funcs{}, planFuncs{}},
		{"Func", ir.Func{}, planFunc{}},
		{"Plan", ir.Plan{}, plan{}},
		{"StringConst", ir.StringConst{}, stringConst{}},
		{"UnplannedRule", ir.UnplannedRule{}, unplannedRule{}},
		{"Location", ir.Location{}, location{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := jsonFields(reflect.TypeOf(tc.opa))
			got := jsonFields(reflect.TypeOf(tc.ours))
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("fields differ:\nOPA:    %v\nengine: %v", want, got)
			}
		})
	}
}
