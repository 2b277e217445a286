package bundle

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// sameContent reports whether a and b encode to the same manifest bytes,
// without encoding them. CheckUpgrade needs only that answer, and it runs
// in the filter, where encoding both manifests linked the whole manifest
// writer (indenter, appendJSON: 35 kB of the module, issue 3) for a
// comparison; this costs half of that. It follows appendJSON case by case: what appendJSON writes
// alike compares equal here (nil and empty lists, an int and the Number
// with the same digits), and whatever appendJSON refuses to write
// (unsupported policy types, NaN, years it cannot format) compares unequal,
// as the failed encoding did. The one difference: strings compare as Go
// strings, while the encoder writes each invalid UTF-8 byte as U+FFFD; no
// manifest ParseManifest returns holds one, and a hand-built manifest that
// does is reported as different content (the refusing side).
func sameContent(a, b *Manifest) bool {
	return a.Format == b.Format && a.Kind == b.Kind && a.Tenant == b.Tenant && a.Name == b.Name &&
		a.Revision == b.Revision &&
		sameTime(a.CreatedAt, b.CreatedAt) && sameTime(a.ExpiresAt, b.ExpiresAt) &&
		a.EngineVersion == b.EngineVersion &&
		// appendJSON writes a nil list as [] and a nil map as null.
		slices.Equal(a.Builtins, b.Builtins) && slices.Equal(a.Entrypoints, b.Entrypoints) &&
		(a.Files == nil) == (b.Files == nil) && maps.Equal(a.Files, b.Files) &&
		sameRelease(a.Release, b.Release) &&
		samePolicy(a.Policy, b.Policy)
}

func sameTime(a, b time.Time) bool {
	ja, errA := a.MarshalJSON()
	jb, errB := b.MarshalJSON()
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// sameRelease: an absent release is omitted, a present one is written even
// when all of its fields are empty (omitted one by one).
func sameRelease(a, b *Release) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Approvers, b.Approvers) && a.Publisher == b.Publisher &&
		a.Stage == b.Stage && a.Replaces == b.Replaces
}

// samePolicy: an empty policy is omitted.
func samePolicy(a, b map[string]any) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return sameValue(a, b)
}

// sameValue compares two policy values as indenter.value writes them.
func sameValue(x, y any) bool {
	x, y = widen(x), widen(y)
	switch x := x.(type) {
	case nil:
		return y == nil
	case bool:
		v, ok := y.(bool)
		return ok && x == v
	case string:
		v, ok := y.(string)
		return ok && x == v
	case []any:
		v, ok := y.([]any)
		if !ok || len(x) != len(v) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], v[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		v, ok := y.(map[string]any)
		if !ok || len(x) != len(v) {
			return false
		}
		for k, xv := range x {
			yv, ok := v[k]
			if !ok || !sameValue(xv, yv) {
				return false
			}
		}
		return true
	}
	nx, okx := numberText(x)
	ny, oky := numberText(y)
	return okx && oky && nx == ny
}

// widen maps the typed lists and maps indenter.value accepts onto []any
// and map[string]any, and each nil list or map onto nil: each pair is
// written alike.
func widen(v any) any {
	switch v := v.(type) {
	case []string:
		if v == nil {
			return nil
		}
		l := make([]any, len(v))
		for i, s := range v {
			l[i] = s
		}
		return l
	case map[string]string:
		if v == nil {
			return nil
		}
		m := make(map[string]any, len(v))
		for k, s := range v {
			m[k] = s
		}
		return m
	case []any:
		if v == nil {
			return nil
		}
	case map[string]any:
		if v == nil {
			return nil
		}
	}
	return v
}

// numberText is the text indenter.value writes for a number; false for a
// value it refuses and for anything that is not a number.
func numberText(v any) (string, bool) {
	switch v := v.(type) {
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", false
		}
		return string(jsonx.AppendFloat(nil, v)), true
	case jsonx.NumberLike:
		b, err := jsonx.AppendNumber(nil, v.String())
		return string(b), err == nil
	}
	return "", false
}
