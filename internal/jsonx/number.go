package jsonx

import "strconv"

// NumberLiteral is a JSON number kept as its literal text: encoding/json's
// Number, for packages on the filter's path, which cannot name that one
// without linking encoding/json. encoding/json writes it as the literal.
type NumberLiteral string

// String returns the literal.
func (n NumberLiteral) String() string { return string(n) }

// Float64 returns the number as a float64.
func (n NumberLiteral) Float64() (float64, error) { return strconv.ParseFloat(string(n), 64) }

// Int64 returns the number as an int64.
func (n NumberLiteral) Int64() (int64, error) { return strconv.ParseInt(string(n), 10, 64) }

// MarshalJSON writes the literal.
func (n NumberLiteral) MarshalJSON() ([]byte, error) { return AppendNumber(nil, string(n)) }

// NumberLike is the method set encoding/json's Number and NumberLiteral share:
// code that must accept either matches on it.
type NumberLike interface {
	String() string
	Float64() (float64, error)
	Int64() (int64, error)
}

// AppendNumber appends lit as encoding/json writes a Number: "" as 0, and
// anything that is not a JSON number literal is an error.
func AppendNumber(b []byte, lit string) ([]byte, error) {
	if lit == "" {
		lit = "0"
	}
	p := parser{data: []byte(lit), line: 1}
	var v Value
	if p.number(&v) != nil || p.pos != len(lit) {
		return b, &SyntaxError{Line: 1, Col: 1, Msg: "invalid number literal " + strconv.Quote(lit)}
	}
	return append(b, lit...), nil
}
