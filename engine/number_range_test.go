package engine

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// bigFloatInRange is the reference decision: big.Float.SetString on the
// whole literal, as OPA's ast.NumberChecked does, except that a non-zero
// literal that big.Float rounds to zero is out of range (OPA accepts it).
// Quadratic in the length of the literal: tests and fuzzing only.
func bigFloatInRange(s string) bool {
	e := strings.IndexAny(s, "eE")
	if e < 0 {
		return true
	}
	f, ok := new(big.Float).SetString(s)
	if !ok || f.IsInf() {
		return false
	}
	if f.Sign() == 0 {
		return strings.Trim(s[:e], "+-0.") == ""
	}
	exp := f.MantExp(nil)
	return exp <= maxNumberExp && exp >= -maxNumberExp
}

func TestExponentInRange(t *testing.T) {
	zeros := func(n int) string { return strings.Repeat("0", n) }
	const mib = 1 << 20
	tests := []struct {
		name, in string
		want     bool
	}{
		// The bound: magnitudes in [2^-100001, 2^100000) after big.Float
		// rounds the literal to 64 bits.
		{"largest power of ten", "1e30102", true},
		{"smallest refused power of ten", "1e30103", false},
		{"below 2^100000", "9.99e30102", true},
		{"above 2^100000", "9.991e30102", false},
		{"just below the rounding threshold", "9.990020930143845079e30102", true},
		{"rounds up to 2^100000", "9.9900209301438450792e30102", false},
		{"smallest power of ten", "1e-30103", true},
		{"largest refused power of ten", "1e-30104", false},
		{"above 2^-100001", "5.005e-30104", true},
		{"below 2^-100001", "5.004e-30104", false},
		{"sign does not matter", "-9.99e30102", true},
		{"upper case and plus", "1E+30102", true},
		{"leading zeros in the exponent", "1e030103", false},
		{"leading zeros in the mantissa", "000.0001e30106", true},
		{"fraction moves the bound", "0.1e30103", true},
		{"trailing zeros count", "10e30102", false},
		{"far beyond", "1e70000", false},
		{"far below", "1e-70000", false},
		// big.Float rounds these to zero; OPA accepts them, the engine
		// does not (they would compare equal to 0).
		{"underflow is not zero", "1e-700000000", false},
		{"overflow", "1e700000000", false},
		{"largest int64 exponent", "1e9223372036854775807", false},
		{"exponent beyond int64", "1e99999999999999999999", false},
		// Zero is zero whatever its exponent, as long as big.Float (and so
		// OPA) can read the exponent.
		{"zero", "0e0", true},
		{"zero with a large exponent", "0e1000000000", true},
		{"zero, negative, fraction", "-0.000e-1000000000", true},
		{"zero, largest int64 exponent", "0e9223372036854775807", true},
		{"zero, smallest int64 exponent", "0e-9223372036854775808", true},
		{"zero, exponent one beyond int64", "0e9223372036854775808", false},
		{"zero, exponent beyond int64", "0e99999999999999999999", false},
		{"zero, exponent beyond int64 with leading zeros", "0e00000000000000099999999999999999999", false},
		// Rego spellings that reach the engine as plan constants.
		{"no integer part", ".5e3", true},
		{"no fraction", "1.e5", true},
		{"no integer part, at the bound", ".1e30103", true},
		// Malformed literals are refused when they have an exponent and
		// left to the grammar check when they have none.
		{"no digits", ".e5", false},
		{"no mantissa", "e5", false},
		{"no exponent digits", "1e", false},
		{"sign only", "1e+", false},
		{"two dots", "1..2e3", false},
		{"fractional exponent", "1e5.0", false},
		{"two signs", "--1e5", false},
		{"hex", "0x1e5", false},
		{"separator", "1_0e5", false},
		{"two exponents", "1e5e5", false},
		{"space", "1e 5", false},
		// As in OPA, literals without an exponent are not bounded.
		{"long integer", "1" + zeros(30103), true},
		{"long fraction", "0." + zeros(30104) + "1", true},
		// Long mantissas.
		{"long mantissa at the bound", "1" + zeros(30102) + "e0", true},
		{"long mantissa past the bound", "1" + zeros(30103) + "e0", false},
		{"long fraction at the bound", "0." + zeros(30102) + "1e0", true},
		{"long fraction past the bound", "0." + zeros(30103) + "1e0", false},
		{"1 MiB mantissa", "1" + zeros(mib) + "e0", false},
		{"1 MiB mantissa, exponent brings it back", "1" + zeros(mib) + "e-" + strconv.Itoa(mib-30102), true},
		{"1 MiB mantissa, one decade more", "1" + zeros(mib) + "e-" + strconv.Itoa(mib-30103), false},
		{"1 MiB mantissa, cut digits below 2^100000", "9990" + zeros(mib) + "1e-" + strconv.Itoa(mib+4-30102), true},
		{"1 MiB mantissa, cut digits above 2^100000", "9991" + zeros(mib) + "1e-" + strconv.Itoa(mib+4-30102), false},
		{"1 MiB fraction above 2^-100001", "0." + zeros(mib) + "5005e" + strconv.Itoa(mib-30103), true},
		{"1 MiB fraction below 2^-100001", "0." + zeros(mib) + "5004e" + strconv.Itoa(mib-30103), false},
		{"1 MiB zero", "0." + zeros(mib) + "e99999999", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exponentInRange(tt.in); got != tt.want {
				t.Fatalf("exponentInRange(%.60q) = %v, want %v", tt.in, got, tt.want)
			}
			// The reference is quadratic: compare with it on literals
			// up to 64 KiB only.
			if len(tt.in) <= 64<<10 && validDecimal.MatchString(tt.in) {
				if ref := bigFloatInRange(tt.in); ref != tt.want {
					t.Fatalf("big.Float on the whole literal says %v", ref)
				}
			}
		})
	}
}

// TestExponentInRangeBoundedWork shows that the cost of the check does not
// depend on the literal beyond one pass over it: the only super-linear step,
// big.Float, gets a text of bounded length however long the literal is, and
// that bounded text decides as the whole literal does.
func TestExponentInRangeBoundedWork(t *testing.T) {
	const maxText = boundDigits + 1 + len("e-30144")
	for _, n := range []int{64 << 10, 1 << 20} {
		zeros := strings.Repeat("0", n)
		for _, s := range []string{
			"1" + zeros + "e-" + strconv.Itoa(n-30102),
			"9990" + zeros + "1e-" + strconv.Itoa(n+4-30102),
			"9991" + zeros + "1e-" + strconv.Itoa(n+4-30102),
			"0." + zeros + "5004e" + strconv.Itoa(n-30103),
			"0." + zeros + "5005e" + strconv.Itoa(n-30103),
			"-" + strings.Repeat("9", n) + ".5e-" + strconv.Itoa(n-30103),
		} {
			e := strings.IndexAny(s, "eE")
			d, ok := scanDecimal(s[:e], s[e+1:])
			if !ok || d.digits == "" {
				t.Fatalf("scanDecimal(%.40q...) = %v", s, ok)
			}
			if d.lead != 30102 && d.lead != -30104 {
				t.Fatalf("%.40q...: lead %d, want a literal next to the bound", s, d.lead)
			}
			text := d.boundedText()
			if len(text) > maxText {
				t.Fatalf("%.40q...: big.Float gets %d bytes, want at most %d", s, len(text), maxText)
			}
			if n <= 64<<10 {
				if got, want := exponentInRange(s), bigFloatInRange(s); got != want {
					t.Fatalf("%.40q...: %v, big.Float on the whole literal says %v (bounded text %s)", s, got, want, text)
				}
			}
		}
	}
}

// validDecimal is the syntax exponentInRange reads: JSON numbers plus the
// Rego spellings ".5" and "1.", with an exponent.
var validDecimal = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+$`)

// FuzzExponentInRange compares the linear-time decision with big.Float on
// the whole literal. On literals of at most boundDigits significant digits
// they must agree exactly; longer mantissas are cut before big.Float sees
// them, which may move the decision only for literals within 10^-39 of a
// rounding threshold, so they are not compared.
func FuzzExponentInRange(f *testing.F) {
	for _, s := range []string{"1e30102", "9.991e30102", "5.005e-30104", "0e99999999999999999999", ".5e3", "1.e5", "-0.0001e-30100", "1e-700000000", "9.9900209301438450792e30102", "1e",
		"9.99002093014384507916954758e30102", "5.00499451899347083408132e-30104", "0.000999002093014384508e30105", "99900209301438450791e30083"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := exponentInRange(s)
		if !validDecimal.MatchString(s) {
			if got && strings.ContainsAny(s, "eE") {
				t.Fatalf("exponentInRange(%q) accepts a malformed literal", s)
			}
			return
		}
		if len(s) > 200 || significant(s) > boundDigits {
			return
		}
		if want := bigFloatInRange(s); got != want {
			t.Fatalf("exponentInRange(%q) = %v, big.Float says %v", s, got, want)
		}
	})
}

// significant counts mantissa digits from the first non-zero one.
func significant(s string) int {
	m := strings.Trim(s[:strings.IndexAny(s, "eE")], "+-")
	m = strings.TrimLeft(strings.Replace(m, ".", "", 1), "0")
	return len(m)
}

// BenchmarkNumberLong times engine.Number on long literals: one beyond the
// bound, refused, and one next to it, accepted, each of 64 KiB and 1 MiB.
func BenchmarkNumberLong(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"64KiB", 64 << 10}, {"1MiB", 1 << 20}} {
		zeros := strings.Repeat("0", size.n)
		for _, tc := range []struct {
			name, text string
			ok         bool
		}{
			{"refused", "1" + zeros + "e0", false},
			{"accepted", "1" + zeros + "e-" + strconv.Itoa(size.n-30102), true},
		} {
			b.Run(size.name+"/"+tc.name, func(b *testing.B) {
				b.SetBytes(int64(len(tc.text)))
				for b.Loop() {
					if _, err := Number(tc.text); (err == nil) != tc.ok {
						b.Fatalf("Number: %v, want ok=%v", err, tc.ok)
					}
				}
			})
		}
	}
}

func TestNumberErrorShortensLiteral(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"short literal kept", "1e99999", `invalid number literal "1e99999"`},
		{"long literal cut", "1" + strings.Repeat("0", 1<<20) + "e0", `invalid number literal "1` + strings.Repeat("0", 63) + `"... (1048579 bytes)`},
		{"cut on a rune boundary", strings.Repeat("é", 40), `invalid number literal "` + strings.Repeat("é", 32) + `"... (80 bytes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Number(tc.in)
			if err == nil || err.Error() != tc.want && !strings.HasSuffix(err.Error(), ": "+tc.want) {
				t.Fatalf("Number error = %.200v, want %q", err, tc.want)
			}
		})
	}
}

// BenchmarkCompareNearBound compares numbers at the edges of the engine's
// range with a policy-sized limit, as a min/max check on a hostile
// parameter does, and two such numbers with each other.
func BenchmarkCompareNearBound(b *testing.B) {
	long := "1" + strings.Repeat("0", 255)
	for _, p := range [][2]string{{"1e30102", "100"}, {"1e-30103", "0.5"}, {"-9.99e30102", "-1"}, {"1e30102", "2e30102"}, {long, "100"}, {long, long[:255] + "1"}} {
		x, err := Number(p[0])
		if err != nil {
			b.Fatal(err)
		}
		y, err := Number(p[1])
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%.12s_vs_%.12s", p[0], p[1]), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if Compare(x, y) == 0 {
					b.Fatal("equal")
				}
			}
		})
	}
}
