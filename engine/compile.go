package engine

import (
	"fmt"
	"strconv"
)

// Control codes returned by compiled statements and blocks. -1 means "carry
// on with the next statement"; n >= 0 means "leave n+1 enclosing blocks",
// where 0 is the block holding the statement (a failed condition is a
// break 0). Codes at or above unwind pass through every level unchanged.
const (
	cont       = -1
	unwind     = 1 << 28
	codeReturn = unwind + 1 // ReturnLocalStmt: leave the function
	codeAbort  = unwind + 2 // an error is in evalState.err
)

type instr func(ev *evalState, f []Value) int

// getter reads an operand: a constant or a local of the current frame.
type getter struct {
	konst Value
	local int
}

func (g getter) get(f []Value) Value {
	if g.konst != nil {
		return g.konst
	}
	return f[g.local]
}

type compiledFunc struct {
	name    string
	index   int
	params  []int
	ret     int
	nlocals int
	memo    bool // rules without arguments: cached per eval, as OPA's wasm does
	body    []op // all blocks, see runBlock
	nblocks int  // compiled top-level blocks (a dispatch is one)
	path    []string
}

type compiledPlan struct {
	name    string
	nlocals int
	blocks  [][]op
}

// compiler turns a validated plan into closures.
type compiler struct {
	p       *Policy
	plan    *planPolicy
	funcIdx map[string]int
	use     localUse // of the function or plan being compiled
}

//go:noinline
func (c *compiler) operand(o operand) getter {
	switch o.kind {
	case opString:
		return getter{konst: c.p.strings[o.index]}
	case opBool:
		return getter{konst: Bool(o.b)}
	}
	return getter{local: int(o.local)}
}

//go:noinline
func (c *compiler) loc(l *location) *Location {
	if l == nil || (l.Row == 0 && l.Col == 0) {
		return nil
	}
	out := &Location{Row: l.Row, Col: l.Col}
	if l.File >= 0 && l.File < len(c.p.files) {
		out.File = c.p.files[l.File]
	}
	return out
}

// ops compiles a block's statements; runBlock executes them.
func (c *compiler) ops(b *block) []op {
	ops := make([]op, 0, len(b.Stmts))
	for i := 0; i < len(b.Stmts); i++ {
		s := b.Stmts[i]
		if _, ok := s.(*nopStmt); ok {
			continue
		}
		if v, target, n := c.hoistLiteral(b.Stmts[i:]); n > 0 {
			ops = append(ops, op{code: opConst, t: int(target), k: v})
			i += n - 1
			continue
		}
		if o, ok := c.simpleOp(s); ok {
			ops = append(ops, o)
			continue
		}
		ops = append(ops, op{code: opInstr, fn: c.stmt(s)})
	}
	return ops
}

func (c *compiler) blocks(bs []*block) [][]op {
	out := make([][]op, len(bs))
	for i, b := range bs {
		out[i] = c.ops(b)
	}
	return out
}

func (c *compiler) stmt(s stmt) instr {
	if o, ok := c.simpleOp(s); ok {
		return opFunc(o)
	}
	switch s := s.(type) {
	case *callStmt:
		return c.call(s)
	case *callDynamicStmt:
		return c.callDynamic(s)
	case *blockStmt:
		blocks := c.blocks(s.Blocks)
		return func(ev *evalState, f []Value) int {
			for _, b := range blocks {
				r := runBlock(ev, f, b)
				if r <= 0 {
					continue
				}
				if r >= unwind {
					return r
				}
				return r - 1
			}
			return cont
		}
	case *dotStmt:
		// Strings and booleans have no members (dots on locals are ops).
		return func(*evalState, []Value) int { return 0 }
	case *equalStmt:
		// Two constants (comparisons with a local are ops).
		if Equal(c.operand(s.A).konst, c.operand(s.B).konst) {
			return func(*evalState, []Value) int { return cont }
		}
		return func(*evalState, []Value) int { return 0 }
	case *notEqualStmt:
		if Equal(c.operand(s.A).konst, c.operand(s.B).konst) {
			return func(*evalState, []Value) int { return 0 }
		}
		return func(*evalState, []Value) int { return cont }
	case *lenStmt:
		src, target := c.operand(s.Source), int(s.Target)
		return func(ev *evalState, f []Value) int {
			x := src.get(f)
			if x == nil {
				return 0
			}
			f[target] = Int(int64(valueLen(x)))
			return cont
		}
	case *scanStmt:
		return c.scan(s)
	case *notStmt:
		body := c.ops(s.Block)
		return func(ev *evalState, f []Value) int {
			r := runBlock(ev, f, body)
			switch {
			case r == cont:
				return 0
			case r == 0:
				return cont
			case r >= unwind:
				return r
			}
			return r - 1
		}
	case *makeArrayStmt:
		capacity, target := int(s.Capacity), int(s.Target)
		capacity = max(0, min(capacity, maxArrayCap))
		return func(ev *evalState, f []Value) int {
			f[target] = &Array{elems: make([]Value, 0, capacity), gen: ev.gen}
			return cont
		}
	case *makeObjectStmt:
		target := int(s.Target)
		return func(ev *evalState, f []Value) int {
			f[target] = newSmallObject(ev.gen)
			return cont
		}
	case *makeSetStmt:
		target := int(s.Target)
		return func(ev *evalState, f []Value) int {
			f[target] = newSmallSet(ev.gen)
			return cont
		}
	case *isArrayStmt:
		return c.isKind(s.Source, rankArray)
	case *isObjectStmt:
		return c.isKind(s.Source, rankObject)
	case *isSetStmt:
		return c.isKind(s.Source, rankSet)
	case *arrayAppendStmt:
		val, arr, loc := c.operand(s.Value), int(s.Array), c.loc(&s.location)
		return func(ev *evalState, f []Value) int {
			a, ok := f[arr].(*Array)
			v := val.get(f)
			if !ok || a.gen != ev.gen || v == nil {
				return ev.fail(internalErr(loc, "ArrayAppendStmt target is not an array built by this evaluation"))
			}
			a.elems = append(a.elems, v)
			return cont
		}
	case *objectInsertStmt:
		key, val, obj, loc := c.operand(s.Key), c.operand(s.Value), int(s.Object), c.loc(&s.location)
		return func(ev *evalState, f []Value) int {
			o, ok := f[obj].(*Object)
			k, v := key.get(f), val.get(f)
			if !ok || o.gen != ev.gen || k == nil || v == nil {
				return ev.fail(internalErr(loc, "ObjectInsertStmt target is not an object built by this evaluation"))
			}
			o.Insert(k, v)
			return cont
		}
	case *objectInsertOnceStmt:
		key, val, obj, loc := c.operand(s.Key), c.operand(s.Value), int(s.Object), c.loc(&s.location)
		return func(ev *evalState, f []Value) int {
			o, ok := f[obj].(*Object)
			k, v := key.get(f), val.get(f)
			if !ok || o.gen != ev.gen || k == nil || v == nil {
				return ev.fail(internalErr(loc, "ObjectInsertOnceStmt target is not an object built by this evaluation"))
			}
			if old, found := o.GetValue(k); found {
				if Equal(old, v) {
					return cont
				}
				return ev.fail(&Error{Code: CodeConflictError, Message: "object keys must be unique", Location: loc})
			}
			o.Insert(k, v)
			return cont
		}
	case *objectMergeStmt:
		a, b, target := int(s.A), int(s.B), int(s.Target)
		return func(ev *evalState, f []Value) int {
			f[target] = mergeValues(f[a], f[b])
			return cont
		}
	case *setAddStmt:
		val, set, loc := c.operand(s.Value), int(s.Set), c.loc(&s.location)
		return func(ev *evalState, f []Value) int {
			st, ok := f[set].(*Set)
			v := val.get(f)
			if !ok || st.gen != ev.gen || v == nil {
				return ev.fail(internalErr(loc, "SetAddStmt target is not a set built by this evaluation"))
			}
			st.Add(v)
			return cont
		}
	case *withStmt:
		return c.with(s)
	case *resultSetAddStmt:
		src := int(s.Value)
		return func(ev *evalState, f []Value) int {
			if v := f[src]; v != nil {
				ev.results.Add(v)
			}
			return cont
		}
	}
	// Unreachable: validate rejects unknown statements.
	return func(ev *evalState, f []Value) int {
		return ev.fail(internalErr(nil, fmt.Sprintf("unknown statement %T", s)))
	}
}

// Objects and sets built by plans are usually small (rule results, literal
// sets); allocating the first few slots together with the header turns
// three or four allocations into one.
const smallCollection = 4

type smallObject struct {
	o   Object
	buf [smallCollection]objectEntry
}

type smallSet struct {
	s   Set
	buf [smallCollection]Value
}

func newSmallObject(gen uint64) *Object {
	b := &smallObject{}
	b.o.entries, b.o.gen = b.buf[:0], gen
	return &b.o
}

func newSmallSet(gen uint64) *Set {
	b := &smallSet{}
	b.s.elems, b.s.gen = b.buf[:0], gen
	return &b.s
}

// maxCallDepth bounds function call nesting. Real plans nest as deep as
// their rules refer to each other; the bound only stops hostile plans from
// exhausting the goroutine stack through CallDynamicStmt cycles.
const maxCallDepth = 2048

func itoa(i int) string { return strconv.Itoa(i) }

//go:noinline
func internalErr(loc *Location, msg string) *Error {
	return &Error{Code: CodeInternalError, Message: msg, Location: loc}
}

//go:noinline
func (c *compiler) isKind(o operand, rank int) instr {
	if o.kind != opLocal {
		return func(*evalState, []Value) int { return 0 }
	}
	src := int(o.local)
	return func(ev *evalState, f []Value) int {
		if v := f[src]; v == nil || v.rank() != rank {
			return 0
		}
		return cont
	}
}

// scan iterates a collection. The body's own level is the loop: break 0
// continues with the next element, break 1 ends the scan.
func (c *compiler) scan(s *scanStmt) instr {
	src, key, val := int(s.Source), int(s.Key), int(s.Value)
	body := c.ops(s.Block)
	after := func(r int) (int, bool) {
		switch {
		case r <= 0:
			return 0, false
		case r >= unwind:
			return r, true
		case r == 1:
			return cont, true
		}
		return r - 2, true
	}
	return func(ev *evalState, f []Value) int {
		switch x := f[src].(type) {
		case *Array:
			elems := x.elems
			for i, v := range elems {
				if ev.tick() {
					return codeAbort
				}
				f[key], f[val] = Int(int64(i)), v
				if r, stop := after(runBlock(ev, f, body)); stop {
					return r
				}
			}
		case *Object:
			entries := x.entries
			for _, e := range entries {
				if ev.tick() {
					return codeAbort
				}
				f[key], f[val] = e.key, e.value
				if r, stop := after(runBlock(ev, f, body)); stop {
					return r
				}
			}
		case *Set:
			elems := x.elems
			for _, v := range elems {
				if ev.tick() {
					return codeAbort
				}
				f[key], f[val] = v, v
				if r, stop := after(runBlock(ev, f, body)); stop {
					return r
				}
			}
		}
		return cont
	}
}

func (c *compiler) with(s *withStmt) instr {
	target, val := int(s.Local), c.operand(s.Value)
	path := make([]Value, len(s.Path))
	for i, idx := range s.Path {
		path[i] = c.p.strings[idx]
	}
	body := c.ops(s.Block)
	return func(ev *evalState, f []Value) int {
		v := val.get(f)
		if v == nil && len(path) > 0 {
			return 0
		}
		// With an empty path an undefined value is allowed: the planner
		// uses it to restore an undefined input inside nested withs.
		old := f[target]
		f[target] = upsert(old, path, v)
		ev.pushMemo()
		r := runBlock(ev, f, body)
		ev.popMemo()
		f[target] = old
		switch {
		case r == cont:
			return cont
		case r >= unwind:
			return r
		case r == 0:
			return 0
		}
		return r - 1
	}
}

// upsert returns a copy of base with v stored at path, creating objects
// along the way; base itself is never modified.
func upsert(base Value, path []Value, v Value) Value {
	if len(path) == 0 {
		return v
	}
	obj, _ := base.(*Object)
	out := &Object{}
	if obj != nil {
		out.entries = append(make([]objectEntry, 0, len(obj.entries)+1), obj.entries...)
	}
	var child Value
	if obj != nil {
		child, _ = obj.GetValue(path[0])
	}
	out.Insert(path[0], upsert(child, path[1:], v))
	return out
}

// call compiles a builtin call; simpleOp has taken the plan-function ones.
func (c *compiler) call(s *callStmt) instr {
	args := make([]getter, len(s.Args))
	for i, a := range s.Args {
		args[i] = c.operand(a)
	}
	result := int(s.Result)
	spec := builtinTable[s.Func]
	impl := spec.fn
	if spec.prepare != nil {
		consts := make([]Value, len(args))
		for i, a := range args {
			consts[i] = a.konst
		}
		if prepared := spec.prepare(c.p, consts); prepared != nil {
			impl = prepared
		}
	}
	name, loc := s.Func, c.loc(&s.location)
	n := len(args)
	return func(ev *evalState, f []Value) int {
		argv := ev.argv[:n]
		for i, a := range args {
			v := a.get(f)
			if v == nil {
				return 0
			}
			argv[i] = v
		}
		// argv is cleared once per evaluation (release), not per call:
		// clear is three runtime calls on wasm.
		v, err := impl(ev, argv)
		if err != nil {
			return ev.builtinError(name, loc, err)
		}
		if v == nil {
			return 0
		}
		f[result] = v
		return cont
	}
}

// callDynamic looks a function up by its data path. An unknown path is a
// break 0 (the planner then falls back to plain data); an undefined result
// leaves the planner's surrounding structure (break 3), as in OPA's wasm.
func (c *compiler) callDynamic(s *callDynamicStmt) instr {
	path := make([]getter, len(s.Path))
	for i, o := range s.Path {
		path[i] = c.operand(o)
	}
	args := make([]operand, len(s.Args))
	for i, l := range s.Args {
		args[i] = operand{kind: opLocal, local: l}
	}
	result, loc := int(s.Result), c.loc(&s.location)
	p := c.p
	callers := make(map[int]instr)
	for i, fn := range c.plan.Funcs.Funcs {
		if len(fn.Path) > 0 && len(fn.Params) == len(args) {
			callers[i] = opFunc(op{code: opCallFunc, call: c.callSite(i, args, result)})
		}
	}
	return func(ev *evalState, f []Value) int {
		node := p.dyn
		for _, g := range path {
			seg, ok := g.get(f).(stringValue)
			if !ok || node == nil {
				return 0
			}
			node = node.children[string(seg)]
		}
		if node == nil || node.fn < 0 {
			return 0
		}
		call, ok := callers[node.fn]
		if !ok {
			fn := p.funcs[node.fn]
			return ev.fail(internalErr(loc, fmt.Sprintf("dynamic call to %q with %d arguments, want %d", fn.name, len(args), len(fn.params))))
		}
		r := call(ev, f)
		if r == 0 {
			return 3
		}
		return r
	}
}

// dynNode is a trie of function paths for CallDynamicStmt.
type dynNode struct {
	children map[string]*dynNode
	fn       int
}

func buildDynTrie(funcs []*compiledFunc) *dynNode {
	root := &dynNode{children: map[string]*dynNode{}, fn: -1}
	for _, fn := range funcs {
		if len(fn.path) == 0 {
			continue
		}
		n := root
		for _, seg := range fn.path {
			next := n.children[seg]
			if next == nil {
				next = &dynNode{children: map[string]*dynNode{}, fn: -1}
				n.children[seg] = next
			}
			n = next
		}
		n.fn = fn.index
	}
	return root
}

// member implements DotStmt: object keys, array indexes and set elements.
func member(x, k Value) Value {
	switch x := x.(type) {
	case *Object:
		v, _ := x.GetValue(k)
		return v
	case *Array:
		n, ok := k.(*numberValue)
		if !ok {
			return nil
		}
		i, ok := n.int64()
		if !ok || i < 0 || i >= int64(len(x.elems)) {
			return nil
		}
		return x.elems[i]
	case *Set:
		if i, found := x.find(k); found {
			return x.elems[i]
		}
	}
	return nil
}

func valueLen(x Value) int {
	switch x := x.(type) {
	case *Array:
		return len(x.elems)
	case *Object:
		return len(x.entries)
	case *Set:
		return len(x.elems)
	case stringValue:
		return runeCount(string(x))
	}
	return 0
}

// mergeValues implements ObjectMergeStmt like OPA's opa_value_merge: keys
// of a win, nested objects merge recursively, b fills in missing keys.
func mergeValues(a, b Value) Value {
	if a == nil {
		return b
	}
	ao, ok1 := a.(*Object)
	bo, ok2 := b.(*Object)
	if !ok1 || !ok2 {
		return a
	}
	out := &Object{entries: make([]objectEntry, 0, len(ao.entries)+len(bo.entries))}
	for _, e := range ao.entries {
		if other, ok := bo.GetValue(e.key); ok {
			out.Insert(e.key, mergeValues(e.value, other))
		} else {
			out.Insert(e.key, e.value)
		}
	}
	for _, e := range bo.entries {
		if _, ok := ao.GetValue(e.key); !ok {
			out.Insert(e.key, e.value)
		}
	}
	return out
}
