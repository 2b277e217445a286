package engine

func bEqual(_ *evalState, args []Value) (Value, error) {
	return Bool(Equal(args[0], args[1])), nil
}

func bNotEqual(_ *evalState, args []Value) (Value, error) {
	return Bool(!Equal(args[0], args[1])), nil
}

// cmpBuiltin orders any two values with OPA's total order, so "a" < 1 is
// false and [1] > "z" is true, exactly as in topdown.
//
//go:noinline
func cmpBuiltin(ok func(int) bool) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		return Bool(ok(Compare(args[0], args[1]))), nil
	}
}

// bMember2 implements `x in coll`.
func bMember2(_ *evalState, args []Value) (Value, error) {
	x := args[0]
	switch c := args[1].(type) {
	case *Set:
		return Bool(c.Contains(x)), nil
	case *Array:
		for _, e := range c.elems {
			if Equal(e, x) {
				return valTrue, nil
			}
		}
	case *Object:
		for _, e := range c.entries {
			if Equal(e.value, x) {
				return valTrue, nil
			}
		}
	}
	return valFalse, nil
}

// bMember3 implements `k, v in coll`.
func bMember3(_ *evalState, args []Value) (Value, error) {
	k, v := args[0], args[1]
	switch c := args[2].(type) {
	case *Object:
		if got, ok := c.GetValue(k); ok {
			return Bool(Equal(got, v)), nil
		}
	case *Array:
		if got := member(c, k); got != nil {
			return Bool(Equal(got, v)), nil
		}
	case *Set:
		// A set element is its own key.
		return Bool(Equal(k, v) && c.Contains(k)), nil
	}
	return valFalse, nil
}

//go:noinline
func isRank(rank int) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		return Bool(args[0].rank() == rank), nil
	}
}

func bTypeName(_ *evalState, args []Value) (Value, error) {
	return stringValue(TypeName(args[0])), nil
}
