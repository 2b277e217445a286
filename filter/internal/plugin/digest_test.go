package plugin

import (
	"bytes"
	"testing"

	"github.com/aegis-mesh/aegis/engine"
)

// TestAppendCanon: the digest encoding is injective on the documents that
// differ only in where a boundary falls or in a value's type.
func TestAppendCanon(t *testing.T) {
	docs := []string{
		`{"a":"bc"}`, `{"ab":"c"}`, `["a","b"]`, `["ab"]`, `[["a"],"b"]`, `"1"`, `1`, `1.0`, `true`, `"true"`,
		`null`, `{}`, `[]`, `""`, `{"a":{"b":1}}`, `{"a":{"b":1},"c":2}`, `{"a":{"b":1,"c":2}}`,
	}
	seen := map[string]string{}
	for _, d := range docs {
		v, err := engine.FromJSON([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		enc := string(appendCanon(nil, v))
		if prev, dup := seen[enc]; dup {
			t.Errorf("%s and %s encode the same", prev, d)
		}
		seen[enc] = d
	}
	// Key order in the source does not matter; the engine sorts.
	a, _ := engine.FromJSON([]byte(`{"x":1,"y":[true,null]}`))
	b, _ := engine.FromJSON([]byte(`{"y":[true,null],"x":1}`))
	if !bytes.Equal(appendCanon(nil, a), appendCanon(nil, b)) {
		t.Error("equal objects encode differently")
	}
}
