package config

import (
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
