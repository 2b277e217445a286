package decide

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/input"
)

// readPolicyInfoJSON is ReadPolicyInfo as it was: a round trip through
// encoding/json into a struct.
func readPolicyInfoJSON(m *bundle.Manifest) (PolicyInfo, error) {
	var info PolicyInfo
	raw, err := json.Marshal(m.Policy)
	if err != nil {
		return info, err
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
		return info, err
	}
	for _, e := range p.MCPEndpoints {
		info.MCPEndpoints = append(info.MCPEndpoints, input.MCPEndpoint{Server: e.Server, Host: e.Host, Path: e.Path})
	}
	if p.MaxBodyBytes < 0 {
		return info, fmt.Errorf("negative")
	}
	info.MaxBodyBytes = p.MaxBodyBytes
	return info, nil
}

// manifestWithPolicy returns a manifest as ParseManifest reads it, its
// policy member being policyJSON.
func manifestWithPolicy(t testing.TB, policyJSON string) (*bundle.Manifest, error) {
	t.Helper()
	m := bundle.Manifest{Format: bundle.Format, Kind: bundle.KindRuntime, Tenant: "t", Name: "n", Revision: 1,
		CreatedAt: time.Unix(1e9, 0).UTC(), ExpiresAt: time.Unix(2e9, 0).UTC(), EngineVersion: "e",
		Entrypoints: []string{"a"}, Files: map[string]string{"plan.json": strings.Repeat("a", 64)}}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(strings.TrimSpace(string(data)), "}") + `,"policy":` + policyJSON + "}"
	return bundle.ParseManifest([]byte(s))
}

func TestReadPolicyInfo(t *testing.T) {
	want := PolicyInfo{MCPEndpoints: []input.MCPEndpoint{{Server: "s", Host: "h", Path: "/mcp"}, {Path: "/p"}}, MaxBodyBytes: 1024}
	inMemory := &bundle.Manifest{Policy: map[string]any{
		"mcp_endpoints":  []any{map[string]any{"server": "s", "host": "h", "path": "/mcp"}, map[string]any{"path": "/p", "x": 1}},
		"max_body_bytes": 1024, "other": []int{1},
	}}
	parsed, err := manifestWithPolicy(t, `{"mcp_endpoints":[{"server":"s","host":"h","path":"/mcp"},{"path":"/p","x":1}],"max_body_bytes":1024,"other":{}}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*bundle.Manifest{inMemory, parsed} {
		got, err := ReadPolicyInfo(m)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ReadPolicyInfo = %+v, %v; want %+v", got, err, want)
		}
	}
	for _, v := range []any{int64(5), 5.0, bundle.Number("5"), json.Number("5")} {
		if got, err := ReadPolicyInfo(&bundle.Manifest{Policy: map[string]any{"max_body_bytes": v}}); err != nil || got.MaxBodyBytes != 5 {
			t.Errorf("max_body_bytes %T: %+v, %v", v, got, err)
		}
	}
	if got, err := ReadPolicyInfo(&bundle.Manifest{}); err != nil || !reflect.DeepEqual(got, PolicyInfo{}) {
		t.Errorf("no policy: %+v, %v", got, err)
	}
}

func TestReadPolicyInfoRejects(t *testing.T) {
	tests := []struct{ name, policy, want string }{
		{"negative", `{"max_body_bytes":-1}`, "negative"},
		{"fraction", `{"max_body_bytes":1.5}`, "max_body_bytes"},
		{"exponent", `{"max_body_bytes":1e3}`, "max_body_bytes"},
		{"beyond int64", `{"max_body_bytes":9223372036854775808}`, "max_body_bytes"},
		{"string", `{"max_body_bytes":"5"}`, "max_body_bytes"},
		{"null", `{"max_body_bytes":null}`, "max_body_bytes"},
		{"case variant", `{"Max_Body_Bytes":5}`, `must be spelled "max_body_bytes"`},
		{"endpoints object", `{"mcp_endpoints":{}}`, "mcp_endpoints"},
		{"endpoint string", `{"mcp_endpoints":["/mcp"]}`, "mcp_endpoints[0]"},
		{"endpoint path number", `{"mcp_endpoints":[{"path":1}]}`, "mcp_endpoints[0].path"},
		{"endpoint case variant", `{"mcp_endpoints":[{"Path":"/a"}]}`, `must be spelled "path"`},
		{"endpoints case variant", `{"MCP_endpoints":[]}`, `must be spelled "mcp_endpoints"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := manifestWithPolicy(t, tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ReadPolicyInfo(m); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadPolicyInfo = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// FuzzReadPolicyInfo: whatever ReadPolicyInfo accepts, the encoding/json
// round trip it replaces accepted with the same result. (It refuses more:
// case variants and null.)
func FuzzReadPolicyInfo(f *testing.F) {
	f.Add(`{"mcp_endpoints":[{"server":"s","host":"h","path":"/mcp"}],"max_body_bytes":1024}`)
	f.Add(`{"max_body_bytes":1e3,"mcp_endpoints":null}`)
	f.Add(`{"MCP_ENDPOINTS":[{"PATH":"x"}],"x":[1,{}]}`)
	f.Fuzz(func(t *testing.T, policy string) {
		m, err := manifestWithPolicy(t, policy)
		if err != nil {
			return
		}
		got, err := ReadPolicyInfo(m)
		if err != nil {
			return
		}
		old, err := readPolicyInfoJSON(m)
		if err != nil || !reflect.DeepEqual(got, old) {
			t.Fatalf("policy %s: got %+v, encoding/json read %+v, %v", policy, got, old, err)
		}
	})
}
