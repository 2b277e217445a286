package engine

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// Semantic versions as OPA parses them: an optional "v", MAJOR.MINOR.PATCH
// without leading zeros, optional -pre.release and +build metadata.

var semverIdentifiers = regexp.MustCompile(`^[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*$`)

type semver struct {
	major, minor, patch int64
	pre                 string
}

func parseSemver(s string) (semver, error) {
	var v semver
	s = strings.TrimPrefix(s, "v")
	s, meta, hasMeta := strings.Cut(s, "+")
	if hasMeta && !semverIdentifiers.MatchString(meta) {
		return v, errs.Errorf("invalid metadata identifier: %s", meta)
	}
	s, pre, hasPre := strings.Cut(s, "-")
	if hasPre {
		if !semverIdentifiers.MatchString(pre) {
			return v, errs.Errorf("invalid pre-release identifier: %s", pre)
		}
		for _, id := range strings.Split(pre, ".") {
			if len(id) > 1 && id[0] == '0' && allDigits(id) {
				return v, errs.Errorf("invalid pre-release identifier: %s", pre)
			}
		}
		v.pre = pre
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, errs.Errorf("%s should contain major, minor, and patch versions", s)
	}
	nums := [3]*int64{&v.major, &v.minor, &v.patch}
	for i, p := range parts {
		if p == "" || p[0] == '+' || p[0] == '-' || (len(p) > 1 && p[0] == '0') {
			return v, errs.Errorf("%q is not a valid numeric identifier", p)
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return v, err
		}
		*nums[i] = n
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func (v semver) compare(o semver) int {
	for _, d := range [][2]int64{{v.major, o.major}, {v.minor, o.minor}, {v.patch, o.patch}} {
		if c := cmpInt(d[0], d[1]); c != 0 {
			return c
		}
	}
	switch {
	case v.pre == o.pre:
		return 0
	case v.pre == "":
		return 1
	case o.pre == "":
		return -1
	}
	a, b := strings.Split(v.pre, "."), strings.Split(o.pre, ".")
	for i := 0; i < len(a) && i < len(b); i++ {
		ai, bi := allDigits(a[i]), allDigits(b[i])
		switch {
		case ai && !bi:
			return -1
		case !ai && bi:
			return 1
		case ai && bi:
			// Atoi saturates on overflow, as in OPA.
			x, _ := strconv.Atoi(a[i])
			y, _ := strconv.Atoi(b[i])
			if c := cmpInt(int64(x), int64(y)); c != 0 {
				return c
			}
		default:
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
	}
	return cmpInt(int64(len(a)), int64(len(b)))
}

func bSemverIsValid(_ *evalState, args []Value) (Value, error) {
	s, ok := args[0].(stringValue)
	if !ok {
		return valFalse, nil
	}
	_, err := parseSemver(string(s))
	return Bool(err == nil), nil
}

func bSemverCompare(_ *evalState, args []Value) (Value, error) {
	a, b, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	va, err := parseSemver(a)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: "operand 1: string " + a + " is not a valid SemVer"}
	}
	vb, err := parseSemver(b)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: "operand 2: string " + b + " is not a valid SemVer"}
	}
	return intNumber(int64(va.compare(vb))), nil
}
