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
	"path/filepath"
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
}

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
	return c
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
	return errors.Join(errs...)
}
