package dlp

import (
	"slices"
	"testing"
)

// FuzzRedact checks the properties the sanitize path relies on, for the
// reference detectors in both builtin orders: no panic, no card or IBAN left
// in the output, and redaction is idempotent.
func FuzzRedact(f *testing.F) {
	for _, seed := range []string{
		"card 4111 1111 1111 1111 thanks",
		"card 4111 1111 1111 1111, iban DE89370400440532013000",
		"order 4111 1111 1111 1112",
		"1234567894111111111111111",
		"4111111111111111DE89370400440532013000",
		"ES91 2100 0418 4502 0005 1332 from",
		"a@b.io4111-1111-1111-1111",
		"GB82 WEST 1234 5698 7654 32",
		"\xff4111111111111111",
	} {
		f.Add(seed)
	}
	reordered := []Spec{referenceSpecs[0], referenceSpecs[2], referenceSpecs[1]}
	sets := []*Set{mustCompile(f, referenceSpecs), mustCompile(f, reordered)}
	f.Fuzz(func(t *testing.T, text string) {
		for _, s := range sets {
			out, hits := s.Redact(text)
			if hits == nil && out != text {
				t.Fatalf("no hits but output changed: %q -> %q", text, out)
			}
			if !slices.IsSorted(hits) || len(slices.Compact(slices.Clone(hits))) != len(hits) {
				t.Fatalf("hits not sorted/unique: %q", hits)
			}
			if sp := cardSpans(out); len(sp) > 0 {
				t.Fatalf("card left in output %q at %v (input %q)", out, sp, text)
			}
			if sp := ibanSpans(out); len(sp) > 0 {
				t.Fatalf("iban left in output %q at %v (input %q)", out, sp, text)
			}
			again, hits2 := s.Redact(out)
			if again != out || hits2 != nil {
				t.Fatalf("not idempotent: %q -> %q -> %q", text, out, again)
			}
		}
	})
}
