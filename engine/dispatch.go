package engine

// Guard dispatch: the rules of a policy set that belong to one tool all
// start with the same test, `tool_name == "<tool>"`, and OPA plans each
// such rule as one block of the rule's function:
//
//	ResetLocalStmt T
//	CallStmt      tool_name(input, data) -> R
//	EqualStmt     R == "<tool>"
//	...           the rest of the rule
//
// Run one after the other, every block of every tool is entered and its
// guard compared on every evaluation, so the cost of a decision grows with
// the number of tools in the set although only one tool's rules can hold.
// A run of consecutive blocks with the same guard call is compiled instead
// into one instruction that calls the guard once and runs only the blocks
// whose constant equals its value, in their original order.
//
// The result is the same as running the blocks one by one:
//   - the guard is a rule without arguments (memoised per evaluation), so
//     calling it once where the first block would call it first gives the
//     same value, the same error and the same memo;
//   - a skipped block would have written only T (reset) and R (the same
//     value) before its comparison failed, and every block writes both
//     before reading them, so the skipped writes are invisible except
//     after the last block of the run: that state is restored;
//   - at function level, the codes of a block other than return and abort
//     are dropped (see evalState.run), and so they are here.

// guardOf describes the guard prefix of a block, if it has one.
type guardOf struct {
	reset  local  // T
	fn     string // the guard rule's function
	args   [2]operand
	result local // R
	value  string
}

func (c *compiler) guard(b *block) (guardOf, bool) {
	if len(b.Stmts) < 3 {
		return guardOf{}, false
	}
	reset, ok := b.Stmts[0].(*resetLocalStmt)
	if !ok {
		return guardOf{}, false
	}
	call, ok := b.Stmts[1].(*callStmt)
	if !ok || len(call.Args) != 2 {
		return guardOf{}, false
	}
	fi, ok := c.funcIdx[call.Func]
	if !ok || !c.p.funcs[fi].memo {
		return guardOf{}, false
	}
	if call.Result == reset.Target {
		return guardOf{}, false
	}
	eq, ok := b.Stmts[2].(*equalStmt)
	if !ok {
		return guardOf{}, false
	}
	x, y := eq.A, eq.B
	if x.kind == opString {
		x, y = y, x
	}
	if x.kind != opLocal || x.local != call.Result || y.kind != opString {
		return guardOf{}, false
	}
	return guardOf{reset: reset.Target, fn: call.Func, args: [2]operand{call.Args[0], call.Args[1]},
		result: call.Result, value: string(c.p.strings[y.index].(stringValue))}, true
}

func (g guardOf) sameCall(h guardOf) bool {
	return g.reset == h.reset && g.fn == h.fn && g.args == h.args && g.result == h.result
}

// minDispatchRun is the shortest run worth an instruction of its own.
const minDispatchRun = 4

// funcBody compiles a function's top-level blocks, dispatching runs of
// guarded blocks, into one body for runBlock. It also returns the number
// of blocks compiled.
func (c *compiler) funcBody(bs []*block) ([]op, int) {
	blocks := c.funcBlocks(bs)
	var body []op
	for _, b := range blocks {
		next := len(body) + len(b)
		for _, o := range b {
			o.next = next
			body = append(body, o)
		}
	}
	return body, len(blocks)
}

func (c *compiler) funcBlocks(bs []*block) [][]op {
	var out [][]op
	for i := 0; i < len(bs); {
		g, ok := c.guard(bs[i])
		guards := []guardOf{g}
		for j := i + 1; ok && j < len(bs); j++ {
			h, ok := c.guard(bs[j])
			if !ok || !g.sameCall(h) {
				break
			}
			guards = append(guards, h)
		}
		if !ok || len(guards) < minDispatchRun {
			out = append(out, c.ops(bs[i]))
			i++
			continue
		}
		out = append(out, []op{{code: opInstr, fn: c.dispatch(bs[i:i+len(guards)], guards)}})
		i += len(guards)
	}
	return out
}

// dispatch compiles a run of blocks whose guards (one per block, the same
// call) funcBlocks has read.
func (c *compiler) dispatch(bs []*block, guards []guardOf) instr {
	g := guards[0]
	call := c.stmt(bs[0].Stmts[1])
	byValue := map[string][]int{}
	compiled := make([][]op, len(bs))
	for i, b := range bs {
		byValue[guards[i].value] = append(byValue[guards[i].value], i)
		compiled[i] = c.ops(b)
	}
	last := len(bs) - 1
	reset, result := int(g.reset), int(g.result)
	return func(ev *evalState, f []Value) int {
		switch r := call(ev, f); {
		case r == codeAbort:
			return r
		case r != cont:
			// Undefined: every block would stop at its call, after its
			// reset.
			f[reset] = nil
			return cont
		}
		v := f[result]
		s, ok := v.(stringValue)
		ran := -1
		if ok {
			for _, i := range byValue[string(s)] {
				ran = i
				switch r := runBlock(ev, f, compiled[i]); r {
				case codeReturn, codeAbort:
					return r
				}
			}
		}
		if ran != last {
			// As the last block leaves them when its comparison fails.
			f[reset] = nil
			f[result] = v
		}
		return cont
	}
}
