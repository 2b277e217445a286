package engine

import "strings"

// json.remove and json.filter, following topdown/json.go: the paths become
// a tree of objects whose leaves are null; array elements are addressed by
// the string form of their index ("a/0").

func jsonPaths(args []Value, i int) ([][]Value, error) {
	var elems []Value
	switch x := args[i].(type) {
	case *Array:
		elems = x.elems
	case *Set:
		elems = x.elems
	default:
		return nil, typeErr(i+1, args[i], "set", "array")
	}
	out := make([][]Value, 0, len(elems))
	for _, e := range elems {
		switch p := e.(type) {
		case stringValue:
			if p == "" {
				out = append(out, nil)
				continue
			}
			var segs []Value
			for _, part := range strings.Split(strings.TrimLeft(string(p), "/"), "/") {
				segs = append(segs, stringValue(strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")))
			}
			out = append(out, segs)
		case *Array:
			out = append(out, p.elems)
		default:
			return nil, &Error{Code: CodeTypeError, Message: "operand 2 must be one of {set, array} containing string paths or array of path segments but got " + TypeName(e)}
		}
	}
	return out, nil
}

func pathTree(paths [][]Value) *Object {
	root := &Object{}
	for _, path := range paths {
		if len(path) == 0 {
			continue
		}
		node, done := root, false
		for _, k := range path[:len(path)-1] {
			child, ok := node.GetValue(k)
			if !ok {
				next := &Object{}
				node.Insert(k, next)
				node = next
				continue
			}
			if obj, isObj := child.(*Object); isObj {
				node = obj
				continue
			}
			done = true // a shorter path already covers this one
			break
		}
		if !done {
			node.Insert(path[len(path)-1], valNull)
		}
	}
	return root
}

func indexKey(i int) Value { return stringValue(itoa(i)) }

// jsonRemove returns a without the parts marked in tree b (nil: removed).
func jsonRemove(a, b Value) Value {
	if b == nil {
		return a
	}
	var bObj *Object
	switch bv := b.(type) {
	case *Object:
		bObj = bv
	case nullValue:
		return nil
	default:
		return a
	}
	get := func(k Value) Value {
		v, _ := bObj.GetValue(k)
		return v
	}
	switch av := a.(type) {
	case *Object:
		out := &Object{entries: make([]objectEntry, 0, len(av.entries))}
		for _, e := range av.entries {
			if d := jsonRemove(e.value, get(e.key)); d != nil {
				out.entries = append(out.entries, objectEntry{e.key, d})
			}
		}
		return out
	case *Set:
		out := &Set{}
		for _, e := range av.elems {
			if d := jsonRemove(e, get(e)); d != nil {
				out.Add(d)
			}
		}
		return out
	case *Array:
		out := make([]Value, 0, len(av.elems))
		for i, e := range av.elems {
			if d := jsonRemove(e, get(indexKey(i))); d != nil {
				out = append(out, d)
			}
		}
		return arrayOf(out)
	}
	return a
}

func bJSONRemove(_ *evalState, args []Value) (Value, error) {
	if _, err := argObject(args, 0); err != nil {
		return nil, err
	}
	paths, err := jsonPaths(args, 1)
	if err != nil {
		return nil, err
	}
	return jsonRemove(args[0], pathTree(paths)), nil
}

// jsonFilter keeps the parts of o selected by filter (null: everything).
func jsonFilter(o, filter Value) Value {
	if _, isNull := filter.(nullValue); isNull {
		return o
	}
	f, ok := filter.(*Object)
	if !ok {
		return o
	}
	switch v := o.(type) {
	case *Array:
		var out []Value
		for i, e := range v.elems {
			if sub, ok := f.GetValue(indexKey(i)); ok {
				out = append(out, jsonFilter(e, sub))
			}
		}
		return arrayOf(out)
	case *Set:
		out := &Set{}
		for _, e := range v.elems {
			if sub, ok := f.GetValue(e); ok {
				out.Add(jsonFilter(e, sub))
			}
		}
		return out
	case *Object:
		out := &Object{}
		for _, e := range v.entries {
			if sub, ok := f.GetValue(e.key); ok {
				out.Insert(e.key, jsonFilter(e.value, sub))
			}
		}
		return out
	}
	return o
}

func bJSONFilter(_ *evalState, args []Value) (Value, error) {
	if _, err := argObject(args, 0); err != nil {
		return nil, err
	}
	paths, err := jsonPaths(args, 1)
	if err != nil {
		return nil, err
	}
	return jsonFilter(args[0], pathTree(paths)), nil
}
