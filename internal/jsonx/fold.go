package jsonx

import (
	"unicode"
	"unicode/utf8"
)

// FoldKey maps a member name to one representative of its case-fold
// class, the way encoding/json matches names to struct fields
// (bytes.EqualFold: Unicode simple folding, so "ſub" folds with "sub" and
// the Kelvin sign with 'k'). Readers that must refuse what encoding/json
// would read as the same field compare FoldKey of the names.
func FoldKey(k string) string {
	ascii, lower := true, false
	for i := 0; i < len(k); i++ {
		c := k[i]
		ascii = ascii && c < utf8.RuneSelf
		lower = lower || c >= 'a' && c <= 'z'
	}
	if ascii {
		if !lower {
			return k
		}
		// For ASCII letters the smallest rune of the orbit is the upper case.
		b := []byte(k)
		for i, c := range b {
			if c >= 'a' && c <= 'z' {
				b[i] = c - ('a' - 'A')
			}
		}
		return string(b)
	}
	out := make([]rune, 0, len(k))
	for _, r := range k {
		// The smallest rune of the fold orbit.
		for r2 := unicode.SimpleFold(r); r2 != r; r2 = unicode.SimpleFold(r2) {
			if r2 < r {
				r = r2
			}
		}
		out = append(out, r)
	}
	return string(out)
}
