package engine

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Arithmetic follows OPA's topdown/arithmetic.go step by step so that the
// text of every result is the same: small integers first, then exact big
// integers, then big.Float with the precision SetString picks.

const (
	minSmallInt = -1 << 31
	maxSmallInt = 1<<31 - 1
)

func smallInt(n *numberValue) (int64, bool) {
	return n.i, n.isInt && n.i >= minSmallInt && n.i <= maxSmallInt
}

var (
	errDivideByZero     = &Error{Code: CodeBuiltinError, Message: "divide by zero"}
	errModuloByZero     = &Error{Code: CodeBuiltinError, Message: "modulo by zero"}
	errModuloOnFloating = &Error{Code: CodeBuiltinError, Message: "modulo on floating-point number"}
)

// Arithmetic is exact (big.Int) or at big.Float precision, and printing a
// big.Float's result costs time quadratic in its binary exponent: 3 *
// 1e-30103 took 360 ms natively, round(1e30102) 3.4 ms. Operands and
// results are therefore held to float64's range (about 1e±308), where the
// cost is microseconds; outside it the evaluation stops with an error (the
// decision fails closed) instead of continuing with the call undefined,
// which could skip a deny rule. OPA computes such numbers exactly; no
// policy has a use for them.
const (
	maxArithExp = 1024  // the largest binary exponent of a float64 (x = m·2^exp, 0.5 <= m < 1)
	minArithExp = -1073 // that of the smallest subnormal, 2^-1074
)

func errArithRange(what string) error {
	return haltError{&Error{Code: CodeBuiltinError, Message: "arithmetic: " + what + " is outside the range of a float64 (about 1e±308)"}}
}

// checkOperand refuses a number beyond float64's range: its correctly
// rounded f is infinite, or zero though the literal is not.
func checkOperand(n *numberValue) error {
	if math.IsInf(n.f, 0) || n.f == 0 && !n.isInt && significantDigits(n.lit) != 0 {
		return errArithRange("operand " + n.lit)
	}
	return nil
}

// numberToInt returns the exact integer value of n, if it has one.
func numberToInt(n *numberValue) (*big.Int, bool) {
	if n.isInt {
		return big.NewInt(n.i), true
	}
	if i, ok := new(big.Int).SetString(n.lit, 10); ok {
		return i, true
	}
	r, ok := new(big.Rat).SetString(n.lit)
	if !ok || !r.IsInt() {
		return nil, false
	}
	return new(big.Int).Set(r.Num()), true
}

func numberToFloat(n *numberValue) *big.Float {
	f, ok := new(big.Float).SetString(n.lit)
	if !ok {
		return new(big.Float)
	}
	return f
}

func floatToNumber(f *big.Float) (Value, error) {
	if f.IsInf() {
		return nil, errArithRange("result")
	}
	if exp := f.MantExp(nil); f.Sign() != 0 && (exp > maxArithExp || exp < minArithExp) {
		return nil, errArithRange("result")
	}
	format := byte('g')
	if f.IsInt() {
		format = 'f'
	}
	return numberValueOf(f.Text(format, -1))
}

func intToNumber(i *big.Int) (Value, error) {
	if i.IsInt64() {
		return intNumber(i.Int64()), nil
	}
	if i.BitLen() > maxArithExp {
		return nil, errArithRange("result")
	}
	return numberValueOf(i.String())
}

func numberValueOf(text string) (Value, error) {
	n, ok := parseNumber(text)
	if !ok {
		return nil, &Error{Code: CodeBuiltinError, Message: "result " + strconv.Quote(text) + " is not a representable number"}
	}
	return n, nil
}

type arithOp struct {
	small   func(x, y int64) (int64, bool, error)
	exact   func(z, x, y *big.Int) (*big.Int, error)
	float   func(z, x, y *big.Float) (*big.Float, error)
	noFloat error
}

func (op arithOp) eval(a, b *numberValue) (Value, error) {
	if x, ok := smallInt(a); ok {
		if y, ok := smallInt(b); ok {
			r, ok, err := op.small(x, y)
			if err != nil {
				return nil, err
			}
			if ok {
				return intNumber(r), nil
			}
		}
	}
	if err := checkOperand(a); err != nil {
		return nil, err
	}
	if err := checkOperand(b); err != nil {
		return nil, err
	}
	if op.exact != nil {
		if x, ok := numberToInt(a); ok {
			if y, ok := numberToInt(b); ok {
				r, err := op.exact(new(big.Int), x, y)
				if err != nil {
					return nil, err
				}
				return intToNumber(r)
			}
		}
	}
	if op.float == nil {
		return nil, op.noFloat
	}
	r, err := op.float(new(big.Float), numberToFloat(a), numberToFloat(b))
	if err != nil {
		return nil, err
	}
	return floatToNumber(r)
}

func (op arithOp) builtin(args []Value) (Value, error) {
	a, err := argNumber(args, 0)
	if err != nil {
		return nil, err
	}
	b, err := argNumber(args, 1)
	if err != nil {
		return nil, err
	}
	return op.eval(a, b)
}

//go:noinline
func always(f func(x, y int64) int64) func(x, y int64) (int64, bool, error) {
	return func(x, y int64) (int64, bool, error) { return f(x, y), true, nil }
}

// infallibleInt and infallibleFloat are two functions rather than one
// generic one: a generic instantiation's dictionary marks *big.Int and
// *big.Float as converted to interfaces, which keeps their Format,
// String and (Un)MarshalJSON/Text methods alive in the wasm filter.
//
//go:noinline
func infallibleInt(f func(z, x, y *big.Int) *big.Int) func(z, x, y *big.Int) (*big.Int, error) {
	return func(z, x, y *big.Int) (*big.Int, error) { return f(z, x, y), nil }
}

//go:noinline
func infallibleFloat(f func(z, x, y *big.Float) *big.Float) func(z, x, y *big.Float) (*big.Float, error) {
	return func(z, x, y *big.Float) (*big.Float, error) { return f(z, x, y), nil }
}

var (
	opPlus = arithOp{
		small: always(func(x, y int64) int64 { return x + y }),
		exact: infallibleInt((*big.Int).Add),
		float: infallibleFloat((*big.Float).Add),
	}
	opMinus = arithOp{
		small: always(func(x, y int64) int64 { return x - y }),
		exact: infallibleInt((*big.Int).Sub),
		float: infallibleFloat((*big.Float).Sub),
	}
	opMul = arithOp{
		small: always(func(x, y int64) int64 { return x * y }),
		exact: infallibleInt((*big.Int).Mul),
		float: infallibleFloat((*big.Float).Mul),
	}
	opDiv = arithOp{
		small: func(x, y int64) (int64, bool, error) {
			if y == 0 {
				return 0, false, errDivideByZero
			}
			return x / y, x != 0 && x%y == 0, nil
		},
		float: func(z, x, y *big.Float) (*big.Float, error) {
			if i, acc := y.Int64(); acc == big.Exact && i == 0 {
				return nil, errDivideByZero
			}
			return z.Quo(x, y), nil
		},
	}
	opRem = arithOp{
		small: func(x, y int64) (int64, bool, error) {
			if y == 0 {
				return 0, false, errModuloByZero
			}
			return x % y, true, nil
		},
		exact: func(z, x, y *big.Int) (*big.Int, error) {
			if y.Sign() == 0 {
				return nil, errModuloByZero
			}
			return z.Rem(x, y), nil
		},
		noFloat: errModuloOnFloating,
	}
)

func bPlus(_ *evalState, args []Value) (Value, error) { return opPlus.builtin(args) }
func bMul(_ *evalState, args []Value) (Value, error)  { return opMul.builtin(args) }
func bDiv(_ *evalState, args []Value) (Value, error)  { return opDiv.builtin(args) }
func bRem(_ *evalState, args []Value) (Value, error)  { return opRem.builtin(args) }

// bMinus subtracts numbers or takes the difference of two sets.
func bMinus(_ *evalState, args []Value) (Value, error) {
	n1, ok1 := args[0].(*numberValue)
	n2, ok2 := args[1].(*numberValue)
	if ok1 && ok2 {
		return opMinus.eval(n1, n2)
	}
	s1, ok3 := args[0].(*Set)
	s2, ok4 := args[1].(*Set)
	if ok3 && ok4 {
		out := &Set{}
		for _, e := range s1.elems {
			if !s2.Contains(e) {
				out.elems = append(out.elems, e)
			}
		}
		return out, nil
	}
	if !ok1 && !ok3 {
		return nil, typeErr(1, args[0], "number", "set")
	}
	if ok2 {
		return nil, typeErr(2, args[1], "set")
	}
	return nil, typeErr(2, args[1], "number")
}

type arithUnary struct {
	small func(x int64) int64
	float func(x *big.Float) *big.Float
}

func (op arithUnary) builtin(args []Value) (Value, error) {
	n, err := argNumber(args, 0)
	if err != nil {
		return nil, err
	}
	if x, ok := smallInt(n); ok {
		return intNumber(op.small(x)), nil
	}
	if err := checkOperand(n); err != nil {
		return nil, err
	}
	return floatToNumber(op.float(numberToFloat(n)))
}

var halfAwayFromZero = big.NewFloat(0.5)

var (
	opAbs = arithUnary{
		small: func(x int64) int64 { return max(x, -x) },
		float: func(x *big.Float) *big.Float { return x.Abs(x) },
	}
	opRound = arithUnary{small: identity, float: func(a *big.Float) *big.Float {
		var i *big.Int
		if a.Signbit() {
			i, _ = new(big.Float).Sub(a, halfAwayFromZero).Int(nil)
		} else {
			i, _ = new(big.Float).Add(a, halfAwayFromZero).Int(nil)
		}
		return new(big.Float).SetInt(i)
	}}
	opCeil = arithUnary{small: identity, float: func(a *big.Float) *big.Float {
		i, _ := a.Int(nil)
		f := new(big.Float).SetInt(i)
		if f.Signbit() || a.Cmp(f) == 0 {
			return f
		}
		return new(big.Float).Add(f, big.NewFloat(1.0))
	}}
	opFloor = arithUnary{small: identity, float: func(a *big.Float) *big.Float {
		i, _ := a.Int(nil)
		f := new(big.Float).SetInt(i)
		if !f.Signbit() || a.Cmp(f) == 0 {
			return f
		}
		return new(big.Float).Sub(f, big.NewFloat(1.0))
	}}
)

func identity(x int64) int64 { return x }

func bAbs(_ *evalState, args []Value) (Value, error)   { return opAbs.builtin(args) }
func bRound(_ *evalState, args []Value) (Value, error) { return opRound.builtin(args) }
func bCeil(_ *evalState, args []Value) (Value, error)  { return opCeil.builtin(args) }
func bFloor(_ *evalState, args []Value) (Value, error) { return opFloor.builtin(args) }

// maxRange bounds numbers.range so one call cannot exhaust memory; OPA
// relies on cancellation for the same purpose.
const maxRange = 1 << 20

func bNumbersRange(ev *evalState, args []Value) (Value, error) {
	return numbersRange(ev, args, big.NewInt(1))
}

func bNumbersRangeStep(ev *evalState, args []Value) (Value, error) {
	step, err := argBigInt(args, 2)
	if err != nil {
		return nil, err
	}
	if step.Sign() <= 0 {
		return nil, &Error{Code: CodeBuiltinError, Message: "numbers.range_step: step must be a positive integer"}
	}
	return numbersRange(ev, args, step)
}

func argBigInt(args []Value, i int) (*big.Int, error) {
	n, err := argNumber(args, i)
	if err != nil {
		return nil, err
	}
	if err := checkOperand(n); err != nil {
		return nil, err
	}
	x, ok := numberToInt(n)
	if !ok {
		return nil, operandErr(i+1, "must be integer number but got floating-point number")
	}
	return x, nil
}

func numbersRange(_ *evalState, args []Value, st *big.Int) (Value, error) {
	x, err := argBigInt(args, 0)
	if err != nil {
		return nil, err
	}
	y, err := argBigInt(args, 1)
	if err != nil {
		return nil, err
	}
	span := new(big.Int).Sub(y, x)
	span.Abs(span)
	span.Quo(span, st)
	if !span.IsInt64() || span.Int64() >= maxRange {
		return nil, haltError{&Error{Code: CodeBuiltinError, Message: "numbers.range: range too large"}}
	}
	n := int(span.Int64()) + 1
	out := &Array{elems: make([]Value, 0, n)}
	i := new(big.Int).Set(x)
	down := x.Cmp(y) > 0
	for k := 0; k < n; k++ {
		v, err := intToNumber(i)
		if err != nil {
			return nil, err
		}
		out.elems = append(out.elems, v)
		if down {
			i.Sub(i, st)
		} else {
			i.Add(i, st)
		}
	}
	return out, nil
}

func bToNumber(_ *evalState, args []Value) (Value, error) {
	switch a := args[0].(type) {
	case nullValue:
		return intNumber(0), nil
	case boolValue:
		if a {
			return intNumber(1), nil
		}
		return intNumber(0), nil
	case *numberValue:
		return a, nil
	case stringValue:
		s := string(a)
		lower := strings.ToLower(strings.TrimLeft(s, "+-"))
		if lower == "inf" || lower == "infinity" || lower == "nan" {
			return nil, typeErr(1, a, "valid number string")
		}
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
				// Out of float64 range but still a number literal: OPA
				// reports the strconv error.
				return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
			}
			return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
		}
		n, ok := parseNumber(s)
		if !ok {
			return nil, &Error{Code: CodeBuiltinError, Message: "invalid number " + strconv.Quote(s)}
		}
		return n, nil
	}
	return nil, typeErr(1, args[0], "null", "boolean", "number", "string")
}
