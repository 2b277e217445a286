// Package config holds the control plane's settings: a flat struct read
// strictly from YAML (unknown keys are errors), overlaid by command-line
// flags, then checked as a whole by Validate before anything starts.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileBytes bounds the config file; it is operator input, but a wrong
// path (a log, a device) should fail fast rather than fill memory.
const MaxFileBytes = 1 << 20

// Config is every setting of `aegis controlplane`. Zero values mean
// "use the default" (see Defaults); paths are resolved against DataDir.
type Config struct {
	// Listen is the REST API address (host:port).
	Listen string `yaml:"listen"`
	// XDSListen is the xDS gRPC address; empty disables xDS.
	XDSListen string `yaml:"xds_listen"`
	// Database is a postgres:// URL or sqlite:PATH; default
	// sqlite:<data_dir>/aegis.db, the embedded store.
	Database string `yaml:"database"`
	// DataDir holds the generated CA, keys and the bootstrap admin token.
	DataDir string `yaml:"data_dir"`
	// TLSCert and TLSKey serve the API with this certificate; when both
	// are empty a server certificate is issued from the control plane's
	// own CA (in DataDir). PlainHTTP turns TLS off (tests, local demo).
	TLSCert   string `yaml:"tls_cert"`
	TLSKey    string `yaml:"tls_key"`
	PlainHTTP bool   `yaml:"plain_http"`
	// ServerNames are extra DNS names / IPs for the generated certificate.
	ServerNames []string `yaml:"server_names"`
	// BundleSigningKey and StateSigningKey are Ed25519 PKCS#8 PEM files;
	// generated in DataDir at first start when unset.
	BundleSigningKey string `yaml:"bundle_signing_key"`
	StateSigningKey  string `yaml:"state_signing_key"`
	// TrustedBundleKeys are public keys (PKIX PEM) of earlier signing keys,
	// kept so releases signed before a rotation still verify.
	TrustedBundleKeys []string `yaml:"trusted_bundle_keys"`
	// BundleValidity is how long a published bundle stays valid.
	BundleValidity time.Duration `yaml:"bundle_validity"`
	// StateInterval is how often live state is re-signed per tenant;
	// StateValidity how long one state document stays valid.
	StateInterval time.Duration `yaml:"state_interval"`
	StateValidity time.Duration `yaml:"state_validity"`
	// ReconcileInterval is the period of the safety-net reload that
	// catches notifications lost while a replica was disconnected.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// MaxPolicyBytes bounds one policy submission (all files together).
	MaxPolicyBytes int64 `yaml:"max_policy_bytes"`
	// ShutdownTimeout bounds the graceful drain.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// OTelEndpoint is the OTLP collector decision spans go to: host:port,
	// or an http:// / https:// URL as in OTEL_EXPORTER_OTLP_ENDPOINT
	// (http:// implies no TLS). Empty: no spans.
	OTelEndpoint string `yaml:"otel_endpoint"`
	// OTelProtocol is grpc or http (OTLP/HTTP protobuf); default grpc.
	OTelProtocol string `yaml:"otel_protocol"`
	// OTelInsecure sends spans without TLS.
	OTelInsecure bool `yaml:"otel_insecure"`
	// Webhooks are told about approvals (created, decided, expired).
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one approval notification receiver.
type Webhook struct {
	// Name labels its metrics and logs; default webhook-<position>.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Format is slack, teams or generic (the event as JSON).
	Format string `yaml:"format"`
	// SecretFile holds the HMAC key signing every delivery (at least 16
	// bytes; surrounding whitespace is ignored). A file, so the key stays
	// out of the config and its backups.
	SecretFile string `yaml:"secret_file"`
}

// Webhook formats.
const (
	WebhookSlack   = "slack"
	WebhookTeams   = "teams"
	WebhookGeneric = "generic"
)

// OTel protocols.
const (
	OTelGRPC = "grpc"
	OTelHTTP = "http"
)

// Defaults returns the settings used where a Config leaves a field empty.
func Defaults() Config {
	return Config{
		Listen:            "127.0.0.1:8443",
		XDSListen:         "127.0.0.1:18000",
		DataDir:           "aegis-data",
		BundleValidity:    30 * 24 * time.Hour,
		StateInterval:     5 * time.Second,
		StateValidity:     5 * time.Minute,
		ReconcileInterval: 30 * time.Second,
		MaxPolicyBytes:    2 << 20,
		ShutdownTimeout:   15 * time.Second,
		LogLevel:          "info",
	}
}

// Parse decodes a YAML config strictly: unknown keys, duplicate keys and
// more than one document are errors. It does not apply defaults.
func Parse(r io.Reader) (Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	if len(data) > MaxFileBytes {
		return Config{}, fmt.Errorf("config larger than %d bytes", MaxFileBytes)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, nil
		}
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("config: more than one YAML document")
	}
	return c, nil
}

// WithDefaults fills every empty field from Defaults and derives the
// default database from DataDir.
func (c Config) WithDefaults() Config {
	d := Defaults()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.Database == "" {
		c.Database = "sqlite:" + filepath.Join(c.DataDir, "aegis.db")
	}
	if c.BundleValidity == 0 {
		c.BundleValidity = d.BundleValidity
	}
	if c.StateInterval == 0 {
		c.StateInterval = d.StateInterval
	}
	if c.StateValidity == 0 {
		c.StateValidity = d.StateValidity
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = d.ReconcileInterval
	}
	if c.MaxPolicyBytes == 0 {
		c.MaxPolicyBytes = d.MaxPolicyBytes
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = d.ShutdownTimeout
	}
	if c.LogLevel == "" {
		c.LogLevel = d.LogLevel
	}
	if c.OTelEndpoint != "" && c.OTelProtocol == "" {
		c.OTelProtocol = OTelGRPC
	}
	if len(c.Webhooks) > 0 {
		c.Webhooks = slices.Clone(c.Webhooks)
		for i := range c.Webhooks {
			if c.Webhooks[i].Name == "" {
				c.Webhooks[i].Name = fmt.Sprintf("webhook-%d", i+1)
			}
		}
	}
	return c
}

// WithEnv fills the OpenTelemetry settings the config leaves empty from the
// standard OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL
// (grpc, http/protobuf), so the control plane joins an environment already
// set up for OpenTelemetry. getenv is os.Getenv outside tests.
func (c Config) WithEnv(getenv func(string) string) Config {
	if c.OTelEndpoint == "" {
		c.OTelEndpoint = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	}
	if c.OTelEndpoint != "" && c.OTelProtocol == "" {
		switch p := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL")); p {
		case "http/protobuf":
			c.OTelProtocol = OTelHTTP
		default:
			// grpc, empty, or a protocol we do not speak (http/json),
			// which Validate then names.
			c.OTelProtocol = p
		}
	}
	return c
}

// OTelTarget resolves OTelEndpoint into the collector's host:port, the
// OTLP/HTTP path (empty for the default /v1/traces or for gRPC) and whether
// to skip TLS. A URL's scheme decides TLS (http:// is plain); a path in
// the URL is the base that /v1/traces is appended to, as the OpenTelemetry
// specification says for OTEL_EXPORTER_OTLP_ENDPOINT.
func (c Config) OTelTarget() (hostport, urlPath string, insecure bool, err error) {
	e := c.OTelEndpoint
	if !strings.Contains(e, "://") {
		if _, _, err := net.SplitHostPort(e); err != nil {
			return "", "", false, fmt.Errorf("otel_endpoint %q: want host:port or an http(s) URL", e)
		}
		return e, "", c.OTelInsecure, nil
	}
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", false, fmt.Errorf("otel_endpoint %q: want host:port or an http(s) URL without credentials, query or fragment", e)
	}
	hostport = u.Host
	if u.Port() == "" {
		port := "4317"
		if c.OTelProtocol == OTelHTTP {
			port = "4318"
		}
		hostport = net.JoinHostPort(u.Hostname(), port)
	}
	if p := strings.TrimRight(u.Path, "/"); p != "" {
		if c.OTelProtocol != OTelHTTP {
			return "", "", false, fmt.Errorf("otel_endpoint %q: a URL path needs otel_protocol http", e)
		}
		urlPath = p + "/v1/traces"
	}
	return hostport, urlPath, c.OTelInsecure || u.Scheme == "http", nil
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	addr := func(name, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, v))
		}
	}
	addr("listen", c.Listen, false)
	addr("xds_listen", c.XDSListen, true)
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is empty"))
	}
	if !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") && !strings.HasPrefix(c.Database, "sqlite:") {
		errs = append(errs, errors.New("database: want a postgres:// URL or sqlite:PATH"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key go together"))
	}
	if c.PlainHTTP && c.TLSCert != "" {
		errs = append(errs, errors.New("plain_http and tls_cert exclude each other"))
	}
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: want a positive duration", name, d))
		}
	}
	pos("bundle_validity", c.BundleValidity)
	pos("state_interval", c.StateInterval)
	pos("state_validity", c.StateValidity)
	pos("reconcile_interval", c.ReconcileInterval)
	pos("shutdown_timeout", c.ShutdownTimeout)
	if c.StateValidity > 0 && c.StateValidity < 2*c.StateInterval {
		errs = append(errs, fmt.Errorf("state_validity %v must be at least twice state_interval %v: state is re-signed at half its validity and checked every interval", c.StateValidity, c.StateInterval))
	}
	if c.MaxPolicyBytes <= 0 || c.MaxPolicyBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("max_policy_bytes %d: want 1..%d", c.MaxPolicyBytes, 64<<20))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.OTelEndpoint != "" {
		if c.OTelProtocol != OTelGRPC && c.OTelProtocol != OTelHTTP {
			errs = append(errs, fmt.Errorf("otel_protocol %q: want grpc or http", c.OTelProtocol))
		} else if _, _, _, err := c.OTelTarget(); err != nil {
			errs = append(errs, err)
		}
	} else if c.OTelProtocol != "" || c.OTelInsecure {
		errs = append(errs, errors.New("otel_protocol and otel_insecure need otel_endpoint"))
	}
	names := map[string]bool{}
	for i, w := range c.Webhooks {
		label := w.Name
		if label == "" {
			label = fmt.Sprintf("webhook-%d", i+1)
		}
		if names[label] {
			errs = append(errs, fmt.Errorf("webhooks: name %q given twice", label))
		}
		names[label] = true
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("webhooks: %s: url must be http(s) with a host", label))
		}
		switch w.Format {
		case WebhookSlack, WebhookTeams, WebhookGeneric:
		default:
			errs = append(errs, fmt.Errorf("webhooks: %s: format %q, want slack, teams or generic", label, w.Format))
		}
		if w.SecretFile == "" {
			errs = append(errs, fmt.Errorf("webhooks: %s: secret_file is required (deliveries are always signed)", label))
		}
	}
	return errors.Join(errs...)
}
