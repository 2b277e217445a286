package policies

import (
	"fmt"
	"math/big"
	"regexp"
)

// Decimal is an exact decimal number as written in the policy. Money and
// numeric limits never pass through float64: 0.1 + 0.2 must equal 0.3.
type Decimal struct {
	r    big.Rat
	text string
}

// decimalSyntax is the accepted spelling: optional minus, integer part
// without leading zeros, optional fraction. No exponent, no leading dot: the
// text is also emitted into Rego and JSON, where it must mean the same.
var decimalSyntax = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// maxDecimalLen bounds the text so hostile input cannot make big.Rat work hard.
const maxDecimalLen = 40

// ParseDecimal parses an exact decimal such as "0.05" or "-12".
func ParseDecimal(s string) (*Decimal, error) {
	if len(s) > maxDecimalLen {
		return nil, fmt.Errorf("%d characters is too long for a decimal (at most %d)", len(s), maxDecimalLen)
	}
	if !decimalSyntax.MatchString(s) {
		return nil, fmt.Errorf("%q is not a plain decimal number (digits, optional '-' and '.', no exponent)", s)
	}
	d := &Decimal{text: s}
	if _, ok := d.r.SetString(s); !ok {
		return nil, fmt.Errorf("%q is not a decimal number", s)
	}
	return d, nil
}

// String returns the decimal as written.
func (d *Decimal) String() string { return d.text }

// Cmp compares d and o like big.Rat.Cmp.
func (d *Decimal) Cmp(o *Decimal) int { return d.r.Cmp(&o.r) }

// Sign reports -1, 0 or 1.
func (d *Decimal) Sign() int { return d.r.Sign() }

// Micro converts to integer millionths (micro-USD for money). ok is false when
// the value has more than six decimal places or does not fit in an int64.
func (d *Decimal) Micro() (v int64, ok bool) {
	m := new(big.Rat).Mul(&d.r, big.NewRat(1_000_000, 1))
	if !m.IsInt() || !m.Num().IsInt64() {
		return 0, false
	}
	return m.Num().Int64(), true
}
