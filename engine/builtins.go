package engine

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// builtinImpl implements one builtin. args must not be retained: the slice
// is scratch space reused by the next call. A nil Value with a nil error
// means "undefined".
type builtinImpl func(ev *evalState, args []Value) (Value, error)

// builtinSpec is one entry of the builtin table.
type builtinSpec struct {
	arity int
	fn    builtinImpl
	// prepare, when set, may return an implementation specialised for the
	// constant arguments of one call site (nil entries are not constant),
	// for example a regular expression compiled once at Load.
	prepare func(p *Policy, consts []Value) builtinImpl
}

// builtinTable is the single list of builtins the engine implements. It is
// a package-level value (not filled by init) and is never modified. It is
// written as a slice and indexed once: a map literal of this size compiles
// to 65 kB of insertion code, a slice of mostly constant entries to data.
var builtinTable = indexBuiltins([]builtinEntry{
	// comparison and equality
	{"equal", builtinSpec{arity: 2, fn: bEqual}}, {"neq", builtinSpec{arity: 2, fn: bNotEqual}},
	{"lt", builtinSpec{arity: 2, fn: cmpBuiltin(func(c int) bool { return c < 0 })}},
	{"lte", builtinSpec{arity: 2, fn: cmpBuiltin(func(c int) bool { return c <= 0 })}},
	{"gt", builtinSpec{arity: 2, fn: cmpBuiltin(func(c int) bool { return c > 0 })}},
	{"gte", builtinSpec{arity: 2, fn: cmpBuiltin(func(c int) bool { return c >= 0 })}},
	{"internal.member_2", builtinSpec{arity: 2, fn: bMember2}}, {"internal.member_3", builtinSpec{arity: 3, fn: bMember3}},

	// numbers
	{"plus", builtinSpec{arity: 2, fn: bPlus}}, {"minus", builtinSpec{arity: 2, fn: bMinus}}, {"mul", builtinSpec{arity: 2, fn: bMul}},
	{"div", builtinSpec{arity: 2, fn: bDiv}}, {"rem", builtinSpec{arity: 2, fn: bRem}},
	{"abs", builtinSpec{arity: 1, fn: bAbs}}, {"round", builtinSpec{arity: 1, fn: bRound}}, {"ceil", builtinSpec{arity: 1, fn: bCeil}},
	{"floor", builtinSpec{arity: 1, fn: bFloor}}, {"numbers.range", builtinSpec{arity: 2, fn: bNumbersRange}},
	{"numbers.range_step", builtinSpec{arity: 3, fn: bNumbersRangeStep}}, {"to_number", builtinSpec{arity: 1, fn: bToNumber}},

	// aggregates
	{"count", builtinSpec{arity: 1, fn: bCount}}, {"sum", builtinSpec{arity: 1, fn: bSum}}, {"product", builtinSpec{arity: 1, fn: bProduct}},
	{"max", builtinSpec{arity: 1, fn: bMax}}, {"min", builtinSpec{arity: 1, fn: bMin}}, {"sort", builtinSpec{arity: 1, fn: bSort}},
	{"all", builtinSpec{arity: 1, fn: bAll}}, {"any", builtinSpec{arity: 1, fn: bAny}},

	// arrays, sets, objects
	{"array.concat", builtinSpec{arity: 2, fn: bArrayConcat}}, {"array.slice", builtinSpec{arity: 3, fn: bArraySlice}},
	{"array.reverse", builtinSpec{arity: 1, fn: bArrayReverse}}, {"array.flatten", builtinSpec{arity: 1, fn: bArrayFlatten}},
	{"and", builtinSpec{arity: 2, fn: bAnd}}, {"or", builtinSpec{arity: 2, fn: bOr}},
	{"intersection", builtinSpec{arity: 1, fn: bIntersection}}, {"union", builtinSpec{arity: 1, fn: bUnion}},
	{"object.get", builtinSpec{arity: 3, fn: bObjectGet}}, {"object.keys", builtinSpec{arity: 1, fn: bObjectKeys}},
	{"object.remove", builtinSpec{arity: 2, fn: bObjectRemove}}, {"object.union", builtinSpec{arity: 2, fn: bObjectUnion}},
	{"object.union_n", builtinSpec{arity: 1, fn: bObjectUnionN}}, {"object.filter", builtinSpec{arity: 2, fn: bObjectFilter}},
	{"object.subset", builtinSpec{arity: 2, fn: bObjectSubset}},
	{"walk", builtinSpec{arity: 1, fn: bWalk}},
	{"graph.reachable", builtinSpec{arity: 2, fn: bGraphReachable}}, {"graph.reachable_paths", builtinSpec{arity: 2, fn: bGraphReachablePaths}},

	// types
	{"is_number", builtinSpec{arity: 1, fn: isRank(rankNumber)}}, {"is_string", builtinSpec{arity: 1, fn: isRank(rankString)}},
	{"is_boolean", builtinSpec{arity: 1, fn: isRank(rankBool)}}, {"is_array", builtinSpec{arity: 1, fn: isRank(rankArray)}},
	{"is_set", builtinSpec{arity: 1, fn: isRank(rankSet)}}, {"is_object", builtinSpec{arity: 1, fn: isRank(rankObject)}},
	{"is_null", builtinSpec{arity: 1, fn: isRank(rankNull)}}, {"type_name", builtinSpec{arity: 1, fn: bTypeName}},

	// strings
	{"concat", builtinSpec{arity: 2, fn: bConcat}}, {"contains", builtinSpec{arity: 2, fn: bContains}},
	{"startswith", builtinSpec{arity: 2, fn: bStartsWith}}, {"endswith", builtinSpec{arity: 2, fn: bEndsWith}},
	{"lower", builtinSpec{arity: 1, fn: bLower}}, {"upper", builtinSpec{arity: 1, fn: bUpper}},
	{"split", builtinSpec{arity: 2, fn: bSplit}}, {"replace", builtinSpec{arity: 3, fn: bReplace}},
	{"strings.replace_n", builtinSpec{arity: 2, fn: bReplaceN}}, {"strings.reverse", builtinSpec{arity: 1, fn: bStringReverse}},
	{"strings.count", builtinSpec{arity: 2, fn: bStringCount}},
	{"trim", builtinSpec{arity: 2, fn: bTrim}}, {"trim_left", builtinSpec{arity: 2, fn: bTrimLeft}}, {"trim_right", builtinSpec{arity: 2, fn: bTrimRight}},
	{"trim_prefix", builtinSpec{arity: 2, fn: bTrimPrefix}}, {"trim_suffix", builtinSpec{arity: 2, fn: bTrimSuffix}},
	{"trim_space", builtinSpec{arity: 1, fn: bTrimSpace}}, {"sprintf", builtinSpec{arity: 2, fn: bSprintf}},
	{"format_int", builtinSpec{arity: 2, fn: bFormatInt}}, {"indexof", builtinSpec{arity: 2, fn: bIndexOf}},
	{"indexof_n", builtinSpec{arity: 2, fn: bIndexOfN}}, {"substring", builtinSpec{arity: 3, fn: bSubstring}},
	{"internal.template_string", builtinSpec{arity: 1, fn: bTemplateString}}, {"strings.split_n", builtinSpec{arity: 3, fn: bSplitN}},
	{"strings.any_prefix_match", builtinSpec{arity: 2, fn: affixMatch(false)}},
	{"strings.any_suffix_match", builtinSpec{arity: 2, fn: affixMatch(true)}},

	// units, crypto digests, bits
	{"units.parse", builtinSpec{arity: 1, fn: bUnitsParse}}, {"units.parse_bytes", builtinSpec{arity: 1, fn: bUnitsParseBytes}},
	{"crypto.md5", builtinSpec{arity: 1, fn: bCryptoMD5}}, {"crypto.sha1", builtinSpec{arity: 1, fn: bCryptoSHA1}},
	{"crypto.sha256", builtinSpec{arity: 1, fn: bCryptoSHA256}},
	{"crypto.hmac.md5", builtinSpec{arity: 2, fn: bCryptoHMACMD5}}, {"crypto.hmac.sha1", builtinSpec{arity: 2, fn: bCryptoHMACSHA1}},
	{"crypto.hmac.sha256", builtinSpec{arity: 2, fn: bCryptoHMACSHA256}}, {"crypto.hmac.sha512", builtinSpec{arity: 2, fn: bCryptoHMACSHA512}},
	{"crypto.hmac.equal", builtinSpec{arity: 2, fn: bCryptoHMACEqual}},
	{"bits.or", builtinSpec{arity: 2, fn: bBitsOr}}, {"bits.and", builtinSpec{arity: 2, fn: bBitsAnd}}, {"bits.xor", builtinSpec{arity: 2, fn: bBitsXor}},
	{"bits.negate", builtinSpec{arity: 1, fn: bBitsNegate}}, {"bits.lsh", builtinSpec{arity: 2, fn: bBitsLsh}}, {"bits.rsh", builtinSpec{arity: 2, fn: bBitsRsh}},

	// regular expressions and globs
	{"regex.match", builtinSpec{arity: 2, fn: bRegexMatch, prepare: prepareRegex(0, bRegexMatchWith)}},
	{"re_match", builtinSpec{arity: 2, fn: bRegexMatch, prepare: prepareRegex(0, bRegexMatchWith)}},
	{"regex.is_valid", builtinSpec{arity: 1, fn: bRegexIsValid}},
	{"regex.find_n", builtinSpec{arity: 3, fn: bRegexFindN, prepare: prepareRegex(0, bRegexFindNWith)}},
	{"regex.find_all_string_submatch_n", builtinSpec{arity: 3, fn: bRegexSubmatch, prepare: prepareRegex(0, bRegexSubmatchWith)}},
	{"regex.split", builtinSpec{arity: 2, fn: bRegexSplit, prepare: prepareRegex(0, bRegexSplitWith)}},
	{"regex.replace", builtinSpec{arity: 3, fn: bRegexReplace, prepare: prepareRegex(1, bRegexReplaceWith)}},
	{"glob.match", builtinSpec{arity: 3, fn: bGlobMatch}},

	// encodings
	{"json.marshal", builtinSpec{arity: 1, fn: bJSONMarshal}}, {"json.unmarshal", builtinSpec{arity: 1, fn: bJSONUnmarshal}},
	{"json.is_valid", builtinSpec{arity: 1, fn: bJSONIsValid}},
	{"json.remove", builtinSpec{arity: 2, fn: bJSONRemove}}, {"json.filter", builtinSpec{arity: 2, fn: bJSONFilter}},
	{"base64.encode", builtinSpec{arity: 1, fn: bBase64Encode}}, {"base64.decode", builtinSpec{arity: 1, fn: bBase64Decode}},
	{"base64.is_valid", builtinSpec{arity: 1, fn: bBase64IsValid}},
	{"base64url.encode", builtinSpec{arity: 1, fn: bBase64URLEncode}}, {"base64url.decode", builtinSpec{arity: 1, fn: bBase64URLDecode}},
	{"base64url.encode_no_pad", builtinSpec{arity: 1, fn: bBase64URLEncodeNoPad}},
	{"hex.encode", builtinSpec{arity: 1, fn: bHexEncode}}, {"hex.decode", builtinSpec{arity: 1, fn: bHexDecode}},
	{"urlquery.encode", builtinSpec{arity: 1, fn: bURLQueryEncode}}, {"urlquery.decode", builtinSpec{arity: 1, fn: bURLQueryDecode}},
	{"urlquery.encode_object", builtinSpec{arity: 1, fn: bURLQueryEncodeObject}},
	{"urlquery.decode_object", builtinSpec{arity: 1, fn: bURLQueryDecodeObject}},

	// net, time, semver
	{"net.cidr_contains", builtinSpec{arity: 2, fn: bCIDRContains}}, {"net.cidr_is_valid", builtinSpec{arity: 1, fn: bCIDRIsValid}},
	{"net.cidr_intersects", builtinSpec{arity: 2, fn: bCIDRIntersects}},
	{"semver.is_valid", builtinSpec{arity: 1, fn: bSemverIsValid}}, {"semver.compare", builtinSpec{arity: 2, fn: bSemverCompare}},
	{"time.now_ns", builtinSpec{arity: 0, fn: bTimeNowNS}}, {"time.parse_rfc3339_ns", builtinSpec{arity: 1, fn: bTimeParseRFC3339}},
	{"time.parse_ns", builtinSpec{arity: 2, fn: bTimeParseNS}}, {"time.weekday", builtinSpec{arity: 1, fn: bTimeWeekday}},
	{"time.date", builtinSpec{arity: 1, fn: bTimeDate}}, {"time.clock", builtinSpec{arity: 1, fn: bTimeClock}},
	{"time.add_date", builtinSpec{arity: 4, fn: bTimeAddDate}},

	// Aegis
	{"aegis.dlp.redact", builtinSpec{arity: 2, fn: bDLPRedact}},
})

// builtinEntry is one row of the builtin table as written.
type builtinEntry struct {
	name string
	spec builtinSpec
}

func indexBuiltins(entries []builtinEntry) map[string]*builtinSpec {
	m := make(map[string]*builtinSpec, len(entries))
	for i := range entries {
		if _, dup := m[entries[i].name]; dup {
			panic("engine: builtin " + entries[i].name + " listed twice")
		}
		m[entries[i].name] = &entries[i].spec
	}
	return m
}

// SupportedBuiltins returns the names of every builtin the engine
// implements, sorted.
func SupportedBuiltins() []string {
	names := make([]string, 0, len(builtinTable))
	for name := range builtinTable {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// BuiltinArity returns the number of arguments a supported builtin takes.
func BuiltinArity(name string) (int, bool) {
	spec, ok := builtinTable[name]
	if !ok {
		return 0, false
	}
	return spec.arity, true
}

// typeErr builds OPA's operand type error.
func typeErr(pos int, got Value, want ...string) error {
	w := want[0]
	if len(want) > 1 {
		w = "one of {" + strings.Join(want, ", ") + "}"
	}
	return &Error{Code: CodeTypeError, Message: fmt.Sprintf("operand %d must be %s but got %s", pos, w, TypeName(got))}
}

func operandErr(pos int, format string, args ...any) error {
	// OPA reports operand errors as type errors.
	return &Error{Code: CodeTypeError, Message: fmt.Sprintf("operand %d ", pos) + fmt.Sprintf(format, args...)}
}

func argString(args []Value, i int) (string, error) {
	s, ok := args[i].(stringValue)
	if !ok {
		return "", typeErr(i+1, args[i], "string")
	}
	return string(s), nil
}

func argNumber(args []Value, i int) (*numberValue, error) {
	n, ok := args[i].(*numberValue)
	if !ok {
		return nil, typeErr(i+1, args[i], "number")
	}
	return n, nil
}

func argInt(args []Value, i int) (int, error) {
	n, err := argNumber(args, i)
	if err != nil {
		return 0, err
	}
	v, ok := n.int64()
	if !ok || v != int64(int(v)) {
		return 0, operandErr(i+1, "must be integer number but got floating-point number")
	}
	return int(v), nil
}

func argObject(args []Value, i int) (*Object, error) {
	o, ok := args[i].(*Object)
	if !ok {
		return nil, typeErr(i+1, args[i], "object")
	}
	return o, nil
}

// stringElems returns the strings in an array or set operand.
func stringElems(args []Value, i int) ([]string, error) {
	var elems []Value
	switch x := args[i].(type) {
	case *Array:
		elems = x.elems
	case *Set:
		elems = x.elems
	default:
		return nil, typeErr(i+1, args[i], "array", "set")
	}
	out := make([]string, len(elems))
	for j, e := range elems {
		s, ok := e.(stringValue)
		if !ok {
			return nil, &Error{Code: CodeTypeError, Message: fmt.Sprintf("operand %d must be array of strings but got %s containing %s", i+1, TypeName(args[i]), TypeName(e))}
		}
		out[j] = string(s)
	}
	return out, nil
}

func setOf(elems []Value) *Set {
	s := &Set{elems: make([]Value, 0, len(elems))}
	for _, e := range elems {
		s.Add(e)
	}
	return s
}

// regexCache holds regular expressions built from non-constant patterns.
// It is bounded and belongs to one Policy; when full it is emptied.
type regexCache struct {
	mu    sync.Mutex
	limit int
	m     map[string]*regexp.Regexp
}

func newRegexCache(limit int) *regexCache {
	return &regexCache{limit: limit, m: make(map[string]*regexp.Regexp)}
}

func (c *regexCache) get(pattern string) (*regexp.Regexp, error) {
	if c.limit <= 0 {
		return regexp.Compile(pattern)
	}
	c.mu.Lock()
	re, ok := c.m[pattern]
	c.mu.Unlock()
	if ok {
		return re, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= c.limit {
		clear(c.m)
	}
	c.m[pattern] = re
	c.mu.Unlock()
	return re, nil
}

func (ev *evalState) regex(pattern string) (*regexp.Regexp, error) {
	re, err := ev.p.regexes.get(pattern)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
	}
	return re, nil
}

// prepareRegex specialises a regex builtin whose pattern (argument pos) is
// a constant: the pattern is compiled once, at Load. An invalid constant
// pattern keeps the dynamic implementation, which reports the error at
// evaluation time as OPA does.
//
//go:noinline
func prepareRegex(pos int, with func(re *regexp.Regexp) builtinImpl) func(*Policy, []Value) builtinImpl {
	return func(p *Policy, consts []Value) builtinImpl {
		s, ok := consts[pos].(stringValue)
		if !ok {
			return nil
		}
		re, ok := p.constRegexes[string(s)]
		if !ok {
			var err error
			if re, err = regexp.Compile(string(s)); err != nil {
				return nil
			}
			// Shared by every call site with the same pattern; only Load
			// writes this map.
			p.constRegexes[string(s)] = re
		}
		return with(re)
	}
}
