package engine

// graph.reachable and graph.reachable_paths, as in topdown/reachable.go. A
// graph is an object from node to an array or set of neighbours.

func vertices(v Value) []Value {
	switch x := v.(type) {
	case *Array:
		return x.elems
	case *Set:
		return x.elems
	}
	return nil
}

func graphArgs(args []Value) (*Object, []Value, error) {
	g, err := argObject(args, 0)
	if err != nil {
		return nil, nil, err
	}
	switch args[1].(type) {
	case *Array, *Set:
	default:
		return nil, nil, typeErr(2, args[1], "{array, set}")
	}
	return g, append([]Value(nil), vertices(args[1])...), nil
}

func bGraphReachable(ev *evalState, args []Value) (Value, error) {
	g, queue, err := graphArgs(args)
	if err != nil {
		return nil, err
	}
	reached := &Set{}
	for len(queue) > 0 {
		if ev.tick() {
			return nil, haltError{ev.err}
		}
		node := queue[0]
		queue = queue[1:]
		edges, ok := g.GetValue(node)
		if !ok {
			continue
		}
		for _, n := range vertices(edges) {
			if !reached.Contains(n) {
				queue = append(queue, n)
			}
		}
		reached.Add(node)
	}
	return reached, nil
}

func bGraphReachablePaths(ev *evalState, args []Value) (Value, error) {
	g, starts, err := graphArgs(args)
	if err != nil {
		return nil, err
	}
	result := &Set{}
	var build func(root Value, path []Value, reached *Set) bool
	build = func(root Value, path []Value, reached *Set) bool {
		if ev.tick() {
			return false
		}
		edges, ok := g.GetValue(root)
		if !ok {
			result.Add(arrayOf(append([]Value(nil), path...)))
			return true
		}
		path = append(path, root)
		next := vertices(edges)
		if len(next) == 0 {
			result.Add(arrayOf(append([]Value(nil), path...)))
			return true
		}
		seen := &Set{elems: append(make([]Value, 0, len(reached.elems)+1), reached.elems...)}
		seen.Add(root)
		for _, n := range next {
			if seen.Contains(n) {
				result.Add(arrayOf(append([]Value(nil), path...)))
			} else if !build(n, append([]Value(nil), path...), seen) {
				return false
			}
		}
		return true
	}
	for _, node := range starts {
		edges, ok := g.GetValue(node)
		if !ok {
			continue
		}
		next := vertices(edges)
		if len(next) == 0 {
			result.Add(arrayOf([]Value{node}))
			continue
		}
		for _, n := range next {
			start := &Set{}
			start.Add(node)
			if !build(n, []Value{node}, start) {
				return nil, haltError{ev.err}
			}
		}
	}
	return result, nil
}
