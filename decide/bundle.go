package decide

import (
	"fmt"
	"math"
	"strings"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input"
	"github.com/aegis-mesh/aegis/internal/errs"
)

// Paths of the files a runtime bundle must carry.
const (
	PlanPath = "plan.json"
	DataPath = "data.json"
)

// PolicyInfo is what the compiler records in the manifest's "policy" object
// for the data plane: what the input builder must know before the policy
// runs.
type PolicyInfo struct {
	MCPEndpoints []input.MCPEndpoint
	MaxBodyBytes int
}

// ReadPolicyInfo reads the manifest's "policy" object strictly: the
// members it knows must have their types and exact names (a case variant
// is refused, where encoding/json would have matched it); others are the
// compiler's and ignored. It takes the values ParseManifest produces and
// the Go values a compiler puts there before marshalling.
func ReadPolicyInfo(m *bundle.Manifest) (PolicyInfo, error) {
	var info PolicyInfo
	if err := checkNames(m.Policy, "manifest policy", "mcp_endpoints", "max_body_bytes"); err != nil {
		return info, err
	}
	if v, ok := m.Policy["mcp_endpoints"]; ok {
		eps, err := mcpEndpoints(v)
		if err != nil {
			return info, errs.Errorf("manifest policy: mcp_endpoints%w", err)
		}
		info.MCPEndpoints = eps
	}
	if v, ok := m.Policy["max_body_bytes"]; ok {
		n, ok := policyInt(v)
		if !ok {
			return info, errs.Errorf("manifest policy: max_body_bytes: %s is not an integer", describe(v))
		}
		if n < 0 {
			return info, errs.Errorf("manifest policy: max_body_bytes %d is negative", n)
		}
		info.MaxBodyBytes = n
	}
	return info, nil
}

// checkNames refuses a member of obj that is one of names in another case.
func checkNames[V any](obj map[string]V, what string, names ...string) error {
	for k := range obj {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return errs.Errorf("%s: key %q must be spelled %q", what, k, n)
			}
		}
	}
	return nil
}

func mcpEndpoints(v any) ([]input.MCPEndpoint, error) {
	elems, ok := v.([]any)
	if !ok {
		return nil, errs.Errorf(": %s is not an array", describe(v))
	}
	var out []input.MCPEndpoint
	for i, e := range elems {
		obj, ok := e.(map[string]any)
		if !ok {
			return nil, errs.Errorf("[%d]: %s is not an object", i, describe(e))
		}
		if err := checkNames(obj, fmt.Sprintf("[%d]", i), "server", "host", "path"); err != nil {
			return nil, err
		}
		var ep input.MCPEndpoint
		for _, f := range [...]struct {
			name string
			dst  *string
		}{{"server", &ep.Server}, {"host", &ep.Host}, {"path", &ep.Path}} {
			fv, ok := obj[f.name]
			if !ok {
				continue
			}
			s, ok := fv.(string)
			if !ok {
				return nil, errs.Errorf("[%d].%s: %s is not a string", i, f.name, describe(fv))
			}
			*f.dst = s
		}
		out = append(out, ep)
	}
	return out, nil
}

// policyInt converts a policy number to an int: an integer as
// ParseManifest reads it (bundle.Number, or json.Number from other code)
// or as Go code writes it.
func policyInt(v any) (int, bool) {
	var n int64
	switch v := v.(type) {
	case int:
		return v, true
	case int64:
		n = v
	case float64:
		if v != math.Trunc(v) || v < math.MinInt64 || v >= math.MaxInt64 {
			return 0, false
		}
		n = int64(v)
	case interface{ Int64() (int64, error) }:
		i, err := v.Int64()
		if err != nil {
			return 0, false
		}
		n = i
	default:
		return 0, false
	}
	if int64(int(n)) != n {
		return 0, false
	}
	return int(n), true
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%v", v)
}

// FromBundle loads the policy of an opened bundle (archive or runtime).
// The caller verifies the signature first: FromBundle trusts its input.
func FromBundle(b *bundle.Bundle, opts ...engine.Option) (*Decider, error) {
	plan, ok := b.Files[PlanPath]
	if !ok {
		return nil, errs.Errorf("bundle %s/%s: no %s", b.Manifest.Tenant, b.Manifest.Name, PlanPath)
	}
	data, ok := b.Files[DataPath]
	if !ok {
		return nil, errs.Errorf("bundle %s/%s: no %s", b.Manifest.Tenant, b.Manifest.Name, DataPath)
	}
	dv, err := engine.FromJSON(data)
	if err != nil {
		return nil, errs.Errorf("bundle %s: %w", DataPath, err)
	}
	p, err := engine.Load(plan, dv, opts...)
	if err != nil {
		return nil, errs.Errorf("bundle %s: %w", PlanPath, err)
	}
	info, err := ReadPolicyInfo(&b.Manifest)
	if err != nil {
		return nil, err
	}
	return New(p, input.Options{MCPEndpoints: info.MCPEndpoints, MaxBodyBytes: info.MaxBodyBytes}), nil
}
