package jsonx

import (
	"bytes"
	"testing"
)

func TestFoldKey(t *testing.T) {
	same := [][2]string{{"sub", "SUB"}, {"sub", "ſub"}, {"kid", "\u212aid"}, {"Tenant", "tenant"}, {"", ""}, {"é", "É"}, {"a_1", "A_1"}}
	for _, p := range same {
		if FoldKey(p[0]) != FoldKey(p[1]) {
			t.Errorf("FoldKey(%q) != FoldKey(%q)", p[0], p[1])
		}
	}
	for _, p := range [][2]string{{"sub", "sup"}, {"a", "a "}, {"ss", "ß"}} {
		if FoldKey(p[0]) == FoldKey(p[1]) {
			t.Errorf("FoldKey(%q) == FoldKey(%q)", p[0], p[1])
		}
	}
}

// FuzzFoldKey holds FoldKey to bytes.EqualFold, the relation encoding/json
// matches field names by.
func FuzzFoldKey(f *testing.F) {
	f.Add("sub", "ſUB")
	f.Add("kid", "\u212aID")
	f.Add("\xff", "\xfe")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := FoldKey(a) == FoldKey(b), bytes.EqualFold([]byte(a), []byte(b)); got != want {
			t.Fatalf("FoldKey(%q) == FoldKey(%q) is %v, bytes.EqualFold %v", a, b, got, want)
		}
	})
}
