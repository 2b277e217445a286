package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"empty", "", ""},
		{"fields", "listen: 127.0.0.1:9000\nstate_interval: 2s\n", ""},
		{"unknown key", "listen: 127.0.0.1:9000\nlisten_addr: x\n", "listen_addr"},
		{"duplicate key", "listen: a:1\nlisten: b:2\n", "already defined"},
		{"two documents", "listen: a:1\n---\nlisten: b:2\n", "more than one"},
		{"wrong type", "state_interval: [1]\n", "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "fields" && (c.Listen != "127.0.0.1:9000" || c.StateInterval != 2*time.Second) {
					t.Fatalf("decoded %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Config{DataDir: "d"}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if ok.Database != "sqlite:d/aegis.db" {
		t.Fatalf("default database %q", ok.Database)
	}
	bad := ok
	bad.Listen = "nope"
	bad.Database = "mysql://x"
	bad.TLSCert = "c.pem"
	bad.StateValidity = time.Second
	bad.LogLevel = "loud"
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"listen", "database", "tls_cert and tls_key", "state_validity", "log_level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s (every problem must be reported at once)", err, want)
		}
	}
}

func TestParseWebhooksAndOTel(t *testing.T) {
	c, err := Parse(strings.NewReader(`otel_endpoint: collector:4317
otel_protocol: grpc
otel_insecure: true
webhooks:
  - url: https://hooks.slack.test/services/x
    format: slack
    secret_file: /run/secrets/slack
  - name: audit-sink
    url: http://127.0.0.1:9000/hook
    format: generic
    secret_file: s2
`))
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.OTelEndpoint != "collector:4317" || c.OTelProtocol != OTelGRPC || !c.OTelInsecure || len(c.Webhooks) != 2 ||
		c.Webhooks[0].Name != "webhook-1" || c.Webhooks[1].Name != "audit-sink" || c.Webhooks[0].SecretFile != "/run/secrets/slack" {
		t.Fatalf("decoded %+v", c)
	}
	if _, err := Parse(strings.NewReader("webhooks:\n  - url: https://x\n    secret: inline\n")); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("an inline secret key was accepted: %v", err)
	}
}

func TestValidateWebhooksAndOTel(t *testing.T) {
	base := Config{DataDir: "d"}.WithDefaults()
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		wants []string
	}{
		{"protocol without endpoint", func(c *Config) { c.OTelProtocol = "grpc" }, []string{"need otel_endpoint"}},
		{"insecure without endpoint", func(c *Config) { c.OTelInsecure = true }, []string{"need otel_endpoint"}},
		{"unknown protocol", func(c *Config) { c.OTelEndpoint, c.OTelProtocol = "c:4317", "http/json" }, []string{"otel_protocol"}},
		{"endpoint without port", func(c *Config) { c.OTelEndpoint, c.OTelProtocol = "collector", "grpc" }, []string{"otel_endpoint"}},
		{"endpoint with credentials", func(c *Config) { c.OTelEndpoint, c.OTelProtocol = "https://u:p@c:4318", "http" }, []string{"without credentials"}},
		{"endpoint other scheme", func(c *Config) { c.OTelEndpoint, c.OTelProtocol = "ftp://c:21", "http" }, []string{"otel_endpoint"}},
		{"grpc with a path", func(c *Config) { c.OTelEndpoint, c.OTelProtocol = "http://c:4317/otlp", "grpc" }, []string{"needs otel_protocol http"}},
		{"bad webhooks", func(c *Config) {
			c.Webhooks = []Webhook{
				{Name: "a", URL: "ftp://x", Format: "slack", SecretFile: "s"},
				{Name: "a", URL: "https://x", Format: "discord", SecretFile: "s"},
				{URL: "https://x", Format: "teams"},
			}
		}, []string{"a: url must be http(s)", `name "a" given twice`, `format "discord"`, "webhook-3: secret_file is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("invalid config accepted")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestOTelTarget(t *testing.T) {
	for _, tc := range []struct {
		endpoint, protocol string
		insecure           bool
		host, path         string
		wantInsecure       bool
	}{
		{"collector:4317", "grpc", false, "collector:4317", "", false},
		{"collector:4317", "grpc", true, "collector:4317", "", true},
		{"http://collector:4318", "http", false, "collector:4318", "", true},
		{"https://collector", "http", false, "collector:4318", "", false},
		{"https://collector", "grpc", false, "collector:4317", "", false},
		{"https://gw.example:443/otlp/", "http", false, "gw.example:443", "/otlp/v1/traces", false},
		{"http://[::1]:4317", "grpc", false, "[::1]:4317", "", true},
	} {
		c := Config{OTelEndpoint: tc.endpoint, OTelProtocol: tc.protocol, OTelInsecure: tc.insecure}
		host, path, insecure, err := c.OTelTarget()
		if err != nil || host != tc.host || path != tc.path || insecure != tc.wantInsecure {
			t.Errorf("%s (%s): %q %q %v %v, want %q %q %v", tc.endpoint, tc.protocol, host, path, insecure, err, tc.host, tc.path, tc.wantInsecure)
		}
	}
}

func TestWithEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name               string
		cfg                Config
		env                map[string]string
		endpoint, protocol string
	}{
		{"nothing set", Config{}, nil, "", ""},
		{"env endpoint, default protocol", Config{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "http://c:4317", "grpc"},
		{"env endpoint and http protocol", Config{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http://c:4318", "http"},
		{"unsupported env protocol is kept for Validate", Config{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http://c:4318", "http/json"},
		{"config wins", Config{OTelEndpoint: "mine:4317", OTelProtocol: "grpc"}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://theirs:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "mine:4317", "grpc"},
		{"protocol alone is ignored", Config{}, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg.WithEnv(env(tc.env)).WithDefaults()
			if c.OTelEndpoint != tc.endpoint || c.OTelProtocol != tc.protocol {
				t.Fatalf("endpoint %q protocol %q, want %q %q", c.OTelEndpoint, c.OTelProtocol, tc.endpoint, tc.protocol)
			}
		})
	}
}

// FuzzParse: whatever the file holds, parsing, defaulting, validating and
// resolving the collector never panic, and a config that validates has a
// collector target that resolves.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "listen: 127.0.0.1:9000\n", "otel_endpoint: http://c:4318/base\notel_protocol: http\n",
		"otel_endpoint: c\n", "webhooks:\n  - url: https://x/y\n    format: slack\n    secret_file: s\n",
		"webhooks: [{url: '://', format: teams}]\n", "otel_endpoint: 'https://u:p@[::1'\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		c = c.WithEnv(func(string) string { return "" }).WithDefaults()
		if c.Validate() == nil && c.OTelEndpoint != "" {
			if _, _, _, err := c.OTelTarget(); err != nil {
				t.Fatalf("valid config with an unresolvable collector %q: %v", c.OTelEndpoint, err)
			}
		}
	})
}
