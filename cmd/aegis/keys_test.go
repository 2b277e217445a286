package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/keys"
)

// cryptoCLI runs the CLI in-process and returns the exit code, stdout and
// stderr.
func cryptoCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, stdio{in: strings.NewReader(stdin), out: &out, err: &errOut})
	return code, out.String(), errOut.String()
}

// cryptoKeyPair generates a key pair with the CLI into a new directory.
func cryptoKeyPair(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	if code, _, stderr := cryptoCLI(t, "", "keys", "generate", "--out", dir); code != exitOK {
		t.Fatalf("keys generate: exit %d: %s", code, stderr)
	}
	return dir
}

func TestKeysGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	code, stdout, stderr := cryptoCLI(t, "", "keys", "generate", "--out", dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	privPEM, err := os.ReadFile(filepath.Join(dir, "aegis.key"))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, "aegis.pub"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := keys.ParsePrivatePEM(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keys.ParsePublicPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("public key does not match private key")
	}
	if info, _ := os.Stat(filepath.Join(dir, "aegis.key")); info.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", info.Mode().Perm())
	}
	if !strings.Contains(stdout, "kid "+keys.KeyID(pub)) {
		t.Errorf("stdout %q does not name the kid", stdout)
	}

	// A second run refuses to overwrite; --force replaces the pair.
	code, _, stderr = cryptoCLI(t, "", "keys", "generate", "--out", dir)
	if code != exitFailure || !strings.Contains(stderr, "already exists") {
		t.Fatalf("overwrite without --force: exit %d: %s", code, stderr)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "aegis.key")); !bytes.Equal(again, privPEM) {
		t.Fatal("private key changed without --force")
	}
	if err := os.Chmod(filepath.Join(dir, "aegis.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr = cryptoCLI(t, "", "keys", "generate", "--out", dir, "--force"); code != exitOK {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "aegis.key")); bytes.Equal(again, privPEM) {
		t.Fatal("--force did not replace the key")
	}
	if info, _ := os.Stat(filepath.Join(dir, "aegis.key")); info.Mode().Perm() != 0o600 {
		t.Errorf("replaced private key mode %v, want 0600", info.Mode().Perm())
	}
}

func TestKeysGenerateUsage(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"help", []string{"keys", "generate", "--help"}, exitOK, "-out string", ""},
		{"group help", []string{"keys", "--help"}, exitOK, "generate", ""},
		{"no --out", []string{"keys", "generate"}, exitUsage, "", "--out DIR is required"},
		{"extra argument", []string{"keys", "generate", "--out", t.TempDir(), "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{"unknown flag", []string{"keys", "generate", "--bits", "4096"}, exitUsage, "", "flag provided but not defined"},
		{"out is a file", []string{"keys", "generate", "--out", blocker}, exitFailure, "", blocker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cryptoCLI(t, "", tt.args...)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantOut) || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout ~%q, stderr ~%q",
					code, stdout, stderr, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}
