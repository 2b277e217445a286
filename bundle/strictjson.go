package bundle

import (
	"fmt"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// manifestNames and releaseNames are the members of the manifest and of its
// release object, spelled as the JSON tags spell them.
// Slices, not maps: they are short, and a map literal is init code in the
// filter module.
var (
	manifestNames = []string{
		"format", "kind", "tenant", "name", "revision", "created_at", "expires_at",
		"engine_version", "builtins", "entrypoints", "files", "release", "policy",
	}
	releaseNames = []string{"approvers", "publisher", "stage", "replaces"}
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
func checkKeys(v *jsonx.Value, path string, canon []string) error {
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
			fold := jsonx.FoldKey(m.Key)
			if prev, dup := seen[fold]; dup {
				return m.Value.Fail(p, fmt.Sprintf("keys %q and %q differ only in case", prev, m.Key))
			}
			seen[fold] = m.Key
			if name := canonFor(canon, fold); name != "" && name != m.Key {
				return m.Value.Fail(p, fmt.Sprintf("key %q must be spelled %q", m.Key, name))
			}
			var sub []string
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

// canonFor returns the name in canon that folds to fold, or "".
func canonFor(canon []string, fold string) string {
	for _, name := range canon {
		if jsonx.FoldKey(name) == fold {
			return name
		}
	}
	return ""
}
