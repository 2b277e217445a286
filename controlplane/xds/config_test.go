package xds

import (
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestCheckTenantConfig(t *testing.T) {
	good := string(pluginJSON("acme", "x"))
	withField := func(field string) string { return strings.Replace(good, `{`, `{`+field+`,`, 1) }
	for _, tc := range []struct {
		name    string
		tenant  string
		tc      TenantConfig
		wantErr string
	}{
		{name: "ok", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(good), Version: "v1", Revision: 1}},
		{name: "ok targeted", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(good), Version: "v1", Revision: 1, Regions: []string{"eu"}, Roles: []Role{RoleEdge}}},
		{name: "another tenant's bundle", tenant: "globex", tc: TenantConfig{PluginConfigJSON: []byte(good), Version: "v", Revision: 1}, wantErr: `bundles: tenant "acme" in a configuration for tenant "globex"`},
		{name: "node is the server's", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(withField(`"node":{"id":"x"}`)), Version: "v", Revision: 1}, wantErr: `"node" is set per node`},
		{name: "unknown field", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(withField(`"bundle_public_key":"x"`)), Version: "v", Revision: 1}, wantErr: `unknown field "bundle_public_key"`},
		{name: "PEM key material", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(withField(`"token":{"issuer":"-----BEGIN PUBLIC KEY-----"}`)), Version: "v", Revision: 1}, wantErr: "PEM key material"},
		{name: "escaped PEM key material", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(withField(`"token":{"issuer":"\u002d----BEGIN PRIVATE KEY"}`)), Version: "v", Revision: 1}, wantErr: "PEM key material"},
		{name: "duplicate key", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(withField(`"limits":{}, "limits":{}`)), Version: "v", Revision: 1}, wantErr: "duplicate key"},
		{name: "duplicate key by case", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(withField(`"Bundles":{}`)), Version: "v", Revision: 1}, wantErr: "duplicate key"},
		{name: "not an object", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(`[1]`), Version: "v", Revision: 1}, wantErr: "want a JSON object"},
		{name: "trailing data", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(good + `{}`), Version: "v", Revision: 1}, wantErr: "data after"},
		{name: "empty", tenant: "acme", tc: TenantConfig{Version: "v", Revision: 1}, wantErr: "plugin configuration"},
		{name: "no jwks", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(`{"limits":{}}`), Version: "v", Revision: 1}, wantErr: "jwks: required"},
		{name: "revision zero", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(good), Version: "v", Revision: 0}, wantErr: "revision: 0"},
		{name: "no version", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(good), Revision: 1}, wantErr: "version:"},
		{name: "bad tenant", tenant: "ac me", tc: TenantConfig{PluginConfigJSON: []byte(good), Version: "v", Revision: 1}, wantErr: "tenant"},
		{name: "bad region and role reported together", tenant: "acme", tc: TenantConfig{PluginConfigJSON: []byte(good), Version: "v", Revision: 1, Regions: []string{"eu west"}, Roles: []Role{"admin"}}, wantErr: "regions: \"eu west\""},
		{name: "too large", tenant: "acme", tc: TenantConfig{PluginConfigJSON: make([]byte, MaxPluginConfigBytes+1), Version: "v", Revision: 1}, wantErr: "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkTenantConfig(tc.tenant, tc.tc)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
			if tc.name == "bad region and role reported together" && !strings.Contains(err.Error(), `roles: "admin"`) {
				t.Fatalf("every problem should be reported: %v", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	c := testConfig(t)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Config{
		WasmURL:         "ftp://x/y",
		ControlPlaneTLS: &TLSFiles{CertFile: "a"},
		ListenerPort:    70000,
		Upstreams:       []Upstream{{Name: "aegis-cp", Host: "h", Port: 1}, {Name: "UP", Port: 0}, {Name: "ok", Host: "h", Port: 1, PathPrefix: "x"}},
	}
	err := bad.Validate()
	for _, want := range []string{"identity: required", "registerer: required", "wasm: required", "wasm_url", "control_plane:", "ca_file", "cert_file and key_file", "listener_port", `"aegis-cp" used twice`, `upstreams[1].name`, "upstreams[1]: host and port", "path_prefix"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestRevisionOf(t *testing.T) {
	for in, want := range map[string]int64{"r12-abcdef": 12, "r0-x": 0, "l-abc": 0, "": 0, "r-1-x": 0, "rx-1": 0} {
		if got := RevisionOf(in); got != want {
			t.Errorf("RevisionOf(%q) = %d, want %d", in, got, want)
		}
	}
}

// FuzzCheckTenantConfig: whatever the document, checking never panics, and
// an accepted one never carries another tenant's bundle, a node member or
// PEM armour, and yields a body the node member can be spliced into.
func FuzzCheckTenantConfig(f *testing.F) {
	f.Add(pluginJSON("acme", "x"))
	f.Add([]byte(`{"jwks":{"keys":[]},"bundles":{"acme":"QQ=="}}`))
	f.Add([]byte(`{"jwks":{},"bundles":{"globex":"QQ=="}}`))
	f.Add([]byte(`{"jwks":{},"token":{"issuer":"\u002d----BEGIN"}}`))
	f.Add([]byte(`{"jwks":{},"JWKS":{}}`))
	f.Add([]byte(`{"jwks":{}} x`))
	f.Add([]byte(`{"jwks":{},"node":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		members, err := checkTenantConfig("acme", TenantConfig{PluginConfigJSON: data, Version: "v", Revision: 1})
		if err != nil {
			return
		}
		if _, has := members["node"]; has {
			t.Fatal("node member accepted")
		}
		rel, err := newRelease("acme", TenantConfig{PluginConfigJSON: data, Version: "v", Revision: 1}, members, testNow)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pluginConfig(nodeInfo{id: "n1"}, rel)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := topLevelKeys(out)
		if err != nil {
			t.Fatalf("spliced configuration %q: %v", out, err)
		}
		if n := strings.Count(strings.Join(keys, ","), "node"); n != 1 {
			t.Fatalf("node members: %d in %v", n, keys)
		}
		if strings.Contains(string(out), "-----BEGIN") {
			t.Fatal("PEM shipped")
		}
	})
}
