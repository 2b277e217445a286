package engine

// The statements that plans execute most often (moves between locals,
// member lookups, comparisons, definedness tests, calls of plan functions)
// are decoded by the block loop itself instead of each being a closure:
// on wasm every call, and an indirect one most of all, costs far more
// than a switch, and a decision runs about a thousand statements. Every
// other statement is an opInstr holding its closure.

type opCode uint8

const (
	opInstr       opCode = iota // fn(ev, f)
	opAssign                    // f[t] = f[a]
	opConst                     // f[t] = k
	opReset                     // f[t] = nil
	opDot                       // f[t] = member(f[a], key), key = k or f[b]
	opEqual                     // f[a] == y, y = k or f[b]
	opNotEqual                  // f[a] != y
	opIsDefined                 // f[a] != nil
	opIsUndefined               // f[a] == nil
	opAssignOnce                // f[t] = y once, y = k or f[a]
	opReturn                    // return f[a]
	opBreak                     // leave a+1 blocks
	opCallFunc                  // call
)

// op is one compiled statement. A nil k means the operand is the local
// named by the field beside it.
type op struct {
	code    opCode
	a, b, t int
	next    int // in a function body: where the next block starts
	k       Value
	fn      instr
	call    *callSite
	loc     *Location
}

// callSite is a CallStmt of a plan function.
type callSite struct {
	fi     int
	fn     *compiledFunc
	args   []getter
	result int
}

// runBlock executes one block and returns its control code. In a
// function body, which is all of the function's blocks in one slice, a
// failing statement carries on at the next block (op.next) rather than
// returning: one call per function instead of one per block.
func runBlock(ev *evalState, f []Value, ops []op) int {
	for i := 0; i < len(ops); i++ {
		o := &ops[i]
		var r int // the code when the statement does not carry on
		switch o.code {
		case opAssign:
			f[o.t] = f[o.a]
			continue
		case opDot:
			x, k := f[o.a], o.k
			if k == nil {
				k = f[o.b]
			}
			if x != nil && k != nil {
				if v := member(x, k); v != nil {
					f[o.t] = v
					continue
				}
			}
		case opReset:
			f[o.t] = nil
			continue
		case opNotEqual:
			x, y := f[o.a], o.k
			if y == nil {
				y = f[o.b]
			}
			if x != nil && y != nil && !Equal(x, y) {
				continue
			}
		case opAssignOnce:
			v := o.k
			if v == nil {
				v = f[o.a]
			}
			if old := f[o.t]; old != nil {
				if v != nil && Equal(old, v) {
					continue
				}
				return ev.fail(conflictErr(o.loc))
			}
			f[o.t] = v
			continue
		case opCallFunc:
			cs := o.call
			if cs.fn.memo {
				if m := &ev.memo[len(ev.memo)-1][cs.fi]; m.done {
					if m.v != nil {
						f[cs.result] = m.v
						continue
					}
					break
				}
			}
			if r = ev.callSlow(cs, f); r == cont {
				continue
			}
		case opIsDefined:
			if f[o.a] != nil {
				continue
			}
		case opIsUndefined:
			if f[o.a] == nil {
				continue
			}
		case opEqual:
			x, y := f[o.a], o.k
			if y == nil {
				y = f[o.b]
			}
			if x != nil && y != nil && Equal(x, y) {
				continue
			}
		case opConst:
			f[o.t] = o.k
			continue
		case opReturn:
			ev.ret = f[o.a]
			return codeReturn
		case opBreak:
			r = o.a
		default:
			if r = o.fn(ev, f); r == cont {
				continue
			}
		}
		if o.next == 0 || r >= unwind {
			return r
		}
		i = o.next - 1
	}
	return cont
}

// opFunc runs one op where a closure is needed (a dispatch's guard call,
// a dynamic call), so the op's semantics live in runBlock alone.
//
//go:noinline
func opFunc(o op) instr {
	ops := []op{o}
	return func(ev *evalState, f []Value) int { return runBlock(ev, f, ops) }
}

//go:noinline
func conflictErr(loc *Location) *Error {
	return &Error{Code: CodeConflictError, Message: "complete rules must not produce multiple outputs", Location: loc}
}

//go:noinline
func recursionErr(fn *compiledFunc) *Error {
	return &Error{Code: CodeRecursionError, Message: "function calls nested deeper than " + itoa(maxCallDepth) + ": " + fn.name}
}

// callSlow calls a plan function whose result is not memoised yet.
func (ev *evalState) callSlow(cs *callSite, f []Value) int {
	fn := cs.fn
	if ev.tick() {
		return codeAbort
	}
	if ev.depth >= maxCallDepth {
		return ev.fail(recursionErr(fn))
	}
	ev.depth++
	frame := ev.pushFrame(fn.nlocals)
	for i, a := range cs.args {
		frame[fn.params[i]] = a.get(f)
	}
	var v Value
	switch runBlock(ev, frame, fn.body) {
	case codeReturn:
		v, ev.ret = ev.ret, nil
	case codeAbort:
	default:
		v = frame[fn.ret]
	}
	ev.popFrame(fn.nlocals)
	ev.depth--
	if ev.err != nil {
		return codeAbort
	}
	if fn.memo {
		ev.memoTop()[cs.fi] = memoEntry{done: true, v: v}
	}
	if v == nil {
		return 0
	}
	f[cs.result] = v
	return cont
}

// simpleOp compiles s into a decoded op, or reports false. (One op
// filled in field by field keeps this small in the wasm module.)
func (c *compiler) simpleOp(s stmt) (op, bool) {
	var o op
	switch s := s.(type) {
	case *assignVarStmt:
		o.code, o.t = opAssign, int(s.Target)
		c.setOperand(&o, s.Source)
		if o.k != nil {
			o.code = opConst
		}
	case *dotStmt:
		if s.Source.kind == opLocal {
			o.code, o.a, o.t = opDot, int(s.Source.local), int(s.Target)
			key := c.operand(s.Key)
			o.b, o.k = key.local, key.konst
		}
	case *resetLocalStmt:
		o.code, o.t = opReset, int(s.Target)
	case *equalStmt:
		c.compareOp(&o, opEqual, s.A, s.B)
	case *notEqualStmt:
		c.compareOp(&o, opNotEqual, s.A, s.B)
	case *isDefinedStmt:
		o.code, o.a = opIsDefined, int(s.Source)
	case *isUndefinedStmt:
		o.code, o.a = opIsUndefined, int(s.Source)
	case *assignVarOnceStmt:
		o.code, o.t, o.loc = opAssignOnce, int(s.Target), c.loc(&s.location)
		c.setOperand(&o, s.Source)
	case *returnLocalStmt:
		o.code, o.a = opReturn, int(s.Source)
	case *breakStmt:
		o.code, o.a = opBreak, int(s.Index)
	case *makeNumberRefStmt:
		n, _ := parseRegoNumber(c.plan.Static.Strings[s.Index].Value)
		o.code, o.t, o.k = opConst, int(s.Target), n
	case *assignIntStmt:
		o.code, o.t, o.k = opConst, int(s.Target), Int(s.Value)
	case *makeNumberIntStmt:
		o.code, o.t, o.k = opConst, int(s.Target), Int(s.Value)
	case *makeNullStmt:
		o.code, o.t, o.k = opConst, int(s.Target), valNull
	case *callStmt:
		if fi, ok := c.funcIdx[s.Func]; ok {
			o.code, o.call = opCallFunc, c.callSite(fi, s.Args, int(s.Result))
		}
	}
	return o, o.code != opInstr
}

// setOperand sets o.a or o.k to x.
func (c *compiler) setOperand(o *op, x operand) {
	g := c.operand(x)
	o.a, o.k = g.local, g.konst
}

// compareOp compiles EqualStmt and NotEqualStmt with at least one local
// operand (equality is symmetric, so a constant goes second).
func (c *compiler) compareOp(o *op, code opCode, a, b operand) {
	if a.kind != opLocal {
		a, b = b, a
	}
	if a.kind == opLocal {
		y := c.operand(b)
		o.code, o.a, o.b, o.k = code, int(a.local), y.local, y.konst
	}
}

func (c *compiler) callSite(fi int, args []operand, result int) *callSite {
	cs := &callSite{fi: fi, fn: c.p.funcs[fi], args: make([]getter, len(args)), result: result}
	for i, a := range args {
		cs.args[i] = c.operand(a)
	}
	return cs
}
