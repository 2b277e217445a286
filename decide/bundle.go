package decide

import (
	"encoding/json"
	"fmt"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input"
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

// ReadPolicyInfo reads the manifest's "policy" object strictly.
func ReadPolicyInfo(m *bundle.Manifest) (PolicyInfo, error) {
	var info PolicyInfo
	raw, err := json.Marshal(m.Policy)
	if err != nil {
		return info, fmt.Errorf("manifest policy: %w", err)
	}
	var p struct {
		MCPEndpoints []struct {
			Server string `json:"server"`
			Host   string `json:"host"`
			Path   string `json:"path"`
		} `json:"mcp_endpoints"`
		MaxBodyBytes int `json:"max_body_bytes"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return info, fmt.Errorf("manifest policy: %w", err)
	}
	for _, e := range p.MCPEndpoints {
		info.MCPEndpoints = append(info.MCPEndpoints, input.MCPEndpoint{Server: e.Server, Host: e.Host, Path: e.Path})
	}
	if p.MaxBodyBytes < 0 {
		return info, fmt.Errorf("manifest policy: max_body_bytes %d is negative", p.MaxBodyBytes)
	}
	info.MaxBodyBytes = p.MaxBodyBytes
	return info, nil
}

// FromBundle loads the policy of an opened bundle (archive or runtime).
// The caller verifies the signature first: FromBundle trusts its input.
func FromBundle(b *bundle.Bundle, opts ...engine.Option) (*Decider, error) {
	plan, ok := b.Files[PlanPath]
	if !ok {
		return nil, fmt.Errorf("bundle %s/%s: no %s", b.Manifest.Tenant, b.Manifest.Name, PlanPath)
	}
	data, ok := b.Files[DataPath]
	if !ok {
		return nil, fmt.Errorf("bundle %s/%s: no %s", b.Manifest.Tenant, b.Manifest.Name, DataPath)
	}
	dv, err := engine.FromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", DataPath, err)
	}
	p, err := engine.Load(plan, dv, opts...)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", PlanPath, err)
	}
	info, err := ReadPolicyInfo(&b.Manifest)
	if err != nil {
		return nil, err
	}
	return New(p, input.Options{MCPEndpoints: info.MCPEndpoints, MaxBodyBytes: info.MaxBodyBytes}), nil
}
