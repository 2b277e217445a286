package xds

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// gatewayListener builds a real node listener, for mutation.
func gatewayListener(t testing.TB) *listenerv3.Listener {
	t.Helper()
	cfg := testConfig(t)
	l, err := mustBuilder(t, &cfg).listener(nodeInfo{id: "gw-1", tenant: "acme", region: "eu", role: RoleGateway})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// rewriteManager unpacks the listener's connection manager, lets edit
// change it, and packs it back.
func rewriteManager(t testing.TB, l *listenerv3.Listener, edit func(*hcmv3.HttpConnectionManager)) {
	t.Helper()
	f := l.FilterChains[0].Filters[0]
	var m hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&m); err != nil {
		t.Fatal(err)
	}
	edit(&m)
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &m)}
}

func TestValidateDeep(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     func(t testing.TB) proto.Message
		wantErr string // "" = valid
		// shallowPasses: the generated Validate alone misses the problem,
		// which is the reason ValidateDeep exists.
		shallowPasses bool
	}{
		{name: "node listener", msg: func(t testing.TB) proto.Message { return gatewayListener(t) }},
		{
			name: "http filter without a name inside the connection manager",
			msg: func(t testing.TB) proto.Message {
				l := gatewayListener(t)
				rewriteManager(t, l, func(m *hcmv3.HttpConnectionManager) { m.HttpFilters[1].Name = "" })
				return l
			},
			wantErr:       "filter_chains[0].filters[0].typed_config<envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager>: invalid HttpConnectionManager.HttpFilters[1]",
			shallowPasses: true,
		},
		{
			name: "wasm default config without sha256, two Anys down",
			msg: func(t testing.TB) proto.Message {
				l := gatewayListener(t)
				rewriteManager(t, l, func(m *hcmv3.HttpConnectionManager) {
					src := m.HttpFilters[0].GetConfigDiscovery()
					var w wasmfilterv3.Wasm
					if err := src.DefaultConfig.UnmarshalTo(&w); err != nil {
						t.Fatal(err)
					}
					w.Config.GetVmConfig().Code.GetRemote().Sha256 = ""
					src.DefaultConfig = mustAny(t, &w)
				})
				return l
			},
			wantErr:       "default_config<envoy.extensions.filters.http.wasm.v3.Wasm>: invalid Wasm.Config",
			shallowPasses: true,
		},
		{
			name: "typed config of a type this binary does not know",
			msg: func(t testing.TB) proto.Message {
				return &corev3.TypedExtensionConfig{Name: "x", TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/acme.Unknown", Value: []byte{}}}
			},
			wantErr:       "type not known to this binary",
			shallowPasses: true,
		},
		{
			name: "typed config whose bytes do not parse",
			msg: func(t testing.TB) proto.Message {
				return &corev3.TypedExtensionConfig{Name: "x", TypedConfig: &anypb.Any{TypeUrl: WasmTypeURL, Value: []byte{0x0a, 0xff}}}
			},
			wantErr:       "typed_config",
			shallowPasses: true,
		},
		{
			name: "typed config with fields this binary does not know",
			msg: func(t testing.TB) proto.Message {
				// field 99, varint 1: not a field of Wasm
				return &corev3.TypedExtensionConfig{Name: "x", TypedConfig: &anypb.Any{TypeUrl: WasmTypeURL, Value: []byte{0x98, 0x06, 0x01}}}
			},
			wantErr:       "fields unknown to this binary",
			shallowPasses: true,
		},
		{
			name: "Any nested in Any beyond the depth bound",
			msg: func(t testing.TB) proto.Message {
				var inner proto.Message = wrapperspb.String("x")
				for range maxValidateDepth + 2 {
					inner = mustAny(t, inner)
				}
				return &corev3.TypedExtensionConfig{Name: "x", TypedConfig: inner.(*anypb.Any)}
			},
			wantErr:       "nested more than",
			shallowPasses: true,
		},
		{
			name: "top-level rule (empty route config name is fine, empty virtual host domains are not)",
			msg: func(t testing.TB) proto.Message {
				return &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "v"}}}
			},
			wantErr: "(root): invalid RouteConfiguration.VirtualHosts[0]",
		},
		{
			name: "wasm plugin configuration is a StringValue (no rules) inside a valid Wasm",
			msg: func(t testing.TB) proto.Message {
				return &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{Configuration: mustAny(t, wrapperspb.String(`{}`))}}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.msg(t)
			err := ValidateDeep(m)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.shallowPasses {
				if err := m.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
					t.Fatalf("the generated validator already catches this (%v): the case does not show the deep walk", err)
				}
			}
		})
	}
	if err := ValidateDeep(nil); err == nil {
		t.Fatal("nil accepted")
	}
}

// TestSnapshotResources checks what each role receives and that every
// resource passes ValidateDeep (snapshot refuses otherwise).
func TestSnapshotResources(t *testing.T) {
	cfg := testConfig(t)
	b := mustBuilder(t, &cfg)
	members, err := checkTenantConfig("acme", TenantConfig{PluginConfigJSON: pluginJSON("acme", "m"), Version: "v1", Revision: 4})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := newRelease("acme", TenantConfig{PluginConfigJSON: pluginJSON("acme", "m"), Version: "v1", Revision: 4}, members, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		role          Role
		listener      string
		listenerHost  string
		wantListeners int
	}{
		{RoleGateway, ListenerGateway, "0.0.0.0", 1},
		{RoleSidecar, ListenerSidecar, "127.0.0.1", 1},
		{RoleEdge, "", "", 0},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			n := nodeInfo{id: "n-1", tenant: "acme", region: "eu", role: tc.role}
			snap, err := b.snapshot(n, rel, nil)
			if err != nil {
				t.Fatal(err)
			}
			ecds := snap.Resources[types.ExtensionConfig]
			if len(ecds.Items) != 1 || ecds.Version != b.ecdsVersion(n, rel) || RevisionOf(ecds.Version) != 4 {
				t.Fatalf("ECDS %v version %q", ecds.Items, ecds.Version)
			}
			tec := ecds.Items[FilterName].Resource.(*corev3.TypedExtensionConfig)
			var w wasmfilterv3.Wasm
			if err := tec.GetTypedConfig().UnmarshalTo(&w); err != nil {
				t.Fatal(err)
			}
			pc := w.GetConfig()
			if pc.ProtoReflect().Has(pc.ProtoReflect().Descriptor().Fields().ByName("fail_open")) || pc.GetFailurePolicy() != wasmv3.FailurePolicy_FAIL_CLOSED {
				t.Fatal("filter does not fail closed")
			}
			remote := pc.GetVmConfig().GetCode().GetRemote()
			if remote.GetSha256() != b.wasmSHA256 || remote.GetHttpUri().GetUri() != cfg.WasmURL || remote.GetHttpUri().GetCluster() != ClusterControlPlane || remote.GetRetryPolicy().GetNumRetries().GetValue() == 0 {
				t.Fatalf("remote code %v", remote)
			}
			if got := pc.GetVmConfig().GetEnvironmentVariables().GetHostEnvKeys(); strings.Join(got, ",") != strings.Join(TrustEnvKeys, ",") {
				t.Fatalf("host env keys %v", got)
			}
			conf := ecdsConfig(t, mustAny(t, tec))
			if _, has := conf["node"]; !has {
				t.Fatal("no node member")
			}
			ls := snap.Resources[types.Listener].Items
			if len(ls) != tc.wantListeners {
				t.Fatalf("%d listeners", len(ls))
			}
			if tc.wantListeners == 0 {
				if len(snap.Resources[types.Cluster].Items)+len(snap.Resources[types.Route].Items) != 0 {
					t.Fatal("edge got Envoy resources")
				}
				return
			}
			l := ls[tc.listener].Resource.(*listenerv3.Listener)
			if l.GetAddress().GetSocketAddress().GetAddress() != tc.listenerHost || l.GetPerConnectionBufferLimitBytes().GetValue() <= 16<<20 {
				t.Fatalf("listener %v", l)
			}
			// A new release changes only the ECDS version.
			rel2 := *rel
			rel2.digest = "other"
			rel2.cfg.Revision = 5
			snap2, err := b.snapshot(n, &rel2, nil)
			if err != nil {
				t.Fatal(err)
			}
			if snap2.Resources[types.Listener].Version != snap.Resources[types.Listener].Version || snap2.Resources[types.ExtensionConfig].Version == ecds.Version ||
				snap2.VersionMap[resource.ListenerType][l.Name] != snap.VersionMap[resource.ListenerType][l.Name] ||
				snap2.VersionMap[resource.ExtensionConfigType][FilterName] != snap2.Resources[types.ExtensionConfig].Version {
				t.Fatal("a release must change the ECDS version and nothing else")
			}
			routes := snap.Resources[types.Route].Items[RouteName].Resource.(*routev3.RouteConfiguration)
			if p := routes.VirtualHosts[0].Routes[0].GetMatch().GetPrefix(); p != "/payments" {
				t.Fatalf("longest prefix first: got %q", p)
			}
			if len(snap.Resources[types.Cluster].Items) != 3 {
				t.Fatalf("clusters %v", snap.Resources[types.Cluster].Items)
			}
		})
	}
}

// TestDenyConfiguration: the warming default and the no-release
// configuration carry no bundle and a JWKS no token verifies against.
func TestDenyConfiguration(t *testing.T) {
	conf, err := pluginConfig(nodeInfo{id: "gw-1", region: "eu"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"jwks":{"keys":[{"crv":"Ed25519","kid":"aegis-deny-all","kty":"OKP","x":"` + denyJWKSKey + `"}]},"no_bundle":{"read":"closed","write":"closed"},"node":{"id":"gw-1","region":"eu"}}`
	if string(conf) != want {
		t.Fatalf("deny configuration\n got %s\nwant %s", conf, want)
	}
	// The key's y coordinate (little-endian, sign bit clear) has no x on
	// edwards25519 -x²+y²=1+dx²y²: x² = (y²-1)/(dy²+1) is not a square
	// mod p, so Ed25519 verification fails for every signature.
	raw, err := base64.RawURLEncoding.DecodeString(denyJWKSKey)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("key %v %d", err, len(raw))
	}
	le := make([]byte, 32)
	for i := range raw {
		le[31-i] = raw[i]
	}
	le[0] &= 0x7f
	y := new(big.Int).SetBytes(le)
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	d := new(big.Int).Mul(big.NewInt(-121665), new(big.Int).ModInverse(big.NewInt(121666), p))
	d.Mod(d, p)
	y2 := new(big.Int).Mul(y, y)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	v := new(big.Int).Add(new(big.Int).Mul(d, y2), big.NewInt(1))
	x2 := new(big.Int).Mul(u, new(big.Int).ModInverse(v, p))
	x2.Mod(x2, p)
	euler := new(big.Int).Exp(x2, new(big.Int).Rsh(new(big.Int).Sub(p, big.NewInt(1)), 1), p)
	if euler.Cmp(big.NewInt(1)) == 0 || x2.Sign() == 0 {
		t.Fatal("the deny key decodes to a curve point: a private key for it may exist")
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	_ = pub
	if ed25519.Verify(ed25519.PublicKey(raw), []byte("m"), ed25519.Sign(priv, []byte("m"))) {
		t.Fatal("verified")
	}
}

func mustBuilder(t testing.TB, cfg *Config) *builder {
	t.Helper()
	b, err := newBuilder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExtensionConfigEncoding: the hand-written wire form of the ECDS
// resource is exactly what marshalling the message gives, and what
// validateRelease checks is what every node gets but for "node".
func TestExtensionConfigEncoding(t *testing.T) {
	cfg := testConfig(t)
	b := mustBuilder(t, &cfg)
	tc := TenantConfig{PluginConfigJSON: pluginJSON("acme", "m"), Version: "v1", Revision: 4}
	members, err := checkTenantConfig("acme", tc)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := newRelease("acme", tc, members, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*release{nil, rel} {
		for _, n := range []nodeInfo{{id: "n1", tenant: "acme"}, {id: "gw-eu-7", tenant: "acme", region: "eu-west-1"}} {
			got, err := b.extensionConfig(n, r)
			if err != nil {
				t.Fatal(err)
			}
			conf, err := pluginConfig(n, r)
			if err != nil {
				t.Fatal(err)
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(b.wasm(conf))
			if err != nil {
				t.Fatal(err)
			}
			if got.GetTypedConfig().GetTypeUrl() != WasmTypeURL || !bytes.Equal(got.GetTypedConfig().GetValue(), want) {
				t.Fatalf("node %s: encoding differs from proto.Marshal", n.id)
			}
			if err := ValidateDeep(got); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A release whose resource fails validation is refused at publish.
	env := newEnv(t, nil)
	// Remote code without its sha256 pin violates a rule.
	full := env.srv.build.wasm(nil).GetConfig()
	full.GetVmConfig().GetCode().GetRemote().Sha256 = ""
	det := proto.MarshalOptions{Deterministic: true}
	policy, _ := det.Marshal(&wasmv3.PluginConfig{FailurePolicy: full.FailurePolicy})
	vm, _ := det.Marshal(&wasmv3.PluginConfig{Vm: full.Vm})
	env.srv.build.pcTail = append(policy, vm...)
	if err := env.srv.SetTenant(testCtx(t), "acme", tc); err == nil || !strings.Contains(err.Error(), "Sha256") {
		t.Fatalf("got %v", err)
	}
}
