package engine

import (
	"errors"
	"math/big"
	"strings"
	"unicode"
)

// units.parse and units.parse_bytes mirror topdown/parse_units.go and
// parse_bytes.go, including their number/unit split.

const (
	unitNone uint64 = 1 << (10 * iota)
	unitKi
	unitMi
	unitGi
	unitTi
	unitPi
	unitEi
	unitK uint64 = 1000
	unitM        = unitK * 1000
	unitG        = unitM * 1000
	unitT        = unitG * 1000
	unitP        = unitT * 1000
	unitE        = unitP * 1000
)

const maxExponentDigits = 6

//go:noinline
func unitsErr(name, msg string) error {
	return &Error{Code: CodeBuiltinError, Message: name + ": " + msg}
}

func extractNumAndUnit(s string) (string, string, error) {
	isNum := func(r rune) bool { return unicode.IsDigit(r) || r == '.' }
	first := -1
	for idx := 0; idx < len(s); idx++ {
		r := rune(s[idx])
		if !isNum(r) && r != 'e' && r != 'E' && r != '+' && r != '-' {
			first = idx
			break
		}
		if r == 'e' || r == 'E' {
			if idx == len(s)-1 || (!unicode.IsDigit(rune(s[idx+1])) && s[idx+1] != '+' && s[idx+1] != '-') {
				first = idx
				break
			}
			if s[idx+1] == '+' || s[idx+1] == '-' {
				idx++
			}
			start := idx + 1
			end := start
			for end < len(s) && unicode.IsDigit(rune(s[end])) {
				end++
			}
			if end-start > maxExponentDigits {
				return "", "", errors.New("exponent too large")
			}
		}
	}
	switch first {
	case -1:
		return s, "", nil
	case 0:
		return "", s, nil
	}
	return s[:first], s[first:], nil
}

func bUnitsParseBytes(_ *evalState, args []Value) (Value, error) {
	const name = "units.parse_bytes"
	raw, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	s := strings.ReplaceAll(strings.ToLower(raw), "\"", "")
	if strings.Contains(s, " ") {
		return nil, unitsErr(name, "spaces not allowed in resource strings")
	}
	num, unit, err := extractNumAndUnit(s)
	if err != nil {
		return nil, unitsErr(name, "exponent too large")
	}
	if num == "" {
		return nil, unitsErr(name, "no byte amount provided")
	}
	var m big.Float
	switch unit {
	case "":
		m.SetUint64(unitNone)
	case "kb", "k":
		m.SetUint64(unitK)
	case "kib", "ki":
		m.SetUint64(unitKi)
	case "mb", "m":
		m.SetUint64(unitM)
	case "mib", "mi":
		m.SetUint64(unitMi)
	case "gb", "g":
		m.SetUint64(unitG)
	case "gib", "gi":
		m.SetUint64(unitGi)
	case "tb", "t":
		m.SetUint64(unitT)
	case "tib", "ti":
		m.SetUint64(unitTi)
	case "pb", "p":
		m.SetUint64(unitP)
	case "pib", "pi":
		m.SetUint64(unitPi)
	case "eb", "e":
		m.SetUint64(unitE)
	case "eib", "ei":
		m.SetUint64(unitEi)
	default:
		return nil, unitsErr(name, "byte unit "+unit+" not recognized")
	}
	f, ok := new(big.Float).SetString(num)
	if !ok {
		return nil, unitsErr(name, "could not parse byte amount to a number")
	}
	var total big.Int
	f.Mul(f, &m).Int(&total)
	return intToNumber(&total)
}

func bUnitsParse(_ *evalState, args []Value) (Value, error) {
	const name = "units.parse"
	raw, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	s := strings.ReplaceAll(raw, "\"", "")
	if strings.Contains(s, " ") {
		return nil, unitsErr(name, "spaces not allowed in resource strings")
	}
	num, unit, err := extractNumAndUnit(s)
	if err != nil {
		return nil, unitsErr(name, "exponent too large")
	}
	if num == "" {
		return nil, unitsErr(name, "no amount provided")
	}
	if len(unit) > 1 {
		unit = unit[:1] + strings.ToLower(unit[1:])
	}
	var x big.Rat
	switch unit {
	case "m":
		x.SetFloat64(0.001)
	case "":
		x.SetUint64(unitNone)
	case "k", "K":
		x.SetUint64(unitK)
	case "ki", "Ki":
		x.SetUint64(unitKi)
	case "M":
		x.SetUint64(unitM)
	case "mi", "Mi":
		x.SetUint64(unitMi)
	case "g", "G":
		x.SetUint64(unitG)
	case "gi", "Gi":
		x.SetUint64(unitGi)
	case "t", "T":
		x.SetUint64(unitT)
	case "ti", "Ti":
		x.SetUint64(unitTi)
	case "p", "P":
		x.SetUint64(unitP)
	case "pi", "Pi":
		x.SetUint64(unitPi)
	case "e", "E":
		x.SetUint64(unitE)
	case "ei", "Ei":
		x.SetUint64(unitEi)
	default:
		return nil, unitsErr(name, "unit "+unit+" not recognized")
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, unitsErr(name, "could not parse amount to a number")
	}
	r.Mul(r, &x)
	if r.IsInt() {
		return numberValueOf(r.Num().String())
	}
	return numberValueOf(r.FloatString(10))
}
