package engine

import (
	"fmt"
	"sort"
	"strings"
)

// Limits that keep a hostile plan from making Load or Eval allocate without
// bound. OPA's planner stays far below them for real policies.
const (
	maxLocal        = 1 << 16 // highest local index in one frame
	maxArrayCap     = 1 << 10 // MakeArrayStmt capacity hint is clamped to this
	maxBlockNesting = 1 << 10
)

// validator checks a decoded plan once, so that the compiled closures can
// index strings, locals and functions without re-checking at eval time.
type validator struct {
	p        *planPolicy
	funcs    map[string]int
	builtins map[string]*builtinSpec
	errs     []validationError
	maxLocal local // of the frame being validated
	calls    map[int][]int
	cur      int // index of the function being validated, -1 for plans
}

type validationError struct {
	msg string
	loc *Location
}

func (v *validator) errorf(loc *location, format string, args ...any) {
	e := validationError{msg: fmt.Sprintf(format, args...)}
	if loc != nil && loc.Row > 0 {
		e.loc = &Location{Row: loc.Row, Col: loc.Col}
		if files := v.p.Static.Files; loc.File >= 0 && loc.File < len(files) && files[loc.File] != nil {
			e.loc.File = files[loc.File].Value
		}
	}
	v.errs = append(v.errs, e)
}

// validate reports every problem it finds. frames receives, per function
// and then per plan, the number of locals the frame needs.
func validate(p *planPolicy, table map[string]*builtinSpec) (funcFrames, planFrames []int, err error) {
	if p.Static == nil {
		p.Static = &planStatic{}
	}
	if p.Plans == nil {
		p.Plans = &planPlans{}
	}
	if p.Funcs == nil {
		p.Funcs = &planFuncs{}
	}
	v := &validator{p: p, funcs: map[string]int{}, builtins: table, calls: map[int][]int{}}
	for i, s := range p.Static.Strings {
		if s == nil {
			v.errorf(nil, "static string %d is null", i)
		}
	}
	for i, s := range p.Static.Files {
		if s == nil {
			v.errorf(nil, "static file %d is null", i)
		}
	}
	for i, f := range p.Funcs.Funcs {
		if f == nil {
			v.errorf(nil, "function %d is null", i)
			continue
		}
		if _, dup := v.funcs[f.Name]; dup {
			v.errorf(nil, "function %q defined twice", f.Name)
		}
		v.funcs[f.Name] = i
	}
	seenPlans := map[string]bool{}
	for i, pl := range p.Plans.Plans {
		if pl == nil {
			v.errorf(nil, "plan %d is null", i)
			continue
		}
		if seenPlans[pl.Name] {
			v.errorf(nil, "plan %q defined twice", pl.Name)
		}
		seenPlans[pl.Name] = true
	}
	if len(v.errs) > 0 {
		return nil, nil, v.result()
	}

	funcFrames = make([]int, len(p.Funcs.Funcs))
	for i, f := range p.Funcs.Funcs {
		v.cur, v.maxLocal = i, localData
		if len(f.Params) == 0 {
			v.errorf(nil, "function %q has no parameters", f.Name)
		}
		for _, l := range f.Params {
			v.local(nil, l)
		}
		v.local(nil, f.Return)
		if len(f.Blocks) == 0 {
			v.errorf(nil, "function %q has no blocks", f.Name)
		}
		for _, b := range f.Blocks {
			v.block(b, 1, 0)
		}
		funcFrames[i] = int(v.maxLocal) + 1
	}
	planFrames = make([]int, len(p.Plans.Plans))
	for i, pl := range p.Plans.Plans {
		v.cur, v.maxLocal = -1, localData
		for _, b := range pl.Blocks {
			v.block(b, 1, 0)
		}
		planFrames[i] = int(v.maxLocal) + 1
	}
	v.checkAcyclic()
	return funcFrames, planFrames, v.result()
}

func (v *validator) result() error {
	if len(v.errs) == 0 {
		return nil
	}
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].msg < v.errs[j].msg })
	first := v.errs[0]
	msg := first.msg
	if len(v.errs) > 1 {
		msg = fmt.Sprintf("%s (and %d more)", msg, len(v.errs)-1)
	}
	// An unsupported builtin is the error a policy author can act on, so
	// it wins over structural problems.
	for _, e := range v.errs {
		if strings.HasPrefix(e.msg, "unsupported builtin") {
			return &Error{Code: CodeUnsupported, Message: e.msg, Location: e.loc}
		}
	}
	return &Error{Code: CodeInvalidPlan, Message: msg, Location: first.loc}
}

func (v *validator) local(loc *location, l local) {
	if l < 0 || l > maxLocal {
		v.errorf(loc, "local %d out of range", l)
		return
	}
	if l > v.maxLocal {
		v.maxLocal = l
	}
}

func (v *validator) operand(loc *location, o operand) {
	switch o.kind {
	case opLocal:
		v.local(loc, o.local)
	case opString:
		if o.index < 0 || o.index >= len(v.p.Static.Strings) {
			v.errorf(loc, "string index %d out of range", o.index)
		}
	case opBool:
	default:
		v.errorf(loc, "missing operand")
	}
}

// block checks one block. depth is the number of enclosing levels a
// BreakStmt may leave (its index must be below it).
func (v *validator) block(b *block, depth, nesting int) {
	if b == nil {
		v.errorf(nil, "null block")
		return
	}
	if nesting > maxBlockNesting {
		v.errorf(nil, "blocks nested deeper than %d", maxBlockNesting)
		return
	}
	for _, s := range b.Stmts {
		v.stmt(s, depth, nesting)
	}
}

func (v *validator) stmt(s stmt, depth, nesting int) {
	loc := s.loc()
	switch s := s.(type) {
	case *returnLocalStmt:
		if v.cur < 0 {
			v.errorf(loc, "ReturnLocalStmt outside a function")
		}
		v.local(loc, s.Source)
	case *callStmt:
		for _, a := range s.Args {
			v.operand(loc, a)
		}
		v.local(loc, s.Result)
		if fi, ok := v.funcs[s.Func]; ok {
			if n := len(v.p.Funcs.Funcs[fi].Params); n != len(s.Args) {
				v.errorf(loc, "call to %q with %d arguments, want %d", s.Func, len(s.Args), n)
			}
			if v.cur >= 0 {
				v.calls[v.cur] = append(v.calls[v.cur], fi)
			}
			return
		}
		spec, ok := v.builtins[s.Func]
		if !ok {
			v.errorf(loc, "unsupported builtin %q", s.Func)
			return
		}
		if spec.arity >= 0 && spec.arity != len(s.Args) {
			v.errorf(loc, "builtin %q called with %d arguments, want %d", s.Func, len(s.Args), spec.arity)
		}
	case *callDynamicStmt:
		for _, a := range s.Args {
			v.local(loc, a)
		}
		v.local(loc, s.Result)
		for _, p := range s.Path {
			v.operand(loc, p)
		}
		if depth < 4 {
			v.errorf(loc, "CallDynamicStmt needs 4 enclosing blocks, has %d", depth)
		}
	case *blockStmt:
		for _, b := range s.Blocks {
			v.block(b, depth+1, nesting+1)
		}
	case *breakStmt:
		if int64(s.Index) >= int64(depth) {
			v.errorf(loc, "BreakStmt index %d leaves the function or plan (depth %d)", s.Index, depth)
		}
	case *dotStmt:
		v.operand(loc, s.Source)
		v.operand(loc, s.Key)
		v.local(loc, s.Target)
	case *lenStmt:
		v.operand(loc, s.Source)
		v.local(loc, s.Target)
	case *scanStmt:
		v.local(loc, s.Source)
		v.local(loc, s.Key)
		v.local(loc, s.Value)
		// A scan body sits inside a loop inside a block, as in OPA's wasm
		// backend: break 0 continues, break 1 ends the scan.
		v.block(s.Block, depth+2, nesting+1)
	case *notStmt:
		v.block(s.Block, depth+1, nesting+1)
	case *assignIntStmt:
		v.local(loc, s.Target)
	case *assignVarStmt:
		v.operand(loc, s.Source)
		v.local(loc, s.Target)
	case *assignVarOnceStmt:
		v.operand(loc, s.Source)
		v.local(loc, s.Target)
	case *resetLocalStmt:
		v.local(loc, s.Target)
	case *makeNullStmt:
		v.local(loc, s.Target)
	case *makeNumberIntStmt:
		v.local(loc, s.Target)
	case *makeNumberRefStmt:
		v.local(loc, s.Target)
		if s.Index < 0 || s.Index >= len(v.p.Static.Strings) {
			v.errorf(loc, "number string index %d out of range", s.Index)
		} else if v.p.Static.Strings[s.Index] != nil {
			if _, ok := parseRegoNumber(v.p.Static.Strings[s.Index].Value); !ok {
				v.errorf(loc, "string constant %d is not a number", s.Index)
			}
		}
	case *makeArrayStmt:
		v.local(loc, s.Target)
	case *makeObjectStmt:
		v.local(loc, s.Target)
	case *makeSetStmt:
		v.local(loc, s.Target)
	case *equalStmt:
		v.operand(loc, s.A)
		v.operand(loc, s.B)
	case *notEqualStmt:
		v.operand(loc, s.A)
		v.operand(loc, s.B)
	case *isArrayStmt:
		v.operand(loc, s.Source)
	case *isObjectStmt:
		v.operand(loc, s.Source)
	case *isSetStmt:
		v.operand(loc, s.Source)
	case *isDefinedStmt:
		v.local(loc, s.Source)
	case *isUndefinedStmt:
		v.local(loc, s.Source)
	case *arrayAppendStmt:
		v.operand(loc, s.Value)
		v.local(loc, s.Array)
	case *objectInsertStmt:
		v.operand(loc, s.Key)
		v.operand(loc, s.Value)
		v.local(loc, s.Object)
	case *objectInsertOnceStmt:
		v.operand(loc, s.Key)
		v.operand(loc, s.Value)
		v.local(loc, s.Object)
	case *objectMergeStmt:
		v.local(loc, s.A)
		v.local(loc, s.B)
		v.local(loc, s.Target)
	case *setAddStmt:
		v.operand(loc, s.Value)
		v.local(loc, s.Set)
	case *withStmt:
		v.local(loc, s.Local)
		v.operand(loc, s.Value)
		for _, i := range s.Path {
			if i < 0 || i >= len(v.p.Static.Strings) {
				v.errorf(loc, "with path string index %d out of range", i)
			}
		}
		v.block(s.Block, depth+1, nesting+1)
	case *nopStmt:
	case *resultSetAddStmt:
		if v.cur >= 0 {
			v.errorf(loc, "ResultSetAddStmt inside a function")
		}
		v.local(loc, s.Value)
	default:
		v.errorf(loc, "unknown statement %T", s)
	}
}

// checkAcyclic rejects cycles of CallStmt edges: Rego has no recursion.
// CallDynamicStmt targets are only known at run time (and OPA's planner
// emits dynamic calls that could name their own function, though they never
// do so at run time), so those are bounded by maxCallDepth during Eval.
func (v *validator) checkAcyclic() {
	funcs := v.p.Funcs.Funcs
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, len(funcs))
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		for _, j := range v.calls[i] {
			switch color[j] {
			case grey:
				v.errorf(nil, "function %q is recursive", funcs[j].Name)
				return false
			case white:
				if !visit(j) {
					return false
				}
			}
		}
		color[i] = black
		return true
	}
	for i := range funcs {
		if color[i] == white && !visit(i) {
			return
		}
	}
}
