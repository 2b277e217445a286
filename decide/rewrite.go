package decide

import (
	"fmt"
	"strconv"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/internal/errs"
)

// Rewrite applies the redactions of calls to the parsed body and returns
// the new body. For plain HTTP the parameters are the body itself; for MCP
// they are params.arguments of the JSON-RPC request (of element Index in a
// batch).
func Rewrite(root engine.Value, batch bool, calls []Call) ([]byte, error) {
	if root == nil {
		return nil, errs.Errorf("rewriting body: there is no JSON body to redact")
	}
	var err error
	for _, c := range calls {
		for _, r := range c.Decision.Redactions {
			path := r.Path
			if c.MCP != nil {
				prefix := []string{"params", "arguments"}
				if batch {
					prefix = append([]string{fmt.Sprint(c.MCP.Index)}, prefix...)
				}
				path = append(prefix, path...)
			}
			root, err = setPath(root, path, engine.String(r.Value))
			if err != nil {
				return nil, errs.Errorf("rewriting body at %v: %w", path, err)
			}
		}
	}
	return engine.ToJSON(root)
}

// setPath returns a copy of v with the value at path replaced. The value
// must already exist: a redaction replaces what the policy saw, never adds.
func setPath(v engine.Value, path []string, nv engine.Value) (engine.Value, error) {
	if len(path) == 0 {
		return nv, nil
	}
	switch c := v.(type) {
	case *engine.Object:
		cur, ok := c.Get(path[0])
		if !ok {
			return nil, errs.Errorf("no field %q", path[0])
		}
		child, err := setPath(cur, path[1:], nv)
		if err != nil {
			return nil, err
		}
		out := engine.NewObject(c.Len())
		c.Range(func(k, val engine.Value) bool {
			if s, ok := engine.AsString(k); ok && s == path[0] {
				val = child
			}
			out.Insert(k, val)
			return true
		})
		return out, nil
	case *engine.Array:
		// Only the canonical decimal form names an element ("01", "+1" do
		// not). strconv rather than fmt.Sscanf: the scanner is 60 kB of the
		// filter module and this was its only caller.
		i, err := strconv.Atoi(path[0])
		if err != nil || i < 0 || i >= c.Len() || strconv.Itoa(i) != path[0] {
			return nil, errs.Errorf("no element %q", path[0])
		}
		child, err := setPath(c.Index(i), path[1:], nv)
		if err != nil {
			return nil, err
		}
		out := engine.NewArray(c.Len())
		for j := 0; j < c.Len(); j++ {
			if j == i {
				out.Append(child)
			} else {
				out.Append(c.Index(j))
			}
		}
		return out, nil
	}
	return nil, errs.Errorf("cannot descend into a %s", engine.TypeName(v))
}
