package xds

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// BenchmarkSnapshot builds one node's snapshot for a release carrying a
// 64 KiB bundle, its listener kept: the per-node cost of a publish.
func BenchmarkSnapshot(b *testing.B) {
	cfg := testConfig(b)
	bld := mustBuilder(b, &cfg)
	bundle := make([]byte, 64<<10)
	_, _ = rand.Read(bundle)
	conf, _ := json.Marshal(map[string]any{
		"bundles": map[string]string{"acme": base64.StdEncoding.EncodeToString(bundle)},
		"jwks":    map[string]any{"keys": []any{}},
	})
	tc := TenantConfig{PluginConfigJSON: conf, Version: "v", Revision: 1}
	members, err := checkTenantConfig("acme", tc)
	if err != nil {
		b.Fatal(err)
	}
	rel, err := newRelease("acme", tc, members, testNow)
	if err != nil {
		b.Fatal(err)
	}
	n := nodeInfo{id: "n1", tenant: "acme", role: RoleGateway}
	env, err := bld.envoy(n)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bld.snapshot(n, rel, env); err != nil {
			b.Fatal(err)
		}
	}
}
