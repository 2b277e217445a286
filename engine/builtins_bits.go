package engine

import "math/big"

func bitsArgs(args []Value, n int) ([]*big.Int, error) {
	out := make([]*big.Int, n)
	for i := range out {
		num, err := argNumber(args, i)
		if err != nil {
			return nil, err
		}
		if err := checkOperand(num); err != nil {
			return nil, err
		}
		x, ok := numberToInt(num)
		if !ok {
			return nil, &Error{Code: CodeTypeError, Message: "operand must be an integer"}
		}
		out[i] = x
	}
	return out, nil
}

//go:noinline
func bitsBinary(op func(z, x, y *big.Int) *big.Int) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		xs, err := bitsArgs(args, 2)
		if err != nil {
			return nil, err
		}
		return intToNumber(op(new(big.Int), xs[0], xs[1]))
	}
}

var (
	bBitsOr  = bitsBinary((*big.Int).Or)
	bBitsAnd = bitsBinary((*big.Int).And)
	bBitsXor = bitsBinary((*big.Int).Xor)
)

func bBitsNegate(_ *evalState, args []Value) (Value, error) {
	xs, err := bitsArgs(args, 1)
	if err != nil {
		return nil, err
	}
	return intToNumber(new(big.Int).Not(xs[0]))
}

// maxShift bounds shifts so that one call cannot allocate without limit.
const maxShift = 1 << 16

//go:noinline
func bitsShift(left bool) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		xs, err := bitsArgs(args, 2)
		if err != nil {
			return nil, err
		}
		if xs[1].Sign() < 0 {
			return nil, &Error{Code: CodeTypeError, Message: "operand 2 must be an unsigned integer number but got a negative integer"}
		}
		if !xs[1].IsInt64() || xs[1].Int64() > maxShift {
			return nil, &Error{Code: CodeBuiltinError, Message: "shift too large"}
		}
		n := uint(xs[1].Int64())
		if left {
			return intToNumber(new(big.Int).Lsh(xs[0], n))
		}
		return intToNumber(new(big.Int).Rsh(xs[0], n))
	}
}

var (
	bBitsLsh = bitsShift(true)
	bBitsRsh = bitsShift(false)
)
