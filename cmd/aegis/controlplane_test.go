package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestControlplaneUsage(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badCfg, []byte("listen: 127.0.0.1:0\nlisten_port: 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"controlplane", "--help"}, exitOK, "--data-dir"},
		{"unknown flag", []string{"controlplane", "--nope"}, exitUsage, "flag provided but not defined"},
		{"positional", []string{"controlplane", "extra"}, exitUsage, "unexpected argument"},
		{"unknown config key", []string{"controlplane", "--config", badCfg}, exitUsage, "listen_port"},
		{"missing config", []string{"controlplane", "--config", filepath.Join(dir, "nope.yaml")}, exitUsage, "no such file"},
		{"bad database", []string{"controlplane", "--database", "mysql://x", "--data-dir", dir}, exitUsage, "database"},
		{"bad listen", []string{"controlplane", "--listen", "nowhere", "--data-dir", dir}, exitUsage, "listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
			if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
				t.Fatalf("exit %d (want %d), output %q %q, want %q", code, tc.code, out.String(), errb.String(), tc.want)
			}
		})
	}
}

// The command starts on the embedded store, writes its bootstrap state,
// and exits 0 once its context ends (as on SIGTERM).
func TestControlplaneRunsAndStops(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"controlplane", "--listen", "127.0.0.1:0", "--data-dir", dir}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, f := range []string{"admin.token", "ca.pem", "ca.key", "aegis.db", "keys/bundle.key", "keys/state.key", "keys/token.kek", "keys/evidence.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s missing after first start: %v", f, err)
		}
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errb.String(), strings.TrimSpace(string(tok))) {
		t.Fatal("the bootstrap admin credential appears in the log")
	}
	if !strings.Contains(errb.String(), "admin.token") || !strings.Contains(errb.String(), "control plane stopped") {
		t.Fatalf("log lacks the credential path or the shutdown: %s", errb.String())
	}
}
