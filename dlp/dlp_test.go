package dlp

import (
	"slices"
	"strings"
	"testing"
)

// The detectors of the reference policy (payments.yaml).
var referenceSpecs = []Spec{
	{Name: "email", Pattern: `(?i)[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}`, Replace: "[email]"},
	{Name: "card", Builtin: BuiltinCardNumber, Replace: "[card]"},
	{Name: "iban", Builtin: BuiltinIBAN, Replace: "[iban]"},
}

func mustCompile(t testing.TB, specs []Spec) *Set {
	t.Helper()
	s, err := Compile(specs)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

func TestRedact(t *testing.T) {
	card := []Spec{{Name: "card", Builtin: BuiltinCardNumber, Replace: "[card]"}}
	iban := []Spec{{Name: "iban", Builtin: BuiltinIBAN, Replace: "[iban]"}}
	cardIBAN := []Spec{card[0], iban[0]}
	tests := []struct {
		name  string
		specs []Spec
		in    string
		want  string
		hits  []string
	}{
		{"contract: card in memo", card, "card 4111 1111 1111 1111 thanks", "card [card] thanks", []string{"card"}},
		{"contract: card and iban", cardIBAN, "card 4111 1111 1111 1111, iban DE89370400440532013000", "card [card], iban [iban]", []string{"card", "iban"}},
		{"contract: luhn failure is not a card", card, "order 4111 1111 1111 1112", "order 4111 1111 1111 1112", nil},
		{"compact card", card, "4111111111111111", "[card]", []string{"card"}},
		{"dashes", card, "x 4111-1111-1111-1111 y", "x [card] y", []string{"card"}},
		{"mixed separators", card, "5500 0000-0000 0004", "[card]", []string{"card"}},
		{"13 digits", card, "n=4222222222222.", "n=[card].", []string{"card"}},
		{"15 digit amex grouping", card, "3782 822463 10005", "[card]", []string{"card"}},
		{"19 digits", card, "4111111111111111003", "[card]", []string{"card"}},
		{"20 digits luhn-valid is not a card", card, "41111111111111110000", "41111111111111110000", nil},
		{"25-digit run containing a valid card is not a card", card, "1234567894111111111111111", "1234567894111111111111111", nil},
		{"25-digit luhn-valid run is not a card", card, "1234567894111111111111114", "1234567894111111111111114", nil},
		{"leading digit group joins the run", card, "1 4111 1111 1111 1111", "1 4111 1111 1111 1111", nil},
		{"double space splits runs", card, "12  4111 1111 1111 1111", "12  [card]", []string{"card"}},
		{"space then dash splits runs", card, "12 -4111111111111111", "12 -[card]", []string{"card"}},
		{"trailing separator not part of the run", card, "4111 1111 1111 1111 - ok", "[card] - ok", []string{"card"}},
		{"letters adjacent still a card", card, "card4111111111111111x", "card[card]x", []string{"card"}},
		{"two cards", card, "4111111111111111 and 5500000000000004", "[card] and [card]", []string{"card"}},
		{"12 digits", card, "411111111116", "411111111116", nil},
		{"fullwidth digits are not ASCII digits", card, "４１１１１１１１１１１１１１１１", "４１１１１１１１１１１１１１１１", nil},
		{"iban compact", iban, "to DE89370400440532013000.", "to [iban].", []string{"iban"}},
		{"iban grouped", iban, "to DE89 3704 0044 0532 0130 00 today", "to [iban] today", []string{"iban"}},
		{"iban grouped followed by a 4-letter word", iban, "ES91 2100 0418 4502 0005 1332 from x", "[iban] from x", []string{"iban"}},
		{"iban lower case", iban, "de89370400440532013000", "[iban]", []string{"iban"}},
		{"iban with letters in BBAN", iban, "GB82WEST12345698765432", "[iban]", []string{"iban"}},
		{"iban shortest", iban, "NO9386011117947", "[iban]", []string{"iban"}},
		{"iban 31 chars", iban, "MT84MALT011000012345MTLCAST001S", "[iban]", []string{"iban"}},
		{"iban bad checksum", iban, "DE89370400440532013001", "DE89370400440532013001", nil},
		{"iban inside a longer word", iban, "XDE89370400440532013000", "XDE89370400440532013000", nil},
		{"iban followed by alnum", iban, "DE89370400440532013000A", "DE89370400440532013000A", nil},
		{"iban grouped with double space", iban, "DE89  3704 0044 0532 0130 00", "DE89  3704 0044 0532 0130 00", nil},
		{"iban grouped with 5-char block", iban, "DE89 37040 044 0532 0130 00", "DE89 37040 044 0532 0130 00", nil},
		{"iban after underscore", iban, "x_DE89370400440532013000", "x_[iban]", []string{"iban"}},
		{"first detector wins on overlap", []Spec{{Name: "digits", Pattern: `[0-9]{6,}`, Replace: "#"}, card[0]}, "4111111111111111", "#", []string{"digits"}},
		{"card removal exposes an iban (second round)", []Spec{iban[0], card[0]}, "4111111111111111DE89370400440532013000", "[card][iban]", []string{"card", "iban"}},
		{"pattern replacement is literal", []Spec{{Name: "x", Pattern: `(a)b`, Replace: "$1"}}, "abab", "$1$1", []string{"x"}},
		{"default replacement", []Spec{{Name: "secret", Pattern: `s3cr3t`}}, "a s3cr3t", "a [secret]", []string{"secret"}},
		{"email", referenceSpecs, "mail Bob.X@Example.COM now", "mail [email] now", []string{"email"}},
		{"all three", referenceSpecs, "a@b.io 4111111111111111 GB82 WEST 1234 5698 7654 32", "[email] [card] [iban]", []string{"card", "email", "iban"}},
		{"nothing", referenceSpecs, "hello", "hello", nil},
		{"empty", referenceSpecs, "", "", nil},
		{"a pattern that does not settle redacts everything", []Spec{{Name: "x", Pattern: "ab", Replace: "b"}}, "keep " + strings.Repeat("a", 20) + "b", "b", []string{"x"}},
		{"a pattern that settles within the bound", []Spec{{Name: "x", Pattern: "ab", Replace: "b"}}, "keep aaab", "keep b", []string{"x"}},
		{"invalid utf-8 around a card", card, "\xff4111111111111111\xfe", "\xff[card]\xfe", []string{"card"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, tt.specs)
			got, hits := s.Redact(tt.in)
			if got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !slices.Equal(hits, tt.hits) {
				t.Errorf("hits = %q, want %q", hits, tt.hits)
			}
			again, hits2 := s.Redact(got)
			if again != got || hits2 != nil {
				t.Errorf("not idempotent: %q -> %q (hits %q)", got, again, hits2)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		specs []Spec
		want  string
	}{
		{"empty name", []Spec{{Builtin: BuiltinIBAN}}, "name is empty"},
		{"duplicate", []Spec{{Name: "a", Builtin: BuiltinIBAN}, {Name: "a", Builtin: BuiltinCardNumber}}, `("a"): duplicate name`},
		{"both", []Spec{{Name: "a", Pattern: "x", Builtin: BuiltinIBAN}}, "not both"},
		{"neither", []Spec{{Name: "a"}}, "needs a pattern or a builtin"},
		{"unknown builtin", []Spec{{Name: "a", Builtin: "ssn"}}, `unknown builtin "ssn"`},
		{"bad regex", []Spec{{Name: "a", Pattern: "("}}, `"a"): pattern: error parsing regexp`},
		{"perl lookahead is not RE2", []Spec{{Name: "a", Pattern: "(?=x)"}}, "pattern"},
		{"empty match", []Spec{{Name: "a", Pattern: "x*"}}, "matches the empty string"},
		{"replacement matched by itself", []Spec{{Name: "a", Pattern: "[a-z]+", Replace: "redacted"}}, `replacement "redacted" is itself matched by detector "a"`},
		{"replacement matched by another", []Spec{{Name: "c", Builtin: BuiltinCardNumber, Replace: "4111111111111111"}}, "itself matched"},
		{"default replacement matched", []Spec{{Name: "w", Pattern: `\[w\]`}}, "itself matched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.specs)
			if err == nil {
				t.Fatalf("Compile succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestSpecsFromGo(t *testing.T) {
	good := []any{
		map[string]any{"name": "email", "pattern": "[a-z]+@[a-z]+", "replace": "[email]"},
		map[string]any{"name": "card", "builtin": "card_number"},
	}
	specs, err := SpecsFromGo(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{{Name: "email", Pattern: "[a-z]+@[a-z]+", Replace: "[email]"}, {Name: "card", Builtin: "card_number"}}
	if !slices.Equal(specs, want) {
		t.Errorf("SpecsFromGo = %+v, want %+v", specs, want)
	}
	bad := []struct {
		name string
		in   any
		want string
	}{
		{"not a list", map[string]any{}, "want a list"},
		{"element not an object", []any{"x"}, "specs[0]: want an object"},
		{"non-string field", []any{map[string]any{"name": 1.0}}, "specs[0].name: want a string"},
		{"unknown field", []any{map[string]any{"name": "a", "regex": "x"}}, `unknown field "regex"`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SpecsFromGo(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	s := mustCompile(t, referenceSpecs)
	sub, err := s.Select([]string{"iban", "card"})
	if err != nil {
		t.Fatal(err)
	}
	if got := sub.Names(); !slices.Equal(got, []string{"iban", "card"}) {
		t.Errorf("Names = %q", got)
	}
	out, hits := sub.Redact("x@y.io 4111111111111111")
	if out != "x@y.io [card]" || !slices.Equal(hits, []string{"card"}) {
		t.Errorf("Redact = %q %q", out, hits)
	}
	if _, err := s.Select([]string{"ssn"}); err == nil || !strings.Contains(err.Error(), `unknown detector "ssn"`) {
		t.Errorf("unknown: err = %v", err)
	}
	if _, err := s.Select([]string{"card", "card"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("twice: err = %v", err)
	}
}

func TestRedactNoMatchDoesNotAllocate(t *testing.T) {
	s := mustCompile(t, []Spec{referenceSpecs[1], referenceSpecs[2]})
	text := "an ordinary memo about invoice 42 for ACME, nothing secret in it"
	allocs := testing.AllocsPerRun(100, func() {
		if out, hits := s.Redact(text); out != text || hits != nil {
			t.Fatal("unexpected redaction")
		}
	})
	if allocs != 0 {
		t.Errorf("allocs = %v, want 0", allocs)
	}
}

func BenchmarkRedact(b *testing.B) {
	s := mustCompile(b, referenceSpecs)
	for _, bc := range []struct{ name, text string }{
		{"clean", "payment for invoice 2026-1142, thanks for the quick turnaround"},
		{"card", "card 4111 1111 1111 1111 thanks"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Redact(bc.text)
			}
		})
	}
}
