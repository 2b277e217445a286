package engine

import (
	"math/big"
	"sort"
)

func bCount(_ *evalState, args []Value) (Value, error) {
	switch x := args[0].(type) {
	case *Array, *Object, *Set, stringValue:
		return intNumber(int64(valueLen(x))), nil
	}
	return nil, typeErr(1, args[0], "array", "object", "set", "string")
}

func collectionElems(args []Value, i int) ([]Value, error) {
	switch x := args[i].(type) {
	case *Array:
		return x.elems, nil
	case *Set:
		return x.elems, nil
	}
	return nil, typeErr(i+1, args[i], "set", "array")
}

// accumulate implements sum and product the way topdown does: exact
// integers when every element is integral, big.Float otherwise.
func accumulate(args []Value, init int64, exact func(z, x, y *big.Int) *big.Int, float func(z, x, y *big.Float) *big.Float) (Value, error) {
	elems, err := collectionElems(args, 0)
	if err != nil {
		return nil, err
	}
	acc := big.NewInt(init)
	allInt := true
	for _, e := range elems {
		n, ok := e.(*numberValue)
		if !ok {
			allInt = false
			break
		}
		if err := checkOperand(n); err != nil {
			return nil, err
		}
		i, ok := numberToInt(n)
		if !ok {
			allInt = false
			break
		}
		exact(acc, acc, i)
	}
	if allInt {
		return intToNumber(acc)
	}
	var facc *big.Float
	if init == 0 {
		facc = new(big.Float)
	} else {
		facc = big.NewFloat(float64(init))
	}
	for _, e := range elems {
		n, ok := e.(*numberValue)
		if !ok {
			return nil, typeErr(1, e, "number")
		}
		if err := checkOperand(n); err != nil {
			return nil, err
		}
		float(facc, facc, numberToFloat(n))
	}
	return floatToNumber(facc)
}

func bSum(_ *evalState, args []Value) (Value, error) {
	return accumulate(args, 0, (*big.Int).Add, (*big.Float).Add)
}

func bProduct(_ *evalState, args []Value) (Value, error) {
	return accumulate(args, 1, (*big.Int).Mul, (*big.Float).Mul)
}

func bMax(_ *evalState, args []Value) (Value, error) {
	elems, err := collectionElems(args, 0)
	if err != nil || len(elems) == 0 {
		return nil, err
	}
	m := elems[0]
	for _, e := range elems[1:] {
		if Compare(m, e) <= 0 {
			m = e
		}
	}
	return m, nil
}

func bMin(_ *evalState, args []Value) (Value, error) {
	elems, err := collectionElems(args, 0)
	if err != nil || len(elems) == 0 {
		return nil, err
	}
	m := elems[0]
	for _, e := range elems[1:] {
		if Compare(e, m) < 0 {
			m = e
		}
	}
	return m, nil
}

func bSort(_ *evalState, args []Value) (Value, error) {
	elems, err := collectionElems(args, 0)
	if err != nil {
		return nil, err
	}
	out := append([]Value(nil), elems...)
	if _, isSet := args[0].(*Set); !isSet {
		sort.SliceStable(out, func(i, j int) bool { return Compare(out[i], out[j]) < 0 })
	}
	return arrayOf(out), nil
}

func bAll(_ *evalState, args []Value) (Value, error) {
	elems, err := collectionElems(args, 0)
	if err != nil {
		return nil, err
	}
	for _, e := range elems {
		if b, ok := e.(boolValue); !ok || !bool(b) {
			return valFalse, nil
		}
	}
	return valTrue, nil
}

func bAny(_ *evalState, args []Value) (Value, error) {
	elems, err := collectionElems(args, 0)
	if err != nil {
		return nil, err
	}
	for _, e := range elems {
		if b, ok := e.(boolValue); ok && bool(b) {
			return valTrue, nil
		}
	}
	return valFalse, nil
}
