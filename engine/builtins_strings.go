package engine

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

func bConcat(_ *evalState, args []Value) (Value, error) {
	sep, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	strs, err := stringElems(args, 1)
	if err != nil {
		return nil, err
	}
	return stringValue(strings.Join(strs, sep)), nil
}

func twoStrings(args []Value) (string, string, error) {
	a, err := argString(args, 0)
	if err != nil {
		return "", "", err
	}
	b, err := argString(args, 1)
	return a, b, err
}

func bContains(_ *evalState, args []Value) (Value, error) {
	a, b, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	return Bool(strings.Contains(a, b)), nil
}

func bStartsWith(_ *evalState, args []Value) (Value, error) {
	a, b, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	return Bool(strings.HasPrefix(a, b)), nil
}

func bEndsWith(_ *evalState, args []Value) (Value, error) {
	a, b, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	return Bool(strings.HasSuffix(a, b)), nil
}

func bStringCount(_ *evalState, args []Value) (Value, error) {
	a, b, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	return intNumber(int64(strings.Count(a, b))), nil
}

//go:noinline
func stringMap(f func(string) string) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 0)
		if err != nil {
			return nil, err
		}
		out := f(s)
		if out == s {
			return args[0], nil
		}
		return stringValue(out), nil
	}
}

var (
	bLower         = stringMap(strings.ToLower)
	bUpper         = stringMap(strings.ToUpper)
	bTrimSpace     = stringMap(strings.TrimSpace)
	bStringReverse = stringMap(reverseRunes)
)

func reverseRunes(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}

//go:noinline
func stringPair(f func(a, b string) string) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		a, b, err := twoStrings(args)
		if err != nil {
			return nil, err
		}
		return stringValue(f(a, b)), nil
	}
}

var (
	bTrim       = stringPair(strings.Trim)
	bTrimLeft   = stringPair(strings.TrimLeft)
	bTrimRight  = stringPair(strings.TrimRight)
	bTrimPrefix = stringPair(strings.TrimPrefix)
	bTrimSuffix = stringPair(strings.TrimSuffix)
)

func bSplit(_ *evalState, args []Value) (Value, error) {
	s, sep, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(s, sep)
	return stringArray(parts), nil
}

func bReplace(_ *evalState, args []Value) (Value, error) {
	s, old, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	n, err := argString(args, 2)
	if err != nil {
		return nil, err
	}
	return stringValue(strings.NewReplacer(old, n).Replace(s)), nil
}

func bReplaceN(_ *evalState, args []Value) (Value, error) {
	patterns, err := argObject(args, 0)
	if err != nil {
		return nil, err
	}
	s, err := argString(args, 1)
	if err != nil {
		return nil, err
	}
	pairs := make([]string, 0, 2*len(patterns.entries))
	for _, e := range patterns.entries {
		k, ok := e.key.(stringValue)
		if !ok {
			return nil, operandErr(1, "non-string key found in pattern object")
		}
		v, ok := e.value.(stringValue)
		if !ok {
			return nil, operandErr(1, "non-string value found in pattern object")
		}
		pairs = append(pairs, string(k), string(v))
	}
	return stringValue(strings.NewReplacer(pairs...).Replace(s)), nil
}

var errEmptySearch = &Error{Code: CodeBuiltinError, Message: "empty search character"}

func bIndexOf(_ *evalState, args []Value) (Value, error) {
	s, sub, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	if sub == "" {
		return nil, errEmptySearch
	}
	i := strings.Index(s, sub)
	if i < 0 {
		return intNumber(-1), nil
	}
	// OPA reports code point offsets.
	return intNumber(int64(utf8.RuneCountInString(s[:i]))), nil
}

func bIndexOfN(_ *evalState, args []Value) (Value, error) {
	s, sub, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	if sub == "" {
		return nil, errEmptySearch
	}
	out := []Value{}
	runes := 0
	prev := 0
	for off := 0; off <= len(s); {
		i := strings.Index(s[off:], sub)
		if i < 0 {
			break
		}
		runes += utf8.RuneCountInString(s[prev : off+i])
		prev = off + i
		out = append(out, intNumber(int64(runes)))
		_, size := utf8.DecodeRuneInString(s[off+i:])
		off += i + max(size, 1)
	}
	return arrayOf(out), nil
}

func bSubstring(_ *evalState, args []Value) (Value, error) {
	s, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	start, err := argInt(args, 1)
	if err != nil {
		return nil, err
	}
	length, err := argInt(args, 2)
	if err != nil {
		return nil, err
	}
	if start < 0 {
		return nil, &Error{Code: CodeBuiltinError, Message: "negative offset"}
	}
	runes := []rune(s)
	if start >= len(runes) {
		return stringValue(""), nil
	}
	if length < 0 {
		return stringValue(string(runes[start:])), nil
	}
	upto := start + min(length, len(runes)-start)
	return stringValue(string(runes[start:upto])), nil
}

func bFormatInt(_ *evalState, args []Value) (Value, error) {
	n, err := argNumber(args, 0)
	if err != nil {
		return nil, err
	}
	base, err := argNumber(args, 1)
	if err != nil {
		return nil, err
	}
	var radix int
	switch base.lit {
	case "2":
		radix = 2
	case "8":
		radix = 8
	case "10":
		radix = 10
	case "16":
		radix = 16
	default:
		return nil, &Error{Code: CodeTypeError, Message: "operand 2 must be one of {2, 8, 10, 16}"}
	}
	if err := checkOperand(n); err != nil {
		return nil, err
	}
	if i, ok := new(big.Int).SetString(n.lit, 10); ok {
		return stringValue(i.Text(radix)), nil
	}
	i, _ := numberToFloat(n).Int(nil)
	return stringValue(i.Text(radix)), nil
}

// bSprintf converts operands the way topdown does: integers as int64 or
// big.Int, fractional numbers as float64, strings as strings and anything
// else as its Rego text.
func bSprintf(_ *evalState, args []Value) (Value, error) {
	format, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	arr, err := argArray(args, 1)
	if err != nil {
		return nil, err
	}
	vals := make([]any, len(arr.elems))
	for i, e := range arr.elems {
		switch v := e.(type) {
		case *numberValue:
			switch {
			case strings.ContainsAny(v.lit, ".eE"):
				if f, err := strconv.ParseFloat(v.lit, 64); err == nil {
					vals[i] = f
				} else {
					vals[i] = v.lit
				}
			case v.isInt:
				vals[i] = v.i
			default:
				if b, ok := new(big.Int).SetString(v.lit, 10); ok {
					vals[i] = b
				} else {
					vals[i] = v.lit
				}
			}
		case stringValue:
			vals[i] = string(v)
		default:
			vals[i] = regoString(e)
		}
	}
	return stringValue(fmt.Sprintf(format, vals...)), nil
}

// regoString renders v as Rego source text, like OPA's Value.String.
func regoString(v Value) string {
	return string(appendRego(nil, v))
}

// appendRego appends to a byte slice rather than writing to a
// strings.Builder: each inlined WriteString carries its own copy check,
// which in the filter's wasm module cost 10 kB for this one function.
func appendRego(b []byte, v Value) []byte {
	switch x := v.(type) {
	case nullValue:
		b = append(b, "null"...)
	case boolValue:
		b = strconv.AppendBool(b, bool(x))
	case *numberValue:
		b = append(b, x.lit...)
	case stringValue:
		b = strconv.AppendQuote(b, string(x))
	case *Array:
		b = appendRegoElems(b, '[', x.elems, ']')
	case *Object:
		b = append(b, '{')
		for i, e := range x.entries {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendRego(b, e.key)
			b = append(b, ": "...)
			b = appendRego(b, e.value)
		}
		b = append(b, '}')
	case *Set:
		if len(x.elems) == 0 {
			return append(b, "set()"...)
		}
		b = appendRegoElems(b, '{', x.elems, '}')
	}
	return b
}

func appendRegoElems(b []byte, open byte, elems []Value, end byte) []byte {
	b = append(b, open)
	for i, e := range elems {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendRego(b, e)
	}
	return append(b, end)
}

// bTemplateString implements Rego's $"..." strings: every part is a
// string, a scalar, or a set of candidate values (empty: "<undefined>");
// more than one candidate combination is a conflict.
func bTemplateString(_ *evalState, args []Value) (Value, error) {
	arr, err := argArray(args, 0)
	if err != nil {
		return nil, err
	}
	var b []byte
	for _, e := range arr.elems {
		switch x := e.(type) {
		case stringValue:
			b = append(b, x...)
		case *numberValue, boolValue, nullValue:
			b = appendRego(b, x)
		case *Set:
			switch len(x.elems) {
			case 0:
				b = append(b, "<undefined>"...)
			case 1:
				if s, ok := x.elems[0].(stringValue); ok {
					b = append(b, s...)
				} else {
					b = appendRego(b, x.elems[0])
				}
			default:
				return nil, haltError{&Error{Code: CodeConflictError, Message: "template-strings must not produce multiple outputs"}}
			}
		default:
			return nil, haltError{&Error{Code: CodeInternalError, Message: "illegal argument type: " + TypeName(e)}}
		}
	}
	return stringValue(b), nil
}

// affixMatch implements strings.any_prefix_match and any_suffix_match:
// either operand may be a string or an array/set of strings.
//
//go:noinline
func affixMatch(suffix bool) builtinImpl {
	match := strings.HasPrefix
	if suffix {
		match = strings.HasSuffix
	}
	return func(_ *evalState, args []Value) (Value, error) {
		strs, err := stringOrElems(args, 0)
		if err != nil {
			return nil, err
		}
		affixes, err := stringOrElems(args, 1)
		if err != nil {
			return nil, err
		}
		for _, s := range strs {
			for _, a := range affixes {
				if match(s, a) {
					return valTrue, nil
				}
			}
		}
		return valFalse, nil
	}
}

func stringOrElems(args []Value, i int) ([]string, error) {
	switch x := args[i].(type) {
	case stringValue:
		return []string{string(x)}, nil
	case *Array, *Set:
		return stringElems(args, i)
	}
	return nil, typeErr(i+1, args[i], "string", "set", "array")
}

// bSplitN mirrors topdown: n >= 0 keeps at most n leading parts (the rest
// unsplit is dropped), n < 0 keeps the last -n parts.
func bSplitN(_ *evalState, args []Value) (Value, error) {
	s, delim, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	n, err := argInt(args, 2)
	if err != nil {
		return nil, err
	}
	var parts []string
	if n >= 0 {
		limit := n + 1
		if limit < 0 {
			limit = -1
		}
		all := strings.SplitN(s, delim, limit)
		parts = all[:min(n, len(all))]
	} else {
		all := strings.Split(s, delim)
		parts = all[max(len(all)+n, 0):]
	}
	return stringArray(parts), nil
}
