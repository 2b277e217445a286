package engine

import (
	"regexp"
	"unicode/utf8"
)

func regexArg(ev *evalState, args []Value, i int) (*regexp.Regexp, error) {
	pattern, err := argString(args, i)
	if err != nil {
		return nil, err
	}
	return ev.regex(pattern)
}

func bRegexMatch(ev *evalState, args []Value) (Value, error) {
	re, err := regexArg(ev, args, 0)
	if err != nil {
		return nil, err
	}
	return bRegexMatchWith(re)(ev, args)
}

func bRegexMatchWith(re *regexp.Regexp) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 1)
		if err != nil {
			return nil, err
		}
		return Bool(re.MatchString(s)), nil
	}
}

func bRegexIsValid(_ *evalState, args []Value) (Value, error) {
	s, ok := args[0].(stringValue)
	if !ok {
		return valFalse, nil
	}
	_, err := regexp.Compile(string(s))
	return Bool(err == nil), nil
}

func bRegexFindN(ev *evalState, args []Value) (Value, error) {
	re, err := regexArg(ev, args, 0)
	if err != nil {
		return nil, err
	}
	return bRegexFindNWith(re)(ev, args)
}

func bRegexFindNWith(re *regexp.Regexp) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 1)
		if err != nil {
			return nil, err
		}
		n, err := argInt(args, 2)
		if err != nil {
			return nil, err
		}
		return stringArray(re.FindAllString(s, n)), nil
	}
}

func bRegexSubmatch(ev *evalState, args []Value) (Value, error) {
	re, err := regexArg(ev, args, 0)
	if err != nil {
		return nil, err
	}
	return bRegexSubmatchWith(re)(ev, args)
}

func bRegexSubmatchWith(re *regexp.Regexp) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 1)
		if err != nil {
			return nil, err
		}
		n, err := argInt(args, 2)
		if err != nil {
			return nil, err
		}
		found := re.FindAllStringSubmatch(s, n)
		out := make([]Value, len(found))
		for i, m := range found {
			out[i] = stringArray(m)
		}
		return arrayOf(out), nil
	}
}

func bRegexSplit(ev *evalState, args []Value) (Value, error) {
	re, err := regexArg(ev, args, 0)
	if err != nil {
		return nil, err
	}
	return bRegexSplitWith(re)(ev, args)
}

func bRegexSplitWith(re *regexp.Regexp) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 1)
		if err != nil {
			return nil, err
		}
		return stringArray(re.Split(s, -1)), nil
	}
}

func bRegexReplace(ev *evalState, args []Value) (Value, error) {
	re, err := regexArg(ev, args, 1)
	if err != nil {
		return nil, err
	}
	return bRegexReplaceWith(re)(ev, args)
}

func bRegexReplaceWith(re *regexp.Regexp) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 0)
		if err != nil {
			return nil, err
		}
		repl, err := argString(args, 2)
		if err != nil {
			return nil, err
		}
		out := re.ReplaceAllString(s, repl)
		if out == s {
			return args[0], nil
		}
		return stringValue(out), nil
	}
}

// bGlobMatch implements glob.match with gobwas/glob's syntax, translated to
// an RE2 expression (linear time, cached per Policy): * and ? stop at the
// delimiters, ** does not; [..] / [!..] classes; {a,b} alternatives.
func bGlobMatch(ev *evalState, args []Value) (Value, error) {
	pattern, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	var delims []rune
	switch d := args[1].(type) {
	case nullValue:
	case *Array:
		for _, e := range d.elems {
			s, ok := e.(stringValue)
			if !ok {
				return nil, typeErr(2, e, "string")
			}
			r := []rune(string(s))
			if len(r) != 1 {
				return nil, &Error{Code: CodeTypeError, Message: "operand 2 must be array of single-character strings"}
			}
			delims = append(delims, r[0])
		}
		if len(delims) == 0 {
			delims = []rune{'.'}
		}
	default:
		return nil, typeErr(2, args[1], "array", "null")
	}
	s, err := argString(args, 2)
	if err != nil {
		return nil, err
	}
	expr, err := globToRegexp(pattern, delims)
	if err != nil {
		return nil, err
	}
	re, err := ev.regex(expr)
	if err != nil {
		return nil, err
	}
	return Bool(re.MatchString(s)), nil
}

func globToRegexp(pattern string, delims []rune) (string, error) {
	notDelim := "."
	if len(delims) > 0 {
		b := []byte("[^")
		for _, d := range delims {
			b = append(b, regexp.QuoteMeta(string(d))...)
		}
		b = append(b, ']')
		notDelim = string(b)
	}
	b := []byte(`(?s)\A`)
	runes := []rune(pattern)
	depth := 0
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case r == '\\':
			if i+1 >= len(runes) {
				return "", &Error{Code: CodeBuiltinError, Message: "glob: unexpected end of pattern after escape"}
			}
			i++
			b = append(b, regexp.QuoteMeta(string(runes[i]))...)
		case r == '*':
			if i+1 < len(runes) && runes[i+1] == '*' {
				i++
				b = append(b, ".*"...)
			} else {
				b = append(b, notDelim+"*"...)
			}
		case r == '?':
			b = append(b, notDelim...)
		case r == '[':
			cls, next, err := globClass(runes, i+1)
			if err != nil {
				return "", err
			}
			b = append(b, cls...)
			i = next
		case r == '{':
			depth++
			b = append(b, "(?:"...)
		case r == '}' && depth > 0:
			depth--
			b = append(b, ")"...)
		case r == ',' && depth > 0:
			b = append(b, "|"...)
		default:
			b = append(b, regexp.QuoteMeta(string(r))...)
		}
	}
	if depth != 0 {
		return "", &Error{Code: CodeBuiltinError, Message: "glob: unterminated alternatives"}
	}
	b = append(b, `\z`...)
	return string(b), nil
}

// globClass translates a character class starting after its '['. As in
// gobwas/glob's lexer, a class is an optional '!' followed either by exactly
// "lo-hi" (a range; no escapes) or by literal characters up to an unescaped
// ']' ("-" is then literal). It returns the RE2 class and the index of the
// closing ']'.
func globClass(runes []rune, i int) (string, int, error) {
	bad := func(msg string) (string, int, error) {
		return "", 0, &Error{Code: CodeBuiltinError, Message: "glob: " + msg}
	}
	neg := ""
	if i < len(runes) && runes[i] == '!' {
		neg = "^"
		i++
	}
	if i >= len(runes) {
		return bad("unexpected end of input")
	}
	if i+1 < len(runes) && runes[i+1] == '-' {
		if i+3 >= len(runes) {
			return bad("unexpected end of input")
		}
		lo, hi := runes[i], runes[i+2]
		if runes[i+3] != ']' {
			return bad("expected close range character")
		}
		if hi < lo {
			return bad("range hi character is less than lo")
		}
		return "[" + neg + regexp.QuoteMeta(string(lo)) + "-" + regexp.QuoteMeta(string(hi)) + "]", i + 3, nil
	}
	var chars []byte
	escaped := false
	for ; i < len(runes); i++ {
		r := runes[i]
		if !escaped && r == '\\' {
			escaped = true
			continue
		}
		if !escaped && r == ']' {
			if len(chars) == 0 {
				return bad("could not parse range")
			}
			return "[" + neg + string(chars) + "]", i, nil
		}
		escaped = false
		if r == '-' || r == '^' || r == '[' || r == ']' || r == '\\' {
			chars = append(chars, '\\')
			chars = utf8.AppendRune(chars, r)
		} else {
			chars = append(chars, regexp.QuoteMeta(string(r))...)
		}
	}
	return bad("unexpected end of input")
}
