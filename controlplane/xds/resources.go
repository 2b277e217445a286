package xds

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// WasmTypeURL is the type of the ECDS resource's typed config.
const WasmTypeURL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"

// TrustEnvKeys are the node environment variables the filter VM inherits
// (vm_config.environment_variables.host_env_keys): the trust root and the
// node's own credentials, which the operator deploys and xDS never carries.
var TrustEnvKeys = []string{"AEGIS_BUNDLE_PUBLIC_KEY", "AEGIS_STATE_PUBLIC_KEY", "AEGIS_NODE_SIGNING_KEY", "AEGIS_NODE_TOKEN"}

// denyJWKSKey is an Ed25519 "public key" whose bytes are not the encoding
// of a curve point (y = 2 has no x on edwards25519), so no signature ever
// verifies against it: a JWKS the filter accepts and no token satisfies.
const denyJWKSKey = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// bufferLimit is the listener's per-connection buffer: above the filter's
// largest max_body_bytes (16 MiB), or Envoy answers 413 before the filter
// can explain its decision.
const bufferLimit = 17 << 20

// nodeInfo is what the server knows about a node when it builds resources.
type nodeInfo struct {
	id     string
	tenant string
	region string
	role   Role
}

// builder makes the resources of a node. It is pure: the same inputs give
// the same resources and versions.
type builder struct {
	cfg         *Config
	fingerprint []byte
	wasmSHA256  string
	// pcHead and pcTail are the wire form of the filter's PluginConfig
	// before and after its configuration field.
	pcHead, pcTail []byte
}

func newBuilder(cfg *Config) (*builder, error) {
	sum := sha256.Sum256(cfg.Wasm)
	b := &builder{cfg: cfg, fingerprint: cfg.fingerprint(), wasmSHA256: hex.EncodeToString(sum[:])}
	// PluginConfig's fields before configuration (4) and after it, in the
	// order protobuf-go writes them: by number, oneof members (vm_config)
	// last.
	full := b.wasm(nil).GetConfig()
	det := proto.MarshalOptions{Deterministic: true}
	head, err := det.Marshal(&wasmv3.PluginConfig{Name: full.Name, RootId: full.RootId})
	if err != nil {
		return nil, err
	}
	policy, err := det.Marshal(&wasmv3.PluginConfig{FailurePolicy: full.FailurePolicy})
	if err != nil {
		return nil, err
	}
	vm, err := det.Marshal(&wasmv3.PluginConfig{Vm: full.Vm})
	if err != nil {
		return nil, err
	}
	b.pcHead, b.pcTail = head, append(policy, vm...)
	return b, nil
}

// ecdsVersion is the version of the node's ECDS resource: the release
// revision for people, and a digest of everything the resource depends on
// so that any change reaches state-of-the-world clients.
func (b *builder) ecdsVersion(n nodeInfo, rel *release) string {
	h := sha256.New()
	h.Write(b.fingerprint)
	fmt.Fprintf(h, "%q %q %q\n", n.id, n.tenant, n.region)
	var rev int64
	if rel != nil {
		h.Write([]byte(rel.digest))
		rev = rel.cfg.Revision
	}
	return "r" + strconv.FormatInt(rev, 10) + "-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// RevisionOf reads the release revision out of an ECDS version
// (r<revision>-<digest>); 0 for anything else.
func RevisionOf(version string) int64 {
	s, ok := strings.CutPrefix(version, "r")
	if !ok {
		return 0
	}
	s, _, _ = strings.Cut(s, "-")
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func (b *builder) listenerVersion(n nodeInfo) string {
	h := sha256.New()
	h.Write(b.fingerprint)
	fmt.Fprintf(h, "%q %q %q\n", n.id, n.region, n.role)
	return "l-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// envoyResources are a node's listener, routes and clusters. They depend
// on the node and the server configuration only, never on a release, so a
// node keeps them from one publish to the next.
type envoyResources struct {
	version   string
	listeners []types.Resource
	routes    []types.Resource
	clusters  []types.Resource
}

// envoy builds and validates the Envoy resources of n (none for the edge).
func (b *builder) envoy(n nodeInfo) (*envoyResources, error) {
	e := &envoyResources{version: b.listenerVersion(n)}
	if n.role == RoleEdge {
		return e, nil
	}
	l, err := b.listener(n)
	if err != nil {
		return nil, err
	}
	e.listeners = []types.Resource{l}
	e.routes = []types.Resource{b.routes()}
	e.clusters = b.clusters()
	for _, set := range [][]types.Resource{e.listeners, e.routes, e.clusters} {
		for _, r := range set {
			if err := ValidateDeep(r); err != nil {
				return nil, fmt.Errorf("resource %s: %w", cache.GetResourceName(r), err)
			}
		}
	}
	return e, nil
}

// snapshot builds the node's snapshot: ECDS for every role, and for Envoy
// roles the listener, its routes and clusters (env, from envoy; nil builds
// them). Every resource is checked with ValidateDeep and the snapshot with
// Consistent before it is used.
func (b *builder) snapshot(n nodeInfo, rel *release, env *envoyResources) (*cache.Snapshot, error) {
	if env == nil {
		var err error
		if env, err = b.envoy(n); err != nil {
			return nil, err
		}
	}
	// The ECDS resource is not validated here but once per release
	// (validateRelease): a node's copy differs only in the "node" member of
	// the plugin configuration string, which no rule constrains, and
	// validating every copy was the largest per-node cost of a publish.
	ecds, err := b.extensionConfig(n, rel)
	if err != nil {
		return nil, err
	}
	ev := b.ecdsVersion(n, rel)
	snap := &cache.Snapshot{VersionMap: map[string]map[string]string{}}
	set := func(typ types.ResponseType, url, version string, items []types.Resource) {
		snap.Resources[typ] = cache.NewResources(version, items)
		// The delta server decides what changed from this map. Our
		// versions already digest everything a resource depends on, so
		// they stand in for the content hashes go-control-plane would
		// otherwise compute by marshalling and hashing every resource of
		// every node on every publish. (Responses still carry its hash of
		// what is sent; a reconnecting delta client quoting one gets the
		// resource once more.)
		m := make(map[string]string, len(items))
		for _, r := range items {
			m[cache.GetResourceName(r)] = version
		}
		snap.VersionMap[url] = m
	}
	set(types.ExtensionConfig, resource.ExtensionConfigType, ev, []types.Resource{ecds})
	if n.role != RoleEdge {
		set(types.Listener, resource.ListenerType, env.version, env.listeners)
		set(types.Route, resource.RouteType, env.version, env.routes)
		set(types.Cluster, resource.ClusterType, env.version, env.clusters)
	}
	if err := snap.Consistent(); err != nil {
		return nil, err
	}
	return snap, nil
}

// validateRelease checks the ECDS resource of rel (nil: the deny
// configuration) with ValidateDeep, as any node of its tenant would get it.
func (b *builder) validateRelease(tenant string, rel *release) error {
	ecds, err := b.extensionConfig(nodeInfo{id: "validation-template", tenant: tenant, region: "region", role: RoleGateway}, rel)
	if err != nil {
		return err
	}
	if err := ValidateDeep(ecds); err != nil {
		return fmt.Errorf("resource %s: %w", FilterName, err)
	}
	return nil
}

// pluginConfig is the filter configuration a node gets: the release's
// members (or the deny configuration) with "node" set to the node's
// enrolled identity.
func pluginConfig(n nodeInfo, rel *release) ([]byte, error) {
	head, node, err := pluginConfigParts(n, rel)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(head)+len(node)+1)
	return append(append(append(out, head...), node...), '}'), nil
}

// pluginConfigParts returns the plugin configuration as head + node + "}":
// the release body is marshalled once, and only the node member is made
// per node.
func pluginConfigParts(n nodeInfo, rel *release) (head, node []byte, err error) {
	if rel == nil {
		deny, err := denyConfig(nodeMember(n))
		if err != nil {
			return nil, nil, err
		}
		return deny[:len(deny)-1], nil, nil
	}
	member, err := marshal(nodeMember(n))
	if err != nil {
		return nil, nil, err
	}
	body := rel.body
	return body[:len(body)-1], append([]byte(`,"node":`), member...), nil
}

func nodeMember(n nodeInfo) map[string]string {
	node := map[string]string{"id": n.id}
	if n.region != "" {
		node["region"] = n.region
	}
	return node
}

// denyConfig is what a node runs before (default_config) and without a
// release: no bundle for any tenant (no_bundle is closed for reads and
// writes) and a JWKS no token verifies against, so every call is refused
// with the filter's JSON reply rather than let through or answered by a
// bare Envoy 500.
func denyConfig(node map[string]string) ([]byte, error) {
	return marshal(map[string]any{
		"jwks":      map[string]any{"keys": []any{map[string]string{"kty": "OKP", "crv": "Ed25519", "x": denyJWKSKey, "kid": "aegis-deny-all"}}},
		"node":      node,
		"no_bundle": map[string]string{"read": "closed", "write": "closed"},
	})
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// extensionConfig builds the node's ECDS resource: a TypedExtensionConfig
// holding the Wasm filter configuration with the node's plugin
// configuration. It writes the Wasm wire form directly, the fixed parts
// (pcHead, pcTail) marshalled once, in one allocation: the same bytes as
// marshalling b.wasm(conf) (tested), without the three intermediate copies
// of a configuration that carries whole bundles, for every node of a
// publish.
func (b *builder) extensionConfig(n nodeInfo, rel *release) (*corev3.TypedExtensionConfig, error) {
	head, node, err := pluginConfigParts(n, rel)
	if err != nil {
		return nil, err
	}
	confLen := len(head) + len(node) + 1
	svLen := fieldSize(1, confLen)
	anyLen := fieldSize(1, len(stringValueURL)) + fieldSize(2, svLen)
	pcLen := len(b.pcHead) + fieldSize(4, anyLen) + len(b.pcTail)
	buf := make([]byte, 0, fieldSize(1, pcLen))
	buf = appendLen(buf, 1, pcLen) // Wasm.config
	buf = append(buf, b.pcHead...)
	buf = appendLen(buf, 4, anyLen) // PluginConfig.configuration
	buf = appendLen(buf, 1, len(stringValueURL))
	buf = append(buf, stringValueURL...) // Any.type_url
	buf = appendLen(buf, 2, svLen)       // Any.value
	buf = appendLen(buf, 1, confLen)     // StringValue.value
	buf = append(buf, head...)
	buf = append(buf, node...)
	buf = append(buf, '}')
	buf = append(buf, b.pcTail...)
	return &corev3.TypedExtensionConfig{Name: FilterName, TypedConfig: &anypb.Any{TypeUrl: WasmTypeURL, Value: buf}}, nil
}

const stringValueURL = "type.googleapis.com/google.protobuf.StringValue"

// fieldSize is the wire size of a length-delimited field of n bytes.
func fieldSize(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendLen(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// wasm is the filter's configuration: the module fetched from the control
// plane and pinned by sha256 (with retries: remote fetches fail
// transiently), fail closed, trust root from the node's environment.
func (b *builder) wasm(pluginJSON []byte) *wasmfilterv3.Wasm {
	var conf *anypb.Any
	if pluginJSON != nil {
		conf, _ = anypb.New(wrapperspb.String(string(pluginJSON)))
	}
	return &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{
		Name:   FilterName,
		RootId: WasmVMID,
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			VmId:    WasmVMID,
			Runtime: "envoy.wasm.runtime.v8",
			Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
				HttpUri: &corev3.HttpUri{
					Uri:              b.cfg.WasmURL,
					HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: ClusterControlPlane},
					Timeout:          durationpb.New(30 * time.Second),
				},
				Sha256: b.wasmSHA256,
				RetryPolicy: &corev3.RetryPolicy{
					RetryBackOff: &corev3.BackoffStrategy{BaseInterval: durationpb.New(time.Second), MaxInterval: durationpb.New(30 * time.Second)},
					NumRetries:   wrapperspb.UInt32(10),
				},
			}}},
			EnvironmentVariables: &wasmv3.EnvironmentVariables{HostEnvKeys: TrustEnvKeys},
		}},
		Configuration: conf,
		// fail_open stays false (its zero value; the field is deprecated
		// for failure_policy, which says the same explicitly).
		FailurePolicy: wasmv3.FailurePolicy_FAIL_CLOSED,
	}}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func (b *builder) listener(n nodeInfo) (*listenerv3.Listener, error) {
	deny, err := denyConfig(nodeMember(n))
	if err != nil {
		return nil, err
	}
	defaultConfig, err := anypb.New(b.wasm(deny))
	if err != nil {
		return nil, err
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	manager, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: "aegis",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: RouteName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{
				Name: FilterName,
				// The policy arrives by ECDS, so a new policy or live state
				// never touches this listener. Until the first config the
				// default denies (applied without warming: the listener
				// answers with the filter's refusal, not a hang or a 500).
				ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
					ConfigSource:                     adsSource(),
					DefaultConfig:                    defaultConfig,
					ApplyDefaultConfigWithoutWarming: true,
					TypeUrls:                         []string{WasmTypeURL},
				}},
			},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
		},
	})
	if err != nil {
		return nil, err
	}
	name, host := ListenerGateway, "0.0.0.0"
	if n.role == RoleSidecar {
		name, host = ListenerSidecar, "127.0.0.1"
	}
	port := b.cfg.ListenerPort
	if port == 0 {
		port = 10000
	}
	return &listenerv3.Listener{
		Name:                          name,
		Address:                       socketAddress(host, port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(bufferLimit),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: manager},
			}},
		}},
	}, nil
}

func (b *builder) routes() *routev3.RouteConfiguration {
	ups := append([]Upstream(nil), b.cfg.Upstreams...)
	// Longest prefix first: Envoy takes the first matching route.
	sort.SliceStable(ups, func(i, j int) bool { return len(prefix(ups[i])) > len(prefix(ups[j])) })
	vh := &routev3.VirtualHost{Name: "tools", Domains: []string{"*"}}
	for _, u := range ups {
		vh.Routes = append(vh.Routes, &routev3.Route{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix(u)}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: u.Name},
			}},
		})
	}
	return &routev3.RouteConfiguration{Name: RouteName, VirtualHosts: []*routev3.VirtualHost{vh}}
}

func prefix(u Upstream) string {
	if u.PathPrefix == "" {
		return "/"
	}
	return u.PathPrefix
}

func (b *builder) clusters() []types.Resource {
	var cpTLS *corev3.TransportSocket
	if t := b.cfg.ControlPlaneTLS; t != nil {
		ctx := &tlsv3.UpstreamTlsContext{
			Sni: t.ServerName,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa: fileSource(t.CAFile),
				}},
			},
		}
		if t.CertFile != "" {
			ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(t.CertFile),
				PrivateKey:       fileSource(t.KeyFile),
			}}
		}
		cpTLS = transportSocket(ctx)
	}
	out := []types.Resource{cluster(ClusterControlPlane, b.cfg.ControlPlane.Host, b.cfg.ControlPlane.Port, cpTLS)}
	for _, u := range b.cfg.Upstreams {
		var ts *corev3.TransportSocket
		if u.TLS {
			ts = transportSocket(&tlsv3.UpstreamTlsContext{
				Sni: u.Host,
				CommonTlsContext: &tlsv3.CommonTlsContext{
					ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
						TrustedCa: fileSource("/etc/ssl/certs/ca-certificates.crt"),
					}},
				},
			})
		}
		out = append(out, cluster(u.Name, u.Host, u.Port, ts))
	}
	return out
}

func cluster(name, host string, port uint32, ts *corev3.TransportSocket) *clusterv3.Cluster {
	typ := clusterv3.Cluster_STRICT_DNS
	if net.ParseIP(host) != nil {
		typ = clusterv3.Cluster_STATIC
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(5 * time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}},
				}},
			}},
		},
		TransportSocket: ts,
	}
}

func transportSocket(ctx proto.Message) *corev3.TransportSocket {
	a, _ := anypb.New(ctx)
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// typeNames maps the types a node may ACK or NACK to short names for
// metrics and the API.
var typeNames = map[string]string{
	resource.ListenerType:        "listener",
	resource.RouteType:           "route",
	resource.ClusterType:         "cluster",
	resource.ExtensionConfigType: "ecds",
}

func typeName(url string) string {
	if n, ok := typeNames[url]; ok {
		return n
	}
	return "other"
}
