package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
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

// checkManifestKeys walks the JSON token stream and fails on an object
// that names the same key twice, or on a manifest or release member spelled
// in another case. encoding/json keeps the last duplicate and matches field
// names case-insensitively, other parsers do neither: either way two
// readers could disagree about what was signed.
func checkManifestKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// One entry per open container: the keys seen so far for an object
	// (lower-cased key → key as written), nil for an array.
	var stack []map[string]string
	// names[i] is the set of canonical member names for stack[i], if any.
	var names []map[string]bool
	lastKey := ""
	expectKey := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				var canon map[string]bool
				switch {
				case len(stack) == 0:
					canon = manifestNames
				case len(stack) == 1 && lastKey == "release":
					canon = releaseNames
				}
				stack = append(stack, map[string]string{})
				names = append(names, canon)
				expectKey = true
			case '[':
				stack = append(stack, nil)
				names = append(names, nil)
				expectKey = false
			case '}', ']':
				stack = stack[:len(stack)-1]
				names = names[:len(names)-1]
				expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
			}
			continue
		case string:
			if expectKey {
				keys := stack[len(stack)-1]
				fold := foldKey(v)
				if prev, dup := keys[fold]; dup {
					if prev == v {
						return fmt.Errorf("duplicate key %q", v)
					}
					return fmt.Errorf("keys %q and %q differ only in case", prev, v)
				}
				if canon := names[len(names)-1]; canon != nil && !canon[v] && canonFor(canon, v) != "" {
					return fmt.Errorf("key %q must be spelled %q", v, canonFor(canon, v))
				}
				keys[fold] = v
				lastKey = v
				expectKey = false
				continue
			}
		}
		// A scalar value: inside an object the next token is a key again.
		expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
	}
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
