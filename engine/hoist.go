package engine

// Literal collections. OPA's planner builds a literal such as
// {"eu-west-1", "us-east-1"} on every evaluation: a Make*Stmt followed by one
// insertion per element. When every element is a constant and nothing else
// in the function writes to that local, the compiler builds the value once,
// at Load, and the statements become a single assignment of the shared,
// immutable value (any later insertion would fail the ownership check in
// the evaluator rather than change it).

// localUse counts, per local of one function or plan, the statements that
// assign it and the statements that insert into the value it holds.
type localUse struct {
	writes  map[local]int
	inserts map[local]int
}

func countLocalUse(blocks []*block) localUse {
	u := localUse{writes: map[local]int{}, inserts: map[local]int{}}
	var walk func(b *block)
	walk = func(b *block) {
		if b == nil {
			return
		}
		for _, s := range b.Stmts {
			switch s := s.(type) {
			case *makeSetStmt:
				u.writes[s.Target]++
			case *makeArrayStmt:
				u.writes[s.Target]++
			case *makeObjectStmt:
				u.writes[s.Target]++
			case *assignVarStmt:
				u.writes[s.Target]++
			case *assignVarOnceStmt:
				u.writes[s.Target]++
			case *setAddStmt:
				u.inserts[s.Set]++
			case *arrayAppendStmt:
				u.inserts[s.Array]++
			case *objectInsertStmt:
				u.inserts[s.Object]++
			case *objectInsertOnceStmt:
				u.inserts[s.Object]++
			case *blockStmt:
				for _, bb := range s.Blocks {
					walk(bb)
				}
			case *scanStmt:
				walk(s.Block)
			case *notStmt:
				walk(s.Block)
			case *withStmt:
				walk(s.Block)
			}
		}
	}
	for _, b := range blocks {
		walk(b)
	}
	return u
}

func (c *compiler) constOperand(o operand) (Value, bool) {
	switch o.kind {
	case opString:
		return c.p.strings[o.index], true
	case opBool:
		return Bool(o.b), true
	}
	return nil, false
}

// hoistLiteral tries to fold stmts[i:] into one constant. It returns the
// value, its target local and the number of statements consumed (0: none).
func (c *compiler) hoistLiteral(stmts []stmt) (Value, local, int) {
	if c.use.writes == nil {
		return nil, 0, 0
	}
	var (
		target local
		val    Value
		add    func(s stmt) bool
	)
	switch s := stmts[0].(type) {
	case *makeSetStmt:
		set := &Set{}
		target, val = s.Target, set
		add = func(st stmt) bool {
			a, ok := st.(*setAddStmt)
			if !ok || a.Set != target {
				return false
			}
			v, ok := c.constOperand(a.Value)
			if ok {
				set.Add(v)
			}
			return ok
		}
	case *makeArrayStmt:
		arr := &Array{}
		target, val = s.Target, arr
		add = func(st stmt) bool {
			a, ok := st.(*arrayAppendStmt)
			if !ok || a.Array != target {
				return false
			}
			v, ok := c.constOperand(a.Value)
			if ok {
				arr.elems = append(arr.elems, v)
			}
			return ok
		}
	case *makeObjectStmt:
		obj := &Object{}
		target, val = s.Target, obj
		add = func(st stmt) bool {
			a, ok := st.(*objectInsertStmt)
			if !ok || a.Object != target {
				return false
			}
			k, ok1 := c.constOperand(a.Key)
			v, ok2 := c.constOperand(a.Value)
			if ok1 && ok2 {
				obj.Insert(k, v)
			}
			return ok1 && ok2
		}
	default:
		return nil, 0, 0
	}
	n := 1
	for n < len(stmts) && add(stmts[n]) {
		n++
	}
	if n == 1 || c.use.writes[target] != 1 || c.use.inserts[target] != n-1 {
		return nil, 0, 0
	}
	return val, target, n
}
