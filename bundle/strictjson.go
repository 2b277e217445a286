package bundle

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// manifestNames and releaseNames are the members of the manifest and of its
// release object, spelled as the JSON tags spell them.
var (
	manifestNames = map[string]bool{
		"format": true, "kind": true, "tenant": true, "name": true, "revision": true,
		"created_at": true, "expires_at": true, "engine_version": true, "builtins": true,
		"entrypoints": true, "files": true, "release": true, "policy": true,
	}
	releaseNames = map[string]bool{"approvers": true, "publisher": true, "stage": true, "replaces": true}
)

// checkManifestKeys fails on an object, at any depth, with two keys that
// differ only in case, and on a manifest or release member spelled in
// another case. jsonx already refuses exact duplicates; encoding/json,
// which older nodes used, matches field names case-insensitively (Unicode
// simple folding) and other parsers do not: either way two readers could
// disagree about what was signed.
func checkManifestKeys(v *jsonx.Value) error {
	return checkKeys(v, "", manifestNames)
}

// checkKeys checks the object or array v at path; canon names the members
// v must spell exactly (nil: none).
func checkKeys(v *jsonx.Value, path string, canon map[string]bool) error {
	switch v.Kind {
	case jsonx.Array:
		for i := range v.Elems {
			if err := checkKeys(&v.Elems[i], jsonx.Index(path, i), nil); err != nil {
				return err
			}
		}
	case jsonx.Object:
		// folded key → key as written
		seen := make(map[string]string, len(v.Members))
		for i := range v.Members {
			m := &v.Members[i]
			p := jsonx.Key(path, m.Key)
			fold := foldKey(m.Key)
			if prev, dup := seen[fold]; dup {
				return m.Value.Fail(p, fmt.Sprintf("keys %q and %q differ only in case", prev, m.Key))
			}
			seen[fold] = m.Key
			if canon != nil && !canon[m.Key] {
				if name := canonFor(canon, m.Key); name != "" {
					return m.Value.Fail(p, fmt.Sprintf("key %q must be spelled %q", m.Key, name))
				}
			}
			var sub map[string]bool
			if path == "" && m.Key == "release" {
				sub = releaseNames
			}
			if err := checkKeys(&m.Value, p, sub); err != nil {
				return err
			}
		}
	}
	return nil
}

// canonFor returns the member of canon that k folds to, or "".
func canonFor(canon map[string]bool, k string) string {
	f := foldKey(k)
	for name := range canon {
		if foldKey(name) == f {
			return name
		}
	}
	return ""
}

// foldKey maps every key to one representative of its case-fold class,
// the way encoding/json matches field names (bytes.EqualFold semantics:
// Unicode simple folding, so the Kelvin sign folds with 'k').
func foldKey(k string) string {
	ascii, lower := true, false
	for i := 0; i < len(k); i++ {
		c := k[i]
		ascii = ascii && c < utf8.RuneSelf
		lower = lower || c >= 'a' && c <= 'z'
	}
	if ascii {
		if !lower {
			return k
		}
		// For ASCII letters the smallest rune of the orbit is the upper case.
		b := []byte(k)
		for i, c := range b {
			if c >= 'a' && c <= 'z' {
				b[i] = c - ('a' - 'A')
			}
		}
		return string(b)
	}
	out := make([]rune, 0, len(k))
	for _, r := range k {
		// The smallest rune of the fold orbit.
		for r2 := unicode.SimpleFold(r); r2 != r; r2 = unicode.SimpleFold(r2) {
			if r2 < r {
				r = r2
			}
		}
		out = append(out, r)
	}
	return string(out)
}
