package engine

func argArray(args []Value, i int) (*Array, error) {
	a, ok := args[i].(*Array)
	if !ok {
		return nil, typeErr(i+1, args[i], "array")
	}
	return a, nil
}

func argSet(args []Value, i int) (*Set, error) {
	s, ok := args[i].(*Set)
	if !ok {
		return nil, typeErr(i+1, args[i], "set")
	}
	return s, nil
}

func bArrayConcat(_ *evalState, args []Value) (Value, error) {
	a, err := argArray(args, 0)
	if err != nil {
		return nil, err
	}
	b, err := argArray(args, 1)
	if err != nil {
		return nil, err
	}
	out := make([]Value, 0, len(a.elems)+len(b.elems))
	return arrayOf(append(append(out, a.elems...), b.elems...)), nil
}

func bArraySlice(_ *evalState, args []Value) (Value, error) {
	a, err := argArray(args, 0)
	if err != nil {
		return nil, err
	}
	start, err := argInt(args, 1)
	if err != nil {
		return nil, err
	}
	stop, err := argInt(args, 2)
	if err != nil {
		return nil, err
	}
	start = max(start, 0)
	stop = min(stop, len(a.elems))
	if stop < start {
		return arrayOf(nil), nil
	}
	return arrayOf(append([]Value(nil), a.elems[start:stop]...)), nil
}

func bArrayReverse(_ *evalState, args []Value) (Value, error) {
	a, err := argArray(args, 0)
	if err != nil {
		return nil, err
	}
	out := make([]Value, len(a.elems))
	for i, e := range a.elems {
		out[len(out)-1-i] = e
	}
	return arrayOf(out), nil
}

// bArrayFlatten flattens one level of nesting, as OPA does.
func bArrayFlatten(_ *evalState, args []Value) (Value, error) {
	a, err := argArray(args, 0)
	if err != nil {
		return nil, err
	}
	out := make([]Value, 0, len(a.elems))
	for _, e := range a.elems {
		if nested, ok := e.(*Array); ok {
			out = append(out, nested.elems...)
		} else {
			out = append(out, e)
		}
	}
	return arrayOf(out), nil
}

func bAnd(_ *evalState, args []Value) (Value, error) {
	a, err := argSet(args, 0)
	if err != nil {
		return nil, err
	}
	b, err := argSet(args, 1)
	if err != nil {
		return nil, err
	}
	return intersect(a, b), nil
}

func intersect(a, b *Set) *Set {
	out := &Set{}
	for _, e := range a.elems {
		if b.Contains(e) {
			out.elems = append(out.elems, e)
		}
	}
	return out
}

func bOr(_ *evalState, args []Value) (Value, error) {
	a, err := argSet(args, 0)
	if err != nil {
		return nil, err
	}
	b, err := argSet(args, 1)
	if err != nil {
		return nil, err
	}
	out := &Set{elems: append(make([]Value, 0, len(a.elems)+len(b.elems)), a.elems...)}
	for _, e := range b.elems {
		out.Add(e)
	}
	return out, nil
}

func setOfSets(args []Value) ([]*Set, error) {
	s, err := argSet(args, 0)
	if err != nil {
		return nil, err
	}
	out := make([]*Set, len(s.elems))
	for i, e := range s.elems {
		inner, ok := e.(*Set)
		if !ok {
			return nil, typeErr(1, e, "set")
		}
		out[i] = inner
	}
	return out, nil
}

func bIntersection(_ *evalState, args []Value) (Value, error) {
	sets, err := setOfSets(args)
	if err != nil {
		return nil, err
	}
	if len(sets) == 0 {
		return &Set{}, nil
	}
	out := sets[0]
	for _, s := range sets[1:] {
		out = intersect(out, s)
	}
	return &Set{elems: out.elems}, nil
}

func bUnion(_ *evalState, args []Value) (Value, error) {
	sets, err := setOfSets(args)
	if err != nil {
		return nil, err
	}
	out := &Set{}
	for _, s := range sets {
		for _, e := range s.elems {
			out.Add(e)
		}
	}
	return out, nil
}

func bObjectGet(_ *evalState, args []Value) (Value, error) {
	obj, err := argObject(args, 0)
	if err != nil {
		return nil, err
	}
	path, ok := args[1].(*Array)
	if !ok {
		if v, found := obj.GetValue(args[1]); found {
			return v, nil
		}
		return args[2], nil
	}
	var cur Value = obj
	for _, seg := range path.elems {
		cur = member(cur, seg)
		if cur == nil {
			return args[2], nil
		}
	}
	return cur, nil
}

func bObjectKeys(_ *evalState, args []Value) (Value, error) {
	obj, err := argObject(args, 0)
	if err != nil {
		return nil, err
	}
	// Object keys are sorted and unique, so they form a set as they are.
	return &Set{elems: obj.Keys()}, nil
}

// keySet reads the keys operand of object.remove/object.filter: an array,
// a set, or the keys of an object.
func keySet(args []Value, i int) (*Set, error) {
	switch x := args[i].(type) {
	case *Array:
		return setOf(x.elems), nil
	case *Set:
		return x, nil
	case *Object:
		return &Set{elems: x.Keys()}, nil
	}
	return nil, typeErr(i+1, args[i], "object", "set", "array")
}

func bObjectRemove(_ *evalState, args []Value) (Value, error) {
	obj, err := argObject(args, 0)
	if err != nil {
		return nil, err
	}
	keys, err := keySet(args, 1)
	if err != nil {
		return nil, err
	}
	out := &Object{entries: make([]objectEntry, 0, len(obj.entries))}
	for _, e := range obj.entries {
		if !keys.Contains(e.key) {
			out.entries = append(out.entries, e)
		}
	}
	return out, nil
}

func bObjectFilter(_ *evalState, args []Value) (Value, error) {
	obj, err := argObject(args, 0)
	if err != nil {
		return nil, err
	}
	keys, err := keySet(args, 1)
	if err != nil {
		return nil, err
	}
	out := &Object{}
	for _, e := range obj.entries {
		if keys.Contains(e.key) {
			out.entries = append(out.entries, e)
		}
	}
	return out, nil
}

// unionObjects merges b into a; b wins, nested objects merge recursively.
func unionObjects(a, b *Object) *Object {
	out := &Object{entries: append(make([]objectEntry, 0, len(a.entries)+len(b.entries)), a.entries...)}
	for _, e := range b.entries {
		if old, ok := out.GetValue(e.key); ok {
			oa, ok1 := old.(*Object)
			ob, ok2 := e.value.(*Object)
			if ok1 && ok2 {
				out.Insert(e.key, unionObjects(oa, ob))
				continue
			}
		}
		out.Insert(e.key, e.value)
	}
	return out
}

func bObjectUnion(_ *evalState, args []Value) (Value, error) {
	a, err := argObject(args, 0)
	if err != nil {
		return nil, err
	}
	b, err := argObject(args, 1)
	if err != nil {
		return nil, err
	}
	return unionObjects(a, b), nil
}

func bObjectUnionN(_ *evalState, args []Value) (Value, error) {
	arr, err := argArray(args, 0)
	if err != nil {
		return nil, err
	}
	out := &Object{}
	for _, e := range arr.elems {
		o, ok := e.(*Object)
		if !ok {
			return nil, typeErr(1, e, "object")
		}
		out = unionObjects(out, o)
	}
	return out, nil
}

// bWalk returns every [path, value] pair of its operand, pre-order, for
// the planner to scan.
func bWalk(_ *evalState, args []Value) (Value, error) {
	out := &Array{}
	var walk func(path []Value, v Value)
	walk = func(path []Value, v Value) {
		pair := arrayOf([]Value{arrayOf(append([]Value(nil), path...)), v})
		out.elems = append(out.elems, pair)
		switch x := v.(type) {
		case *Array:
			for i, e := range x.elems {
				walk(append(path, intNumber(int64(i))), e)
			}
		case *Object:
			for _, e := range x.entries {
				walk(append(path, e.key), e.value)
			}
		case *Set:
			for _, e := range x.elems {
				walk(append(path, e), e)
			}
		}
	}
	walk(nil, args[0])
	return out, nil
}

// bObjectSubset mirrors topdown/subset.go: objects recursively, sets by
// membership, arrays as contiguous sub-sequences, and a set within an array.
func bObjectSubset(_ *evalState, args []Value) (Value, error) {
	switch super := args[0].(type) {
	case *Object:
		if sub, ok := args[1].(*Object); ok {
			return Bool(objectSubset(super, sub)), nil
		}
	case *Set:
		if sub, ok := args[1].(*Set); ok {
			return Bool(setSubset(super, sub)), nil
		}
	case *Array:
		switch sub := args[1].(type) {
		case *Array:
			return Bool(arraySubset(super, sub)), nil
		case *Set:
			unmatched := len(sub.elems)
			for _, e := range super.elems {
				if sub.Contains(e) {
					unmatched--
				}
				if unmatched == 0 {
					return valTrue, nil
				}
			}
			return valFalse, nil
		}
	}
	return nil, &Error{Code: CodeTypeError, Message: "both arguments object.subset must be of the same type or array and set"}
}

func objectSubset(super, sub *Object) bool {
	for _, e := range sub.entries {
		sv, ok := super.GetValue(e.key)
		if !ok {
			return false
		}
		if Equal(sv, e.value) {
			continue
		}
		switch a := sv.(type) {
		case *Object:
			if b, ok := e.value.(*Object); ok && objectSubset(a, b) {
				continue
			}
		case *Set:
			if b, ok := e.value.(*Set); ok && setSubset(a, b) {
				continue
			}
		case *Array:
			if b, ok := e.value.(*Array); ok && arraySubset(a, b) {
				continue
			}
		}
		return false
	}
	return true
}

func setSubset(super, sub *Set) bool {
	for _, e := range sub.elems {
		if !super.Contains(e) {
			return false
		}
	}
	return true
}

func arraySubset(super, sub *Array) bool {
	if len(sub.elems) > len(super.elems) {
		return false
	}
	if Equal(sub, super) {
		return true
	}
	superCursor, subCursor := 0, 0
	for {
		if subCursor == len(sub.elems) {
			return true
		}
		if superCursor+subCursor == len(super.elems) {
			return false
		}
		if Equal(super.elems[superCursor+subCursor], sub.elems[subCursor]) {
			subCursor++
		} else {
			superCursor++
			subCursor = 0
		}
	}
}
