package xds

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

// Identity returns the enrolled identity of the node behind a gRPC stream
// (ctx is the stream's context, carrying the peer and its certificate).
// The control plane implements it from the mTLS client certificate it
// issued at enrollment and the node's record; a node's tenant is never
// taken from what the node says about itself in xDS metadata.
type Identity func(ctx context.Context) (NodeIdentity, error)

// NodeIdentity is what enrollment says a node is. Region and Role, when
// set, bind the node: its xDS metadata may repeat them but not change
// them, since they choose which releases (and so which policy and node
// region) the node receives. Left empty, the node's metadata says.
type NodeIdentity struct {
	NodeID, Tenant string
	Region         string
	Role           Role
}

// Role is what a node does, from its xDS metadata "role".
type Role string

const (
	RoleGateway Role = "gateway" // Envoy in front of tool servers
	RoleSidecar Role = "sidecar" // Envoy next to an agent (egress)
	RoleEdge    Role = "edge"    // the Aegis edge proxy (ECDS only)
)

func (r Role) valid() bool { return r == RoleGateway || r == RoleSidecar || r == RoleEdge }

// Names of the resources every node receives. The edge data plane
// subscribes to FilterName (type ExtensionConfigType) over ADS.
const (
	// FilterName names the ECDS resource (a TypedExtensionConfig wrapping
	// envoy.extensions.filters.http.wasm.v3.Wasm) and the HTTP filter
	// that discovers it.
	FilterName = "aegis"
	// ListenerGateway and ListenerSidecar name the listener of each role.
	ListenerGateway = "aegis-gateway"
	ListenerSidecar = "aegis-sidecar"
	// RouteName names the route configuration the listener loads by RDS.
	RouteName = "aegis-routes"
	// ClusterControlPlane is the cluster nodes reach the control plane
	// through: the filter's callouts (approvals, audit) and the .wasm fetch.
	ClusterControlPlane = "aegis-cp"
	// WasmVMID is the vm_id shared by the ECDS config and its default, so
	// both run in one VM per worker.
	WasmVMID = "aegis"
	// WasmPath is where the control plane serves the filter module.
	WasmPath = "/v1/filter.wasm"
)

// Limits on what SetTenant accepts.
const (
	MaxPluginConfigBytes = 32 << 20 // the filter's own limit
	maxTargets           = 64
)

// Config configures the xDS server. Parse and check it with Validate
// before NewServer (NewServer checks again).
type Config struct {
	// Identity authenticates each stream. Required.
	Identity Identity
	// Registerer receives the server's metrics. Required; never the
	// global default registry.
	Registerer prometheus.Registerer
	// Logger receives stream and build errors; nil discards them.
	Logger *slog.Logger
	// Store persists ACK/NACK history and node state (component "xds");
	// nil keeps them in memory only.
	Store *db.DB
	// Wasm is the filter module, served at WasmPath; its sha256 pins the
	// remote data source Envoy fetches. Required.
	Wasm []byte
	// WasmURL is the absolute http(s) URL of WasmPath as nodes reach it
	// through ClusterControlPlane. Required.
	WasmURL string
	// ControlPlane is the address nodes connect to for ClusterControlPlane.
	ControlPlane Endpoint
	// ControlPlaneTLS, when set, makes ClusterControlPlane use TLS with
	// these files on the node (mTLS when a client certificate is given).
	ControlPlaneTLS *TLSFiles
	// ListenerPort is the port of the gateway or sidecar listener
	// (default 10000).
	ListenerPort uint32
	// Upstreams are the tool servers the listener routes to, by path prefix.
	Upstreams []Upstream
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Endpoint is a host and port.
type Endpoint struct {
	Host string
	Port uint32
}

// TLSFiles are file paths on the node for an upstream TLS context.
type TLSFiles struct {
	ServerName string // SNI and the name the server certificate must carry
	CAFile     string // trusted CAs (required)
	CertFile   string // client certificate (optional, with KeyFile)
	KeyFile    string
}

// Upstream is a tool server the listener routes to.
type Upstream struct {
	Name       string // cluster name, [a-z0-9-]{1,64}, not ClusterControlPlane
	Host       string
	Port       uint32
	PathPrefix string // route match; "/" when empty
	TLS        bool   // connect with TLS, verifying against the system roots
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Identity == nil {
		bad("identity: required")
	}
	if c.Registerer == nil {
		bad("registerer: required")
	}
	if len(c.Wasm) == 0 {
		bad("wasm: required (the filter module bytes)")
	}
	if u, err := url.Parse(c.WasmURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("wasm_url: %q is not an absolute http(s) URL", c.WasmURL)
	}
	if c.ControlPlane.Host == "" || c.ControlPlane.Port == 0 || c.ControlPlane.Port > 65535 {
		bad("control_plane: host and port 1-65535 required")
	}
	if t := c.ControlPlaneTLS; t != nil {
		if t.CAFile == "" {
			bad("control_plane_tls.ca_file: required")
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			bad("control_plane_tls: cert_file and key_file go together")
		}
	}
	if c.ListenerPort > 65535 {
		bad("listener_port: %d outside [1, 65535]", c.ListenerPort)
	}
	seen := map[string]bool{ClusterControlPlane: true}
	for i, u := range c.Upstreams {
		if !validClusterName(u.Name) {
			bad("upstreams[%d].name: %q must be 1-64 characters of [a-z0-9-]", i, u.Name)
		} else if seen[u.Name] {
			bad("upstreams[%d].name: %q used twice (or reserved)", i, u.Name)
		}
		seen[u.Name] = true
		if u.Host == "" || u.Port == 0 || u.Port > 65535 {
			bad("upstreams[%d]: host and port 1-65535 required", i)
		}
		if u.PathPrefix != "" && !strings.HasPrefix(u.PathPrefix, "/") {
			bad("upstreams[%d].path_prefix: %q must start with /", i, u.PathPrefix)
		}
	}
	return errors.Join(errs...)
}

// fingerprint digests everything in c that shapes a resource, so that
// resource versions change when a restart changes the configuration.
func (c *Config) fingerprint() []byte {
	h := sha256.New()
	sum := sha256.Sum256(c.Wasm)
	fmt.Fprintf(h, "wasm=%x url=%q cp=%q:%d port=%d\n", sum, c.WasmURL, c.ControlPlane.Host, c.ControlPlane.Port, c.ListenerPort)
	if t := c.ControlPlaneTLS; t != nil {
		fmt.Fprintf(h, "tls=%q %q %q %q\n", t.ServerName, t.CAFile, t.CertFile, t.KeyFile)
	}
	for _, u := range c.Upstreams {
		fmt.Fprintf(h, "up=%q %q %d %q %t\n", u.Name, u.Host, u.Port, u.PathPrefix, u.TLS)
	}
	return h.Sum(nil)
}

// TenantConfig is a published filter configuration for a tenant's nodes.
type TenantConfig struct {
	// PluginConfigJSON is the filter's plugin configuration
	// (docs/filter-config.md) without "node", which the server fills in per
	// node. Its "bundles" may name only the tenant itself, and it must carry
	// no key material: trust roots reach nodes from their operators.
	PluginConfigJSON []byte
	// Version labels the release (e.g. a bundle digest); shown in drift.
	Version string
	// Revision is the tenant's release revision (> 0).
	Revision int64
	// Regions and Roles target the release: empty means every region or
	// role. The newest release matching a node is what it should run.
	Regions []string
	Roles   []Role
}

// pluginKeys are the top-level plugin configuration fields the control
// plane may ship (docs/filter-config.md), plus "state" for live state.
// Anything else is refused here rather than NACKed by the fleet.
var pluginKeys = []string{"bundles", "jwks", "token", "limits", "control_plane", "audit", "no_bundle", "on_audit_overflow", "state"}

// checkTenantConfig validates tc for tenant and returns the plugin
// configuration as its top-level members.
func checkTenantConfig(tenant string, tc TenantConfig) (map[string]json.RawMessage, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !validName(tenant) {
		bad("tenant %q: must be 1-128 characters of [A-Za-z0-9._-]", tenant)
	}
	if tc.Revision <= 0 {
		bad("revision: %d, want > 0", tc.Revision)
	}
	if tc.Version == "" || len(tc.Version) > 128 || strings.ContainsAny(tc.Version, "\x00\n\r") {
		bad("version: want 1-128 characters on one line")
	}
	if len(tc.Regions)+len(tc.Roles) > maxTargets {
		bad("targets: more than %d regions and roles", maxTargets)
	}
	for _, r := range tc.Regions {
		if !validName(r) {
			bad("regions: %q must be 1-128 characters of [A-Za-z0-9._-]", r)
		}
	}
	for _, r := range tc.Roles {
		if !r.valid() {
			bad("roles: %q: want gateway, sidecar or edge", r)
		}
	}
	members, err := pluginMembers(tenant, tc.PluginConfigJSON)
	if err != nil {
		bad("plugin configuration: %v", err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return members, nil
}

func pluginMembers(tenant string, data []byte) (map[string]json.RawMessage, error) {
	if len(data) > MaxPluginConfigBytes {
		return nil, fmt.Errorf("%d bytes, limit %d", len(data), MaxPluginConfigBytes)
	}
	keys, err := topLevelKeys(data)
	if err != nil {
		return nil, err
	}
	// PEM armour in any string (after JSON unescaping) is key material,
	// which must never travel in the channel it would verify.
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if hasPEM(doc) {
		return nil, errors.New("contains PEM key material; trust roots are deployed by the operator, never shipped by xDS")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return nil, err
	}
	var errs []error
	for _, k := range keys {
		switch {
		case k == "node":
			errs = append(errs, errors.New(`"node" is set per node by the xDS server`))
		case !slices.Contains(pluginKeys, k):
			errs = append(errs, fmt.Errorf("unknown field %q", k))
		}
	}
	if raw, ok := members["bundles"]; ok {
		var bundles map[string]json.RawMessage
		if err := json.Unmarshal(raw, &bundles); err != nil {
			errs = append(errs, fmt.Errorf("bundles: %v", err))
		}
		for t := range bundles {
			if t != tenant {
				errs = append(errs, fmt.Errorf("bundles: tenant %q in a configuration for tenant %q", t, tenant))
			}
		}
	}
	if _, ok := members["jwks"]; !ok {
		errs = append(errs, errors.New("jwks: required"))
	}
	return members, errors.Join(errs...)
}

func hasPEM(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, "-----BEGIN")
	case []any:
		for _, x := range v {
			if hasPEM(x) {
				return true
			}
		}
	case map[string]any:
		for k, x := range v {
			if strings.Contains(k, "-----BEGIN") || hasPEM(x) {
				return true
			}
		}
	}
	return false
}

// topLevelKeys reads the keys of the JSON object data, refusing duplicates
// (also ones differing only in letter case, which encoding/json would
// merge) and anything after the object.
func topLevelKeys(data []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("want a JSON object")
	}
	var keys []string
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k := kt.(string)
		if seen[strings.ToLower(k)] {
			return nil, fmt.Errorf("duplicate key %q", k)
		}
		seen[strings.ToLower(k)] = true
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return keys, nil
}

// release is one accepted SetTenant call.
type release struct {
	tenant    string
	cfg       TenantConfig
	body      []byte // the members as one JSON object, without "node"
	digest    string // hex sha256 over the release's content
	published time.Time
}

func newRelease(tenant string, tc TenantConfig, members map[string]json.RawMessage, now time.Time) (*release, error) {
	body, err := marshal(members)
	if err != nil {
		return nil, fmt.Errorf("plugin configuration: %w", err)
	}
	tc.PluginConfigJSON = slices.Clone(tc.PluginConfigJSON)
	tc.Regions = slices.Clone(tc.Regions)
	tc.Roles = slices.Clone(tc.Roles)
	h := sha256.New()
	fmt.Fprintf(h, "%q %d %q\n", tenant, tc.Revision, tc.Version)
	h.Write(tc.PluginConfigJSON)
	return &release{tenant: tenant, cfg: tc, body: body, digest: hex.EncodeToString(h.Sum(nil)), published: now}, nil
}

func (r *release) matches(region string, role Role) bool {
	return (len(r.cfg.Regions) == 0 || slices.Contains(r.cfg.Regions, region)) &&
		(len(r.cfg.Roles) == 0 || slices.Contains(r.cfg.Roles, role))
}

// covers reports whether r targets every node o targets, so o can never be
// chosen again once r is newer.
func (r *release) covers(o *release) bool {
	sub := func(outer, inner []string) bool {
		if len(outer) == 0 {
			return true
		}
		if len(inner) == 0 {
			return false
		}
		for _, x := range inner {
			if !slices.Contains(outer, x) {
				return false
			}
		}
		return true
	}
	roles := func(rs []Role) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = string(r)
		}
		return out
	}
	return sub(r.cfg.Regions, o.cfg.Regions) && sub(roles(r.cfg.Roles), roles(o.cfg.Roles))
}

// validName accepts the identifiers the filter accepts for tenants,
// nodes and regions.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validClusterName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
