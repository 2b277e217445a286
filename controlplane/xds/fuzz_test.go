package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// FuzzValidateDeep: any bytes as a typed extension config (the shape of an
// ECDS resource or a typed_config from a configuration file) are either
// refused or valid; the walk never panics or loops.
func FuzzValidateDeep(f *testing.F) {
	cfg := testConfig(f)
	b := mustBuilder(f, &cfg)
	for _, n := range []nodeInfo{{id: "n1", tenant: "acme"}, {id: "n2", tenant: "acme", region: "eu"}} {
		ecds, err := b.extensionConfig(n, nil)
		if err != nil {
			f.Fatal(err)
		}
		raw, _ := proto.Marshal(ecds)
		f.Add(raw)
	}
	l, err := b.listener(nodeInfo{id: "n1", tenant: "acme", role: RoleGateway})
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := proto.Marshal(&corev3.TypedExtensionConfig{Name: "l", TypedConfig: mustAny(f, l)})
	f.Add(raw)
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 0x78})
	f.Fuzz(func(t *testing.T, data []byte) {
		var tec corev3.TypedExtensionConfig
		if proto.Unmarshal(data, &tec) != nil {
			return
		}
		_ = ValidateDeep(&tec)
	})
}

// FuzzNodeInfo: whatever node a stream sends, it is bound only to the
// enrolled id and tenant, with a valid role and region.
func FuzzNodeInfo(f *testing.F) {
	for _, n := range []*corev3.Node{
		nodeProto("a1", map[string]any{"role": "gateway", "tenant": "acme", "region": "eu"}),
		nodeProto("a1", map[string]any{"role": "edge", "tenant": "globex"}),
		nodeProto("b1", map[string]any{"role": "sidecar"}),
		nodeProto("a1", map[string]any{"role": 7.0}),
	} {
		raw, _ := proto.Marshal(n)
		f.Add(raw)
	}
	m, err := newMetrics(prometheus.NewRegistry(), &Server{})
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{metrics: m}
	f.Fuzz(func(t *testing.T, data []byte) {
		var n corev3.Node
		if proto.Unmarshal(data, &n) != nil {
			return
		}
		info, err := s.nodeInfo(&streamState{nodeID: "a1", tenant: "acme"}, &n)
		if err != nil {
			return
		}
		if info.id != "a1" || info.tenant != "acme" || !info.role.valid() || (info.region != "" && !validName(info.region)) {
			t.Fatalf("accepted %+v from %v", info, &n)
		}
	})
}
