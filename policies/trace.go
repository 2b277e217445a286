package policies

import (
	"fmt"
	"strconv"
	"strings"
)

// Trace maps a position in generated Rego (from an IR plan location, an
// error, or a rule's line) back to the YAML it was compiled from, using the
// "# from file:line:col path" comment that precedes every generated rule.
// ok is false for lines that do not belong to a generated rule (the fixed
// framework in decision.rego, custom modules).
func Trace(rego []byte, row int) (Source, string, bool) {
	lines := strings.Split(string(rego), "\n")
	if row < 1 || row > len(lines) {
		return Source{}, "", false
	}
	for i := row - 1; i >= 0; i-- {
		l := lines[i]
		if rest, ok := strings.CutPrefix(l, "# from "); ok {
			return parseFrom(rest)
		}
		// A blank line ends the rule (and its comment) we started in.
		if strings.TrimSpace(l) == "" && i < row-1 {
			return Source{}, "", false
		}
	}
	return Source{}, "", false
}

func parseFrom(s string) (Source, string, bool) {
	loc, path, ok := strings.Cut(s, " ")
	if !ok {
		return Source{}, "", false
	}
	parts := strings.Split(loc, ":")
	if len(parts) < 3 {
		return Source{}, "", false
	}
	line, err1 := strconv.Atoi(parts[len(parts)-2])
	col, err2 := strconv.Atoi(parts[len(parts)-1])
	if err1 != nil || err2 != nil {
		return Source{}, "", false
	}
	return Source{Line: line, Col: col, Path: path}, strings.Join(parts[:len(parts)-2], ":"), true
}

// String prints the source as file-less "line:col path".
func (s Source) String() string { return fmt.Sprintf("%d:%d %s", s.Line, s.Col, s.Path) }
