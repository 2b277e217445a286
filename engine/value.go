package engine

import (
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Value is an immutable Rego value: null, boolean, number, string, array,
// object or set. The interface is sealed; the concrete kinds are created
// with Null, Bool, String, Int, Number, NewArray, NewObject and NewSet.
//
// # Notes
//
// Arrays, objects and sets are built by appending/inserting and must not be
// changed once they have been handed to Load or Eval, or shared between
// goroutines: the engine treats every Value it receives as read-only.
type Value interface {
	rank() int // sort order between kinds, as in OPA's ast.Compare
}

// Kind ranks follow OPA's valueSortOrder: null < boolean < number < string
// < array < object < set.
const (
	rankNull = iota
	rankBool
	rankNumber
	rankString
	rankArray
	rankObject
	rankSet
)

type nullValue struct{}

type boolValue bool

type stringValue string

// numberValue keeps the literal text exactly (OPA numbers are arbitrary
// precision decimals) plus pre-parsed forms so that common comparisons need
// neither allocation nor big arithmetic.
type numberValue struct {
	lit   string
	i     int64
	isInt bool // lit is a plain integer literal that fits in int64
	f     float64
	// fExact: comparing f values orders the literals exactly. True when the
	// literal has at most 15 significant digits and f is a normal float:
	// rounding such decimals to float64 is injective and monotone.
	fExact bool
}

func (nullValue) rank() int    { return rankNull }
func (boolValue) rank() int    { return rankBool }
func (*numberValue) rank() int { return rankNumber }
func (stringValue) rank() int  { return rankString }
func (*Array) rank() int       { return rankArray }
func (*Object) rank() int      { return rankObject }
func (*Set) rank() int         { return rankSet }

var (
	valTrue  Value = boolValue(true)
	valFalse Value = boolValue(false)
	valNull  Value = nullValue{}
)

// Null returns the null value.
func Null() Value { return valNull }

// Bool returns a boolean value.
func Bool(b bool) Value {
	if b {
		return valTrue
	}
	return valFalse
}

// String returns a string value.
func String(s string) Value { return stringValue(s) }

// smallInts avoids allocating the integers that plans and builtins produce
// most often (counts, indexes, small constants). Read-only after package init
// by construction (a composite literal), so it is not mutable global state.
var smallInts = func() [256 + 1]*numberValue {
	var t [256 + 1]*numberValue
	for i := range t {
		n := int64(i - 0)
		t[i] = &numberValue{lit: strconv.FormatInt(n, 10), i: n, isInt: true, f: float64(n), fExact: true}
	}
	return t
}()

// Int returns an integer number value.
func Int(i int64) Value { return intNumber(i) }

func intNumber(i int64) *numberValue {
	if i >= 0 && i <= 256 {
		return smallInts[i]
	}
	n := &numberValue{lit: strconv.FormatInt(i, 10), i: i, isInt: true, f: float64(i)}
	n.fExact = i > -1e15 && i < 1e15
	return n
}

// Number returns a number value for a JSON number literal. The text is kept
// exactly as given and reproduced by ToJSON.
func Number(text string) (Value, error) {
	n, ok := parseNumber(text)
	if !ok {
		return nil, &Error{Code: CodeInvalidValue, Message: "invalid number literal " + quoteLiteral(text)}
	}
	return n, nil
}

// quoteLiteral quotes a refused literal for an error message, shortened: a
// literal can be as long as a request body, and quoting a megabyte costs
// more than deciding to refuse it.
func quoteLiteral(s string) string {
	const keep = 64
	if len(s) <= keep {
		return strconv.Quote(s)
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// parseNumber validates a JSON number literal and pre-computes the fast
// comparison forms.
func parseNumber(text string) (*numberValue, bool) {
	if !validJSONNumber(text) || !exponentInRange(text) {
		return nil, false
	}
	return parsedNumber(text), true
}

// parseRegoNumber accepts the number literals Rego allows beyond JSON
// (".5", "1."), which reach the engine as plan string constants.
func parseRegoNumber(text string) (*numberValue, bool) {
	if n, ok := parseNumber(text); ok {
		return n, true
	}
	if !exponentInRange(text) || strings.ContainsAny(text, "xXpP_") {
		return nil, false
	}
	if _, ok := new(big.Rat).SetString(text); !ok {
		return nil, false
	}
	return parsedNumber(text), true
}

// maxNumberExp bounds binary exponents as OPA's ast.NumberChecked does, so
// that "1e40000" is rejected rather than turned into a huge big.Rat.
const maxNumberExp = 100000

// Decimal positions of the leading digit (x in [10^p, 10^(p+1))) that are
// certainly inside or outside [2^-100001, 2^100000): 10^30102 < 2^100000 <
// 10^30103 and 10^-30104 < 2^-100001 < 10^-30103. Only p = 30102 and
// p = -30104 need arithmetic.
const (
	maxSafeLeadPos = 30101
	minSafeLeadPos = -30103
	maxLeadPos     = 30102
	minLeadPos     = -30104
)

// boundDigits is how many significant digits of the mantissa reach
// big.Float near the bound. The bound is arbitrary (OPA's), so a decision
// from 40 digits plus a sticky digit is as good as one from a million, and
// it keeps the cost of the check independent of the literal's length.
const boundDigits = 40

// exponentInRange reports whether a number literal written with an
// exponent lies inside the range OPA accepts: zero, or a magnitude whose
// binary exponent (big.Float MantExp) is within ±maxNumberExp. As in OPA,
// literals without an exponent are not bounded. Unlike big.Float.SetString
// on the whole literal, which is quadratic in its length, it reads the text
// once and hands big.Float at most boundDigits+1 digits, and only when the
// magnitude is within one decade of the bound. A non-zero literal so small
// that big.Float rounds it to zero (exponent below about -6.5e8, which OPA
// lets through) is out of range, not zero: the engine's big.Rat comparisons
// would then find it equal to 0.
func exponentInRange(s string) bool {
	e := strings.IndexAny(s, "eE")
	if e < 0 {
		return true
	}
	d, ok := scanDecimal(s[:e], s[e+1:])
	if !ok {
		return false
	}
	switch {
	case d.wideExp:
		// big.Float, and so OPA, refuses these literals even for a zero
		// mantissa; the engine must not accept what OPA refuses.
		return false
	case d.digits == "":
		return true // zero, whatever its (int64) exponent
	case d.lead > maxLeadPos || d.lead < minLeadPos:
		return false
	case d.lead >= minSafeLeadPos && d.lead <= maxSafeLeadPos:
		return true
	}
	f, ok := new(big.Float).SetString(string(d.boundedText()))
	if !ok || f.IsInf() || f.Sign() == 0 {
		return false
	}
	exp := f.MantExp(nil)
	return exp <= maxNumberExp && exp >= -maxNumberExp
}

// decimal locates the significant digits of a number literal without
// converting it: digits holds the mantissa from its first non-zero digit
// on (a '.' possibly inside), and that digit's place value is 10^lead.
// wideExp: the exponent does not fit in an int64.
type decimal struct {
	digits  string
	lead    int64
	wideExp bool
}

// expLimit saturates exponents: beyond it a number is out of range for any
// mantissa a string can hold, and clamping keeps lead free of overflow.
const expLimit = 1 << 48

// scanDecimal reads mant ("[+-]digits[.digits]", either side of the dot
// may be empty as Rego allows, not both) and exp ("[+-]digits").
func scanDecimal(mant, exp string) (decimal, bool) {
	x, wide, ok := scanExponent(exp)
	if !ok {
		return decimal{}, false
	}
	if mant != "" && (mant[0] == '-' || mant[0] == '+') {
		mant = mant[1:]
	}
	first, dot, n := -1, -1, 0
	for i := 0; i < len(mant); i++ {
		switch c := mant[i]; {
		case c == '.' && dot < 0:
			dot = i
		case c >= '0' && c <= '9':
			n++
			if first < 0 && c != '0' {
				first = i
			}
		default:
			return decimal{}, false
		}
	}
	if n == 0 {
		return decimal{}, false
	}
	if first < 0 {
		return decimal{wideExp: wide}, true
	}
	if dot < 0 {
		dot = len(mant)
	}
	lead := int64(dot - first - 1) // the first digit is before the dot
	if first > dot {
		lead = int64(dot - first)
	}
	return decimal{digits: mant[first:], lead: lead + x, wideExp: wide}, true
}

// scanExponent returns the exponent clamped to ±expLimit and whether its
// exact value overflows an int64 (leading zeros allowed).
func scanExponent(s string) (x int64, wide, ok bool) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, false, false
	}
	var u uint64 // exact up to 10*2^60, pinned to the maximum once wider
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false, false
		}
		if u < 1<<60 {
			u = u*10 + uint64(c-'0')
		} else {
			u = math.MaxUint64
		}
	}
	wide = u > 1<<63 || (u == 1<<63 && !neg)
	x = int64(min(u, expLimit))
	if neg {
		x = -x
	}
	return x, wide, true
}

// boundedText writes d as "<digits>e<exp>" with at most boundDigits digits
// and, if non-zero digits were cut, a trailing 1 so that the shortened
// value stays strictly between the truncation and the literal's next
// boundDigits-digit neighbour. When nothing is cut, big.Float sees the same
// integer mantissa and power of ten as in the literal (leading zeros and
// the dot change neither), so it decides exactly as on the literal.
func (d decimal) boundedText() []byte {
	buf := make([]byte, 0, boundDigits+24)
	for i := 0; i < len(d.digits); i++ {
		c := d.digits[i]
		switch {
		case c == '.':
		case len(buf) < boundDigits:
			buf = append(buf, c)
		case c != '0':
			buf = append(buf, '1')
			i = len(d.digits)
		}
	}
	// The last digit written has place value 10^(lead-(len-1)).
	exp := d.lead - int64(len(buf)-1)
	buf = append(buf, 'e')
	return strconv.AppendInt(buf, exp, 10)
}

func parsedNumber(text string) *numberValue {
	// ParseInt refuses a fraction or an exponent only after allocating
	// its error (two allocations per decimal such as "120.5").
	if !strings.ContainsAny(text, ".eE") {
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			if i >= 0 && i <= 256 && smallInts[i].lit == text {
				return smallInts[i]
			}
			return &numberValue{lit: text, i: i, isInt: true, f: float64(i), fExact: i > -1e15 && i < 1e15}
		}
	}
	n := &numberValue{lit: text}
	f, err := strconv.ParseFloat(text, 64)
	n.f = f
	if err == nil {
		digits := significantDigits(text)
		switch {
		case digits == 0:
			n.fExact = f == 0
		case digits <= 15:
			// A non-zero literal that underflowed to 0 or a subnormal is
			// not exact; neither is an overflow.
			n.fExact = math.Abs(f) > 1e-300 && math.Abs(f) < 1e300
		}
	}
	return n
}

func significantDigits(s string) int {
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s = s[:i]
	}
	n, leading := 0, true
	trailingZeros := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		if leading && c == '0' {
			continue
		}
		leading = false
		n++
		if c == '0' {
			trailingZeros++
		} else {
			trailingZeros = 0
		}
	}
	return n - trailingZeros
}

func validJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i >= len(s) {
		return false
	}
	switch {
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

// rat returns the exact rational value of the literal.
func (n *numberValue) rat() *big.Rat {
	r, ok := new(big.Rat).SetString(n.lit)
	if !ok {
		// Unreachable for validated literals, but fail safe.
		return new(big.Rat)
	}
	return r
}

func compareNumbers(a, b *numberValue) int {
	if a == b || a.lit == b.lit {
		return 0
	}
	if a.isInt && b.isInt {
		return cmpInt(a.i, b.i)
	}
	// f is the literal correctly rounded to float64 (±Inf past the range),
	// and rounding is monotone: values whose f differ are ordered as their
	// f. Only ties need the exact values, whose rationals can be numbers of
	// 100,000 bits (1e30102 next to a limit of 100 took a millisecond).
	switch {
	case a.f < b.f:
		return -1
	case a.f > b.f:
		return 1
	case a.fExact && b.fExact:
		return 0
	}
	if c, ok := compareDecimals(a.lit, b.lit); ok {
		return c
	}
	return a.rat().Cmp(b.rat())
}

// compareDecimals orders two number literals exactly from their text, in
// time linear in their length. ok is false for a literal it cannot place
// (an exponent beyond int64), which is then left to big.Rat.
func compareDecimals(x, y string) (c int, ok bool) {
	sx, dx, ok := signedDecimal(x)
	if !ok {
		return 0, false
	}
	sy, dy, ok := signedDecimal(y)
	if !ok {
		return 0, false
	}
	if sx != sy {
		return cmpInt(int64(sx), int64(sy)), true
	}
	if sx == 0 {
		return 0, true
	}
	// Same sign, both non-zero: the larger magnitude has the higher leading
	// place, or on the same place the larger digits, read left to right
	// with missing ones as zeros.
	m := cmpInt(dx.lead, dy.lead)
	for i, j := 0, 0; m == 0 && (i < len(dx.digits) || j < len(dy.digits)); {
		cx, cy := byte('0'), byte('0')
		if i < len(dx.digits) {
			if cx = dx.digits[i]; cx == '.' {
				i++
				continue
			}
		}
		if j < len(dy.digits) {
			if cy = dy.digits[j]; cy == '.' {
				j++
				continue
			}
		}
		m = cmpInt(int64(cx), int64(cy))
		i++
		j++
	}
	return m * sx, true
}

// signedDecimal returns the literal's sign (0 for any zero) and digits.
func signedDecimal(s string) (sign int, d decimal, ok bool) {
	mant, exp := s, "0"
	if e := strings.IndexAny(s, "eE"); e >= 0 {
		mant, exp = s[:e], s[e+1:]
	}
	d, ok = scanDecimal(mant, exp)
	switch {
	case !ok || d.wideExp || d.lead >= expLimit || d.lead <= -expLimit:
		return 0, decimal{}, false
	case d.digits == "":
		return 0, d, true
	case mant[0] == '-':
		return -1, d, true
	}
	return 1, d, true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Array is an ordered sequence of values.
type Array struct {
	elems []Value
	gen   uint64 // the evaluation that may still append to it (0: none)
}

// NewArray returns an empty array with room for capacity elements.
func NewArray(capacity int) *Array {
	if capacity < 0 {
		capacity = 0
	}
	return &Array{elems: make([]Value, 0, capacity)}
}

func arrayOf(elems []Value) *Array { return &Array{elems: elems} }

// stringArray builds an array of strings, as the string and regex builtins
// return them.
func stringArray(ss []string) *Array {
	out := make([]Value, len(ss))
	for i, s := range ss {
		out[i] = stringValue(s)
	}
	return arrayOf(out)
}

// Append adds v at the end. Only for arrays under construction.
func (a *Array) Append(v Value) { a.elems = append(a.elems, v) }

// Len returns the number of elements.
func (a *Array) Len() int { return len(a.elems) }

// Index returns element i; it panics when i is out of range, like a slice.
func (a *Array) Index(i int) Value { return a.elems[i] }

// Object maps keys (any Value, usually strings) to values. Entries are kept
// sorted by key in OPA's order, which is also the iteration order.
type Object struct {
	entries []objectEntry
	gen     uint64 // the evaluation that may still insert into it (0: none)
}

type objectEntry struct {
	key   Value
	value Value
}

// NewObject returns an empty object with room for capacity entries.
func NewObject(capacity int) *Object {
	if capacity < 0 {
		capacity = 0
	}
	return &Object{entries: make([]objectEntry, 0, capacity)}
}

// ObjectOf returns the object of keys[i]: values[i], leaving out the keys
// whose value is nil (an absent member; no Value is nil). The keys must
// be in strictly increasing order (Compare), the order an object keeps,
// and as many as the values; ObjectOf panics otherwise, as both are the
// caller's bug. It is for builders that know their keys in advance, like
// the input document's fixed members: with keys boxed once, an object
// costs no allocation per member, where Set boxes its key every time.
func ObjectOf(keys []Value, values ...Value) *Object {
	if len(keys) != len(values) {
		panic("engine: ObjectOf needs as many keys as values")
	}
	o := NewObject(len(values))
	for i, v := range values {
		if i > 0 && Compare(keys[i-1], keys[i]) >= 0 {
			panic("engine: ObjectOf keys out of order")
		}
		if v != nil {
			o.entries = append(o.entries, objectEntry{keys[i], v})
		}
	}
	return o
}

// Len returns the number of entries.
func (o *Object) Len() int { return len(o.entries) }

// Set inserts or replaces the entry for a string key.
//
// Set stays out of line: the input builder alone calls it at 39 places
// (2 kB of the filter module inlined), and the call is small beside the
// insertion.
//
//go:noinline
func (o *Object) Set(key string, v Value) { o.Insert(stringValue(key), v) }

// Insert inserts or replaces the entry for key.
func (o *Object) Insert(key, v Value) {
	i, found := o.find(key)
	if found {
		o.entries[i].value = v
		return
	}
	if i == len(o.entries) {
		o.entries = append(o.entries, objectEntry{key, v})
		return
	}
	o.entries = append(o.entries, objectEntry{})
	copy(o.entries[i+1:], o.entries[i:])
	o.entries[i] = objectEntry{key, v}
}

// Get returns the value under a string key.
func (o *Object) Get(key string) (Value, bool) {
	i, found := o.findString(key)
	if !found {
		return nil, false
	}
	return o.entries[i].value, true
}

// GetValue returns the value under any key.
func (o *Object) GetValue(key Value) (Value, bool) {
	if s, ok := key.(stringValue); ok {
		return o.Get(string(s))
	}
	i, found := o.find(key)
	if !found {
		return nil, false
	}
	return o.entries[i].value, true
}

// Range calls fn for every entry in key order until fn returns false.
func (o *Object) Range(fn func(key, value Value) bool) {
	for _, e := range o.entries {
		if !fn(e.key, e.value) {
			return
		}
	}
}

// Keys returns the keys in order.
func (o *Object) Keys() []Value {
	keys := make([]Value, len(o.entries))
	for i, e := range o.entries {
		keys[i] = e.key
	}
	return keys
}

func (o *Object) find(key Value) (int, bool) {
	if s, ok := key.(stringValue); ok {
		return o.findString(string(s))
	}
	// Fast path: appending in order.
	n := len(o.entries)
	if n == 0 || Compare(o.entries[n-1].key, key) < 0 {
		return n, false
	}
	i := sort.Search(n, func(i int) bool { return Compare(o.entries[i].key, key) >= 0 })
	return i, i < n && Compare(o.entries[i].key, key) == 0
}

// findString is a binary search specialised for string keys: strings rank
// after null, booleans and numbers and before composites.
func (o *Object) findString(key string) (int, bool) {
	lo, hi := 0, len(o.entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		k := o.entries[m].key
		var c int
		if s, ok := k.(stringValue); ok {
			c = strings.Compare(string(s), key)
		} else if k.rank() < rankString {
			c = -1
		} else {
			c = 1
		}
		if c == 0 {
			return m, true
		}
		if c < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, false
}

// Set is an unordered collection of unique values, kept sorted in OPA's
// order.
type Set struct {
	elems []Value
	gen   uint64 // the evaluation that may still add to it (0: none)
}

// NewSet returns an empty set with room for capacity elements.
func NewSet(capacity int) *Set {
	if capacity < 0 {
		capacity = 0
	}
	return &Set{elems: make([]Value, 0, capacity)}
}

// Len returns the number of elements.
func (s *Set) Len() int { return len(s.elems) }

// Add inserts v unless it is already present. Only for sets under
// construction.
func (s *Set) Add(v Value) {
	i, found := s.find(v)
	if found {
		return
	}
	if i == len(s.elems) {
		s.elems = append(s.elems, v)
		return
	}
	s.elems = append(s.elems, nil)
	copy(s.elems[i+1:], s.elems[i:])
	s.elems[i] = v
}

// Contains reports whether v is an element.
func (s *Set) Contains(v Value) bool {
	_, found := s.find(v)
	return found
}

// Range calls fn for every element in order until fn returns false.
func (s *Set) Range(fn func(v Value) bool) {
	for _, e := range s.elems {
		if !fn(e) {
			return
		}
	}
}

func (s *Set) find(v Value) (int, bool) {
	n := len(s.elems)
	if n == 0 {
		return 0, false
	}
	if c := Compare(s.elems[n-1], v); c <= 0 {
		return n - boolToInt(c == 0), c == 0
	}
	i := sort.Search(n, func(i int) bool { return Compare(s.elems[i], v) >= 0 })
	return i, i < n && Compare(s.elems[i], v) == 0
}

// runeCount is utf8.RuneCountInString with the ASCII prefix counted eight
// bytes at a time: count runs on whatever strings an agent sends (a policy
// bounding a query value's length counts all of it), and that text is
// mostly ASCII.
func runeCount(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if w&0x8080808080808080 != 0 {
			break
		}
	}
	return i + utf8.RuneCountInString(s[i:])
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Compare orders two values the way OPA's ast.Compare does. It returns -1,
// 0 or 1.
func Compare(a, b Value) int {
	ra, rb := a.rank(), b.rank()
	if ra != rb {
		return cmpInt(int64(ra), int64(rb))
	}
	switch a := a.(type) {
	case nullValue:
		return 0
	case boolValue:
		bb := b.(boolValue)
		switch {
		case a == bb:
			return 0
		case !bool(a):
			return -1
		}
		return 1
	case *numberValue:
		return compareNumbers(a, b.(*numberValue))
	case stringValue:
		return strings.Compare(string(a), string(b.(stringValue)))
	case *Array:
		return compareSlices(a.elems, b.(*Array).elems)
	case *Object:
		bo := b.(*Object)
		n := min(len(a.entries), len(bo.entries))
		for i := 0; i < n; i++ {
			if c := Compare(a.entries[i].key, bo.entries[i].key); c != 0 {
				return c
			}
			if c := Compare(a.entries[i].value, bo.entries[i].value); c != 0 {
				return c
			}
		}
		return cmpInt(int64(len(a.entries)), int64(len(bo.entries)))
	case *Set:
		return compareSlices(a.elems, b.(*Set).elems)
	}
	return 0
}

func compareSlices(a, b []Value) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if c := Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmpInt(int64(len(a)), int64(len(b)))
}

// Equal reports whether two values are equal in Rego's sense (1 == 1.0).
func Equal(a, b Value) bool {
	// A type switch on both sides rather than rank(): every rank has one
	// concrete type, and method calls through the interface are costly
	// on wasm, where this runs for every comparison statement.
	switch x := a.(type) {
	case stringValue:
		y, ok := b.(stringValue)
		return ok && x == y
	case boolValue:
		y, ok := b.(boolValue)
		return ok && x == y
	case nullValue:
		_, ok := b.(nullValue)
		return ok
	case *numberValue:
		y, ok := b.(*numberValue)
		return ok && compareNumbers(x, y) == 0
	case *Array:
		y, ok := b.(*Array)
		if !ok || len(x.elems) != len(y.elems) {
			return false
		}
		for i := range x.elems {
			if !Equal(x.elems[i], y.elems[i]) {
				return false
			}
		}
		return true
	case *Object:
		y, ok := b.(*Object)
		if !ok || len(x.entries) != len(y.entries) {
			return false
		}
		for i := range x.entries {
			if !Equal(x.entries[i].key, y.entries[i].key) || !Equal(x.entries[i].value, y.entries[i].value) {
				return false
			}
		}
		return true
	case *Set:
		y, ok := b.(*Set)
		if !ok || len(x.elems) != len(y.elems) {
			return false
		}
		for i := range x.elems {
			if !Equal(x.elems[i], y.elems[i]) {
				return false
			}
		}
		return true
	}
	return false
}

// TypeName returns the Rego type name of v: "null", "boolean", "number",
// "string", "array", "object" or "set".
//
//go:noinline
func TypeName(v Value) string {
	switch v.(type) {
	case nullValue:
		return "null"
	case boolValue:
		return "boolean"
	case *numberValue:
		return "number"
	case stringValue:
		return "string"
	case *Array:
		return "array"
	case *Object:
		return "object"
	case *Set:
		return "set"
	}
	return "unknown"
}

// AsString returns the string held by v.
func AsString(v Value) (string, bool) {
	s, ok := v.(stringValue)
	return string(s), ok
}

// AsBool returns the boolean held by v.
func AsBool(v Value) (bool, bool) {
	b, ok := v.(boolValue)
	return bool(b), ok
}

// AsNumber returns the literal text of a number value.
func AsNumber(v Value) (string, bool) {
	n, ok := v.(*numberValue)
	if !ok {
		return "", false
	}
	return n.lit, true
}

// AsInt64 returns v as an int64 when it is a number with an integral value
// in range (1.0 counts as 1).
func AsInt64(v Value) (int64, bool) {
	n, ok := v.(*numberValue)
	if !ok {
		return 0, false
	}
	return n.int64()
}

func (n *numberValue) int64() (int64, bool) {
	if n.isInt {
		return n.i, true
	}
	// Monotone rounding again: |f| above 2^63 means the value is outside
	// int64, and |f| below 1 means it is zero or not an integer; neither
	// needs the rational.
	if math.Abs(n.f) > 1<<63 {
		return 0, false
	}
	if math.Abs(n.f) < 1 {
		if significantDigits(n.lit) == 0 {
			return 0, true
		}
		return 0, false
	}
	r := n.rat()
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, false
	}
	return r.Num().Int64(), true
}
