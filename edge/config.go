package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the edge's configuration: the YAML file (--config) with the
// quick-start flags applied over it. Paths are read when the server is
// built. Zero values take the defaults documented in docs/edge.md.
type Config struct {
	Listen string `yaml:"listen"` // proxy listener, e.g. 127.0.0.1:8080
	Admin  string `yaml:"admin"`  // metrics and health listener ("" = none)

	Node struct {
		ID     string `yaml:"id"`
		Region string `yaml:"region"`
		// SigningKey is a PKCS#8 PEM Ed25519 key file: signs WAL batches
		// and is the filter's AEGIS_NODE_SIGNING_KEY. Default:
		// <state_dir>/node.key, generated at first start.
		SigningKey string `yaml:"signing_key"`
	} `yaml:"node"`

	Trust struct {
		BundleKey string `yaml:"bundle_key"` // PKIX PEM public key verifying bundles (required)
		StateKey  string `yaml:"state_key"`  // PKIX PEM public key verifying live state
	} `yaml:"trust"`

	JWKS    string   `yaml:"jwks"`    // JWKS file agent tokens verify against (required)
	Bundles []string `yaml:"bundles"` // runtime bundle files
	// StateDir holds the bundle cache, the node key and (by default) the
	// audit WAL. Default "aegis-edge-state".
	StateDir string `yaml:"state_dir"`

	Filter struct {
		// Wasm is the filter module. Default: aegis-filter.wasm next to
		// the binary, then build/aegis-filter.wasm in the working
		// directory. "none" runs without a filter (benchmarks only: no
		// request is checked).
		Wasm            string        `yaml:"wasm"`
		PoolSize        int           `yaml:"pool_size"`
		MemoryMiB       int           `yaml:"memory_mib"` // linear memory cap per VM (default 256)
		CacheDir        string        `yaml:"cache_dir"`
		RequestTimeout  time.Duration `yaml:"request_timeout"`
		MaxBodyBytes    int           `yaml:"max_body_bytes"`
		TokenHeader     string        `yaml:"token_header"`
		Issuer          string        `yaml:"issuer"`
		Audience        string        `yaml:"audience"`
		NoBundleRead    string        `yaml:"no_bundle_read"`
		OnAuditOverflow string        `yaml:"on_audit_overflow"`
		AuditFlush      time.Duration `yaml:"audit_flush"`
		AuditMaxQueue   int           `yaml:"audit_max_queue"`
		StateRefresh    time.Duration `yaml:"state_refresh"`
	} `yaml:"filter"`

	Audit struct {
		Dir          string `yaml:"dir"`  // default <state_dir>/audit
		Sync         string `yaml:"sync"` // always | none
		SegmentBytes int64  `yaml:"segment_bytes"`
		KeepShipped  bool   `yaml:"keep_shipped"`
	} `yaml:"audit"`

	ControlPlane struct {
		URL          string        `yaml:"url"`
		TokenFile    string        `yaml:"token_file"` // the node's API credential
		Tenants      []string      `yaml:"tenants"`    // bundles fetched for these tenants
		PollInterval time.Duration `yaml:"poll_interval"`
		Timeout      time.Duration `yaml:"timeout"`
	} `yaml:"control_plane"`

	Upstream string            `yaml:"upstream"` // default upstream (gateway mode)
	Routes   map[string]string `yaml:"routes"`   // host → upstream URL

	Forward bool `yaml:"forward"` // also a forward proxy (egress)
	Egress  struct {
		Allow []string `yaml:"allow"`
		Ports []int    `yaml:"ports"`
	} `yaml:"egress"`

	Timeouts struct {
		ReadHeader     time.Duration `yaml:"read_header"`
		Read           time.Duration `yaml:"read"`
		Write          time.Duration `yaml:"write"`
		Idle           time.Duration `yaml:"idle"`
		Dial           time.Duration `yaml:"dial"`
		ResponseHeader time.Duration `yaml:"response_header"`
		TunnelIdle     time.Duration `yaml:"tunnel_idle"`
		Shutdown       time.Duration `yaml:"shutdown"`
	} `yaml:"timeouts"`
	MaxHeaderBytes int `yaml:"max_header_bytes"`

	LogLevel string `yaml:"log_level"` // debug | info | warn | error
}

// ParseConfig decodes YAML strictly: an unknown field, a wrong type or a
// second document is an error naming the line.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // an empty file: everything from flags
		}
		return c, fmt.Errorf("config: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return c, errors.New("config: more than one YAML document")
	}
	return c, nil
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Listen == "" {
		add("listen: required")
	}
	if c.Node.ID == "" {
		add("node.id: required")
	} else if len(c.Node.ID) > 128 || strings.ContainsAny(c.Node.ID, " /\t\n") {
		add("node.id %q: at most 128 characters, no spaces or slashes", c.Node.ID)
	}
	if c.Trust.BundleKey == "" {
		add("trust.bundle_key (--trust-key): required, no bundle can be trusted without it")
	}
	if c.JWKS == "" {
		add("jwks: required")
	}
	if c.Upstream == "" && len(c.Routes) == 0 && !c.Forward {
		add("upstream, routes or forward: the edge needs somewhere to send requests")
	}
	checkURL := func(field, s string) {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("%s %q: want http(s)://host[:port]", field, s)
		}
	}
	if c.Upstream != "" {
		checkURL("upstream", c.Upstream)
	}
	for h, u := range c.Routes {
		checkURL("routes."+h, u)
	}
	if c.ControlPlane.URL != "" {
		checkURL("control_plane.url", c.ControlPlane.URL)
	}
	if len(c.ControlPlane.Tenants) > 0 && c.ControlPlane.URL == "" {
		add("control_plane.tenants: needs control_plane.url")
	}
	switch c.Audit.Sync {
	case "", "always", "none":
	default:
		add("audit.sync %q: want always or none", c.Audit.Sync)
	}
	switch c.Filter.NoBundleRead {
	case "", "open", "closed":
	default:
		add("filter.no_bundle_read %q: want open or closed", c.Filter.NoBundleRead)
	}
	switch c.Filter.OnAuditOverflow {
	case "", "deny_writes", "drop":
	default:
		add("filter.on_audit_overflow %q: want deny_writes or drop", c.Filter.OnAuditOverflow)
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		add("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.Filter.MemoryMiB < 0 || c.Filter.MemoryMiB > 4096 {
		add("filter.memory_mib %d: want 1–4096", c.Filter.MemoryMiB)
	}
	if c.Filter.MaxBodyBytes < 0 || c.Filter.MaxBodyBytes > 16<<20 {
		add("filter.max_body_bytes %d: want 1 B–16 MiB", c.Filter.MaxBodyBytes)
	}
	for name, d := range map[string]time.Duration{
		"timeouts.read_header": c.Timeouts.ReadHeader, "timeouts.read": c.Timeouts.Read, "timeouts.write": c.Timeouts.Write,
		"timeouts.idle": c.Timeouts.Idle, "timeouts.dial": c.Timeouts.Dial, "timeouts.tunnel_idle": c.Timeouts.TunnelIdle, "timeouts.response_header": c.Timeouts.ResponseHeader,
		"filter.request_timeout": c.Filter.RequestTimeout, "control_plane.poll_interval": c.ControlPlane.PollInterval,
		"control_plane.timeout": c.ControlPlane.Timeout, "filter.audit_flush": c.Filter.AuditFlush,
	} {
		if d < 0 {
			add("%s: negative", name)
		}
	}
	if c.Filter.AuditFlush != 0 && (c.Filter.AuditFlush < 10*time.Millisecond || c.Filter.AuditFlush > 10*time.Minute) {
		add("filter.audit_flush %s: want 10ms–10m", c.Filter.AuditFlush)
	}
	if c.Filter.StateRefresh != 0 && (c.Filter.StateRefresh < 100*time.Millisecond || c.Filter.StateRefresh > time.Hour) {
		add("filter.state_refresh %s: want 100ms–1h", c.Filter.StateRefresh)
	}
	return errors.Join(errs...)
}

// withDefaults fills the documented defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.StateDir == "" {
		c.StateDir = "aegis-edge-state"
	}
	if c.Audit.Dir == "" {
		c.Audit.Dir = c.StateDir + "/audit"
	}
	if c.Audit.Sync == "" {
		c.Audit.Sync = "always"
	}
	def(&c.Timeouts.ReadHeader, 10*time.Second)
	def(&c.Timeouts.Idle, 120*time.Second)
	def(&c.Timeouts.Dial, 5*time.Second)
	def(&c.Timeouts.ResponseHeader, 30*time.Second)
	def(&c.Timeouts.Shutdown, 10*time.Second)
	def(&c.Filter.RequestTimeout, 30*time.Second)
	def(&c.Filter.AuditFlush, 200*time.Millisecond)
	def(&c.ControlPlane.PollInterval, 10*time.Second)
	def(&c.ControlPlane.Timeout, 5*time.Second)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.Filter.MaxBodyBytes == 0 {
		c.Filter.MaxBodyBytes = 1 << 20
	}
	if c.Filter.TokenHeader == "" {
		c.Filter.TokenHeader = "authorization"
	}
	if c.Filter.NoBundleRead == "" {
		c.Filter.NoBundleRead = "closed"
	}
	if c.Filter.OnAuditOverflow == "" {
		c.Filter.OnAuditOverflow = "deny_writes"
	}
	if c.Filter.MemoryMiB == 0 {
		c.Filter.MemoryMiB = 256
	}
	if c.Filter.AuditMaxQueue == 0 {
		c.Filter.AuditMaxQueue = 4096
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return c
}
