package engine

import (
	"bytes"
	"fmt"
	"math"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// maxPlanDepth is encoding/json's nesting limit, under which plans were
// read before; validate bounds block nesting far below it.
const maxPlanDepth = 10000

// decodePlan parses plan.json. Unknown statement or operand kinds are
// errors; structural checks (indexes, locals, depths) are left to validate.
//
// The reader is strict where encoding/json was lenient: a member the IR
// does not define, a name in another case, a duplicate key or a null where
// OPA writes a number is refused. A plan carrying what the engine does not
// understand must not load as if it had not carried it. Absent members and
// nulls where OPA writes null (empty slices, missing blocks) decode as
// before, and validate reports what they leave missing.
func decodePlan(data []byte) (*planPolicy, error) {
	root, err := jsonx.ParseWith(data, jsonx.Options{MaxDepth: maxPlanDepth})
	if err != nil {
		return nil, errs.Errorf("decoding plan: %w", err)
	}
	p, err := decodePolicy(root)
	if err != nil {
		return nil, errs.Errorf("decoding plan: %w", err)
	}
	return p, nil
}

// rd reads the members of one plan object. Errors stick to the Obj; End
// reports the first of them.
type rd struct{ *jsonx.Obj }

func decodePolicy(v *jsonx.Value) (*planPolicy, error) {
	o, err := v.AsObject("")
	if err != nil {
		return nil, err
	}
	r := rd{o}
	p := &planPolicy{}
	if s := r.object("static"); s != nil {
		p.Static = &planStatic{
			Strings:      s.stringConsts("strings"),
			BuiltinFuncs: s.builtinFuncs("builtin_funcs"),
			Files:        s.stringConsts("files"),
		}
		r.Fail(s.End())
	}
	if s := r.object("plans"); s != nil {
		p.Plans = &planPlans{Plans: s.plans("plans")}
		r.Fail(s.End())
	}
	if s := r.object("funcs"); s != nil {
		p.Funcs = &planFuncs{Funcs: s.funcs("funcs")}
		r.Fail(s.End())
	}
	p.UnplannedRules = r.unplannedRules("unplanned_rules")
	return p, r.End()
}

// objectList reads array member name, whose elements are objects, with
// read. Like encoding/json it leaves an absent or null member nil and makes
// [] an empty slice; a null element stays nil for validate to report. P is
// a pointer type so that every list shares one instantiation.
func objectList[P any](r rd, name string, read func(o *rd) P) []P {
	es := r.elems(name)
	if es == nil {
		return nil
	}
	out := make([]P, len(es))
	for i := range es {
		if o := r.elem(&es[i], i, name); o != nil {
			out[i] = read(o)
			r.Fail(o.End())
		}
	}
	return out
}

func (r rd) plans(name string) []*plan {
	return objectList(r, name, func(o *rd) *plan {
		return &plan{Name: o.str("name"), Blocks: o.blocks("blocks")}
	})
}

func (r rd) funcs(name string) []*planFunc {
	return objectList(r, name, func(o *rd) *planFunc {
		return &planFunc{
			Name:   o.str("name"),
			Params: o.locals("params"),
			Return: o.local("return"),
			Blocks: o.blocks("blocks"),
			Path:   o.strs("path"),
		}
	})
}

func (r rd) unplannedRules(name string) []*unplannedRule {
	return objectList(r, name, func(o *rd) *unplannedRule {
		u := &unplannedRule{Path: o.str("path")}
		if lo := o.object("location"); lo != nil {
			u.Location = &location{}
			lo.location(u.Location)
			o.Fail(lo.End())
		}
		return u
	})
}

func (r rd) stringConsts(name string) []*stringConst {
	return objectList(r, name, func(o *rd) *stringConst {
		return &stringConst{Value: o.str("value")}
	})
}

func (r rd) builtinFuncs(name string) []*builtinFunc {
	return objectList(r, name, func(o *rd) *builtinFunc {
		f := &builtinFunc{Name: o.str("name")}
		// The declaration is not read (see builtinFunc), only kept.
		if d := o.Get("decl"); d != nil {
			f.Decl = bytes.Clone(d.Raw)
		}
		return f
	})
}

// elems returns member name's elements: nil when absent or null, empty
// for []. Callers that index a result slice by element allocate it first.
//
//go:noinline
func (r rd) elems(name string) []jsonx.Value {
	v := r.Get(name)
	if v == nil || v.Kind == jsonx.Null {
		return nil
	}
	es, err := v.AsArray(r.Path(name))
	r.Fail(err)
	return es
}

// elem starts element i of array member name, an object; nil when it is
// null (or, error recorded, not an object).
//
//go:noinline
func (r rd) elem(v *jsonx.Value, i int, name string) *rd {
	if v.Kind == jsonx.Null {
		return nil
	}
	o, err := v.AsObject(jsonx.Index(r.Path(name), i))
	if err != nil {
		r.Fail(err)
		return nil
	}
	return &rd{o}
}

// object returns member name as an object; nil when absent or null.
//
//go:noinline
func (r rd) object(name string) *rd {
	v := r.Get(name)
	if v == nil || v.Kind == jsonx.Null {
		return nil
	}
	o, err := v.AsObject(r.Path(name))
	if err != nil {
		r.Fail(err)
		return nil
	}
	return &rd{o}
}

//go:noinline
func (r rd) str(name string) string {
	var s string
	r.String(name, &s)
	return s
}

//go:noinline
func (r rd) strs(name string) []string {
	es := r.elems(name)
	if es == nil {
		return nil
	}
	out := make([]string, len(es))
	for i := range es {
		s, err := es[i].AsString(jsonx.Index(r.Path(name), i))
		r.Fail(err)
		out[i] = s
	}
	return out
}

// integer reads member name as an integer within [lo, hi]; absent is 0.
//
//go:noinline
func (r rd) integer(name string, lo, hi int64) int64 {
	v := r.Get(name)
	if v == nil {
		return 0
	}
	return r.intValue(v, r.Path(name), lo, hi)
}

//go:noinline
func (r rd) intValue(v *jsonx.Value, path string, lo, hi int64) int64 {
	n, err := v.AsInt64(path)
	if err == nil && (n < lo || n > hi) {
		err = v.Fail(path, "integer "+v.Str+" out of range")
	}
	if err != nil {
		r.Fail(err)
		return 0
	}
	return n
}

//go:noinline
func (r rd) int(name string) int { return int(r.integer(name, math.MinInt, math.MaxInt)) }

//go:noinline
func (r rd) local(name string) local { return local(r.int(name)) }

//go:noinline
func (r rd) locals(name string) []local {
	es := r.elems(name)
	if es == nil {
		return nil
	}
	out := make([]local, len(es))
	for i := range es {
		out[i] = local(r.intValue(&es[i], jsonx.Index(r.Path(name), i), math.MinInt, math.MaxInt))
	}
	return out
}

//go:noinline
func (r rd) ints(name string) []int {
	ls := r.locals(name)
	if ls == nil {
		return nil
	}
	out := make([]int, len(ls))
	for i, l := range ls {
		out[i] = int(l)
	}
	return out
}

// location reads the members every statement carries.
//
//go:noinline
func (r rd) location(l *location) {
	l.File = r.int("file")
	l.Col = r.int("col")
	l.Row = r.int("row")
	l.EndCol = r.int("end_col")
	l.EndRow = r.int("end_row")
}

// block reads a {"stmts": [...]} member; nil when absent or null, which
// validate refuses where a block is needed.
//
//go:noinline
func (r rd) block(name string) *block {
	v := r.Get(name)
	if v == nil || v.Kind == jsonx.Null {
		return nil
	}
	b, err := decodeBlock(v, r.Path(name))
	r.Fail(err)
	return b
}

//go:noinline
func (r rd) blocks(name string) []*block {
	es := r.elems(name)
	if es == nil {
		return nil
	}
	out := make([]*block, len(es))
	for i := range es {
		if es[i].Kind == jsonx.Null {
			continue
		}
		b, err := decodeBlock(&es[i], jsonx.Index(r.Path(name), i))
		r.Fail(err)
		out[i] = b
	}
	return out
}

func decodeBlock(v *jsonx.Value, path string) (*block, error) {
	o, err := v.AsObject(path)
	if err != nil {
		return nil, err
	}
	r := rd{o}
	es := r.elems("stmts")
	b := &block{Stmts: make([]stmt, len(es))}
	for i := range es {
		s, err := decodeStmt(&es[i], jsonx.Index(r.Path("stmts"), i))
		if err != nil {
			return nil, err
		}
		b.Stmts[i] = s
	}
	return b, r.End()
}

// decodeStmt decodes {"type": kind, "stmt": {...}}.
func decodeStmt(v *jsonx.Value, path string) (stmt, error) {
	o, err := v.AsObject(path)
	if err != nil {
		return nil, err
	}
	r := rd{o}
	kind := r.str("type")
	if err := r.Err(); err != nil {
		return nil, err
	}
	s, err := newStmt(kind)
	if err != nil {
		return nil, v.Fail(path, err.Error())
	}
	body := r.Get("stmt")
	if body == nil || body.Kind == jsonx.Null {
		return nil, v.Fail(path, kind+": missing body")
	}
	bo, err := body.AsObject(r.Path("stmt"))
	if err != nil {
		return nil, err
	}
	b := rd{bo}
	b.location(s.loc())
	b.stmtBody(s)
	if err := bo.End(); err != nil {
		return nil, err
	}
	return s, r.End()
}

func newStmt(kind string) (stmt, error) {
	switch kind {
	case "ReturnLocalStmt":
		return &returnLocalStmt{}, nil
	case "CallStmt":
		return &callStmt{}, nil
	case "CallDynamicStmt":
		return &callDynamicStmt{}, nil
	case "BlockStmt":
		return &blockStmt{}, nil
	case "BreakStmt":
		return &breakStmt{}, nil
	case "DotStmt":
		return &dotStmt{}, nil
	case "LenStmt":
		return &lenStmt{}, nil
	case "ScanStmt":
		return &scanStmt{}, nil
	case "NotStmt":
		return &notStmt{}, nil
	case "AssignIntStmt":
		return &assignIntStmt{}, nil
	case "AssignVarStmt":
		return &assignVarStmt{}, nil
	case "AssignVarOnceStmt":
		return &assignVarOnceStmt{}, nil
	case "ResetLocalStmt":
		return &resetLocalStmt{}, nil
	case "MakeNullStmt":
		return &makeNullStmt{}, nil
	case "MakeNumberIntStmt":
		return &makeNumberIntStmt{}, nil
	case "MakeNumberRefStmt":
		return &makeNumberRefStmt{}, nil
	case "MakeArrayStmt":
		return &makeArrayStmt{}, nil
	case "MakeObjectStmt":
		return &makeObjectStmt{}, nil
	case "MakeSetStmt":
		return &makeSetStmt{}, nil
	case "EqualStmt":
		return &equalStmt{}, nil
	case "NotEqualStmt":
		return &notEqualStmt{}, nil
	case "IsArrayStmt":
		return &isArrayStmt{}, nil
	case "IsObjectStmt":
		return &isObjectStmt{}, nil
	case "IsSetStmt":
		return &isSetStmt{}, nil
	case "IsDefinedStmt":
		return &isDefinedStmt{}, nil
	case "IsUndefinedStmt":
		return &isUndefinedStmt{}, nil
	case "ArrayAppendStmt":
		return &arrayAppendStmt{}, nil
	case "ObjectInsertStmt":
		return &objectInsertStmt{}, nil
	case "ObjectInsertOnceStmt":
		return &objectInsertOnceStmt{}, nil
	case "ObjectMergeStmt":
		return &objectMergeStmt{}, nil
	case "SetAddStmt":
		return &setAddStmt{}, nil
	case "WithStmt":
		return &withStmt{}, nil
	case "NopStmt":
		return &nopStmt{}, nil
	case "ResultSetAddStmt":
		return &resultSetAddStmt{}, nil
	}
	return nil, errs.Errorf("unrecognized statement type %q", kind)
}

// stmtBody reads the members of s's kind (its location is read already);
// the names are the JSON tags in plan.go, which mirror OPA's ir package.
//
//go:noinline
func (r rd) stmtBody(s stmt) {
	switch s := s.(type) {
	case *returnLocalStmt:
		s.Source = r.local("source")
	case *callStmt:
		s.Func = r.str("func")
		s.Args = r.operands("args")
		s.Result = r.local("result")
	case *callDynamicStmt:
		s.Args = r.locals("args")
		s.Result = r.local("result")
		s.Path = r.operands("path")
	case *blockStmt:
		s.Blocks = r.blocks("blocks")
	case *breakStmt:
		s.Index = uint32(r.unsigned("index", math.MaxUint32))
	case *dotStmt:
		s.Source = r.operand("source")
		s.Key = r.operand("key")
		s.Target = r.local("target")
	case *lenStmt:
		s.Source = r.operand("source")
		s.Target = r.local("target")
	case *scanStmt:
		s.Source = r.local("source")
		s.Key = r.local("key")
		s.Value = r.local("value")
		s.Block = r.block("block")
	case *notStmt:
		s.Block = r.block("block")
	case *assignIntStmt:
		s.Value = r.integer("value", math.MinInt64, math.MaxInt64)
		s.Target = r.local("target")
	case *assignVarStmt:
		s.Source = r.operand("source")
		s.Target = r.local("target")
	case *assignVarOnceStmt:
		s.Source = r.operand("source")
		s.Target = r.local("target")
	case *resetLocalStmt:
		s.Target = r.local("target")
	case *makeNullStmt:
		s.Target = r.local("target")
	case *makeNumberIntStmt:
		s.Value = r.integer("value", math.MinInt64, math.MaxInt64)
		s.Target = r.local("target")
	case *makeNumberRefStmt:
		r.numberRef(s)
	case *makeArrayStmt:
		s.Capacity = int32(r.integer("capacity", math.MinInt32, math.MaxInt32))
		s.Target = r.local("target")
	case *makeObjectStmt:
		s.Target = r.local("target")
	case *makeSetStmt:
		s.Target = r.local("target")
	case *equalStmt:
		s.A = r.operand("a")
		s.B = r.operand("b")
	case *notEqualStmt:
		s.A = r.operand("a")
		s.B = r.operand("b")
	case *isArrayStmt:
		s.Source = r.operand("source")
	case *isObjectStmt:
		s.Source = r.operand("source")
	case *isSetStmt:
		s.Source = r.operand("source")
	case *isDefinedStmt:
		s.Source = r.local("source")
	case *isUndefinedStmt:
		s.Source = r.local("source")
	case *arrayAppendStmt:
		s.Value = r.operand("value")
		s.Array = r.local("array")
	case *objectInsertStmt:
		s.Key = r.operand("key")
		s.Value = r.operand("value")
		s.Object = r.local("object")
	case *objectInsertOnceStmt:
		s.Key = r.operand("key")
		s.Value = r.operand("value")
		s.Object = r.local("object")
	case *objectMergeStmt:
		s.A = r.local("a")
		s.B = r.local("b")
		s.Target = r.local("target")
	case *setAddStmt:
		s.Value = r.operand("value")
		s.Set = r.local("set")
	case *withStmt:
		s.Local = r.local("local")
		s.Path = r.ints("path")
		s.Value = r.operand("value")
		s.Block = r.block("block")
	case *nopStmt:
	case *resultSetAddStmt:
		s.Value = r.local("value")
	}
}

// unsigned reads a non-negative integer up to hi; like encoding/json for
// unsigned fields, it refuses "-0".
//
//go:noinline
func (r rd) unsigned(name string, hi uint64) uint64 {
	v := r.Get(name)
	if v == nil {
		return 0
	}
	n, err := v.AsUint64(r.Path(name))
	if err == nil && n > hi {
		err = v.Fail(r.Path(name), "integer "+v.Str+" out of range")
	}
	if err != nil {
		r.Fail(err)
		return 0
	}
	return n
}

// numberRef reads the canonical "index" and the legacy "Index" that OPA
// writes next to it. OPA's reader prefers "index"; two different values
// are refused, since readers that prefer the other key would run another
// constant.
//
//go:noinline
func (r rd) numberRef(s *makeNumberRefStmt) {
	s.Target = r.local("target")
	canon, legacy := r.Get("index"), r.Get("Index")
	switch {
	case canon == nil && legacy == nil:
		r.FailMember("index", "MakeNumberRefStmt without index")
	case canon != nil:
		s.Index = int(r.intValue(canon, r.Path("index"), math.MinInt, math.MaxInt))
		if legacy != nil && r.Err() == nil {
			if old := int(r.intValue(legacy, r.Path("Index"), math.MinInt, math.MaxInt)); old != s.Index && r.Err() == nil {
				r.FailMember("Index", "MakeNumberRefStmt with index and Index that differ")
			}
		}
	default:
		s.Index = int(r.intValue(legacy, r.Path("Index"), math.MinInt, math.MaxInt))
	}
}

// operand reads {"type": "local"|"string_index"|"bool", "value": ...}; an
// absent operand stays zero, which validate reports as missing.
//
//go:noinline
func (r rd) operand(name string) operand {
	v := r.Get(name)
	if v == nil {
		return operand{}
	}
	op, err := decodeOperand(v, r.Path(name))
	r.Fail(err)
	return op
}

//go:noinline
func (r rd) operands(name string) []operand {
	es := r.elems(name)
	if es == nil {
		return nil
	}
	out := make([]operand, len(es))
	for i := range es {
		op, err := decodeOperand(&es[i], jsonx.Index(r.Path(name), i))
		r.Fail(err)
		out[i] = op
	}
	return out
}

func decodeOperand(v *jsonx.Value, path string) (operand, error) {
	o, err := v.AsObject(path)
	if err != nil {
		return operand{}, err
	}
	r := rd{o}
	r.Require("type", "value")
	kind := r.str("type")
	val := r.Get("value")
	if err := r.Err(); err != nil {
		return operand{}, err
	}
	var op operand
	switch kind {
	case "local":
		op.kind = opLocal
		op.local = local(r.intValue(val, r.Path("value"), math.MinInt, math.MaxInt))
	case "string_index":
		op.kind = opString
		op.index = int(r.intValue(val, r.Path("value"), math.MinInt, math.MaxInt))
	case "bool":
		op.kind = opBool
		b, err := val.AsBool(r.Path("value"))
		r.Fail(err)
		op.b = b
	default:
		r.FailMember("type", fmt.Sprintf("unrecognized operand type %q", kind))
	}
	if err := r.End(); err != nil {
		return operand{}, err
	}
	return op, nil
}
