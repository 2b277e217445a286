package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/keys"
)

var cryptoCreated = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// cryptoBundle writes a bundle signed with the key in keyDir (or unsigned
// when keyDir is empty) and returns its path.
func cryptoBundle(t *testing.T, keyDir string) string {
	t.Helper()
	opts := bundle.BuildOptions{}
	if keyDir != "" {
		priv, err := loadPrivateKey(filepath.Join(keyDir, "aegis.key"))
		if err != nil {
			t.Fatal(err)
		}
		opts.SigningKey = priv
	}
	m := bundle.Manifest{
		Kind: bundle.KindRuntime, Tenant: "acme", Name: "payments", Revision: 3,
		CreatedAt: cryptoCreated, ExpiresAt: cryptoCreated.Add(24 * time.Hour),
		EngineVersion: "test", Entrypoints: []string{"aegis/decision"},
	}
	data, err := bundle.Build(m, []bundle.File{{Path: "plan.json", Data: []byte(`{}`)}, {Path: "data.json", Data: []byte(`{"a":1}`)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBundleVerify(t *testing.T) {
	keyDir := cryptoKeyPair(t)
	otherDir := cryptoKeyPair(t)
	pubPath := filepath.Join(keyDir, "aegis.pub")
	pub, err := loadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	signed := cryptoBundle(t, keyDir)
	unsigned := cryptoBundle(t, "")
	corrupt := filepath.Join(t.TempDir(), "corrupt.tar.gz")
	data, _ := os.ReadFile(signed)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(corrupt, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inWindow := cryptoCreated.Add(time.Hour).Format(time.RFC3339)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"valid", []string{"--key", pubPath, "--at", inWindow, signed}, exitOK,
			"OK acme/payments revision 3, signed by kid " + keys.KeyID(pub) + ", expires 2026-11-02T12:00:00Z", ""},
		{"flags after argument", []string{signed, "--at", inWindow, "--key", pubPath}, exitOK, "OK acme/payments", ""},
		{"tenant matches", []string{"--key", pubPath, "--at", inWindow, "--tenant", "acme", signed}, exitOK, "OK", ""},
		{"tenant differs", []string{"--key", pubPath, "--at", inWindow, "--tenant", "other", signed}, exitFailure, "", "another tenant"},
		{"expired", []string{"--key", pubPath, "--at", "2026-11-03T00:00:00Z", signed}, exitFailure, "", "expired"},
		{"not yet valid", []string{"--key", pubPath, "--at", "2026-10-01T00:00:00Z", signed}, exitFailure, "", "not valid yet"},
		{"wrong key", []string{"--key", filepath.Join(otherDir, "aegis.pub"), "--at", inWindow, signed}, exitFailure, "", "signature does not verify"},
		{"unsigned", []string{"--key", pubPath, "--at", inWindow, unsigned}, exitFailure, "", "not signed"},
		{"corrupt", []string{"--key", pubPath, "--at", inWindow, corrupt}, exitFailure, "", corrupt},
		{"missing bundle", []string{"--key", pubPath, "/nonexistent/b.tar.gz"}, exitFailure, "", "/nonexistent/b.tar.gz"},
		{"private key given as --key", []string{"--key", filepath.Join(keyDir, "aegis.key"), signed}, exitFailure, "", `PEM block type "PRIVATE KEY"`},
		{"no key", []string{signed}, exitUsage, "", "--key is required"},
		{"no bundle", []string{"--key", pubPath}, exitUsage, "", "exactly one BUNDLE"},
		{"bad --at", []string{"--key", pubPath, "--at", "yesterday", signed}, exitUsage, "", "RFC 3339"},
		{"help", []string{"--help"}, exitOK, "Usage: aegis bundle verify", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cryptoCLI(t, "", append([]string{"bundle", "verify"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantOut) || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout ~%q, stderr ~%q",
					code, stdout, stderr, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

func TestBundleInspect(t *testing.T) {
	signed := cryptoBundle(t, cryptoKeyPair(t))
	code, stdout, stderr := cryptoCLI(t, "", "bundle", "inspect", signed)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{`"tenant": "acme"`, "signed: yes", "plan.json", "data.json",
		"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a          2  plan.json"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, stdout)
		}
	}

	code, stdout, stderr = cryptoCLI(t, "", "bundle", "inspect", "--json", cryptoBundle(t, ""))
	if code != exitOK {
		t.Fatalf("--json: exit %d: %s", code, stderr)
	}
	var got struct {
		Manifest bundle.Manifest `json:"manifest"`
		Signed   bool            `json:"signed"`
		Files    []struct {
			Path   string `json:"path"`
			Size   int    `json:"size"`
			SHA256 string `json:"sha256"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if got.Signed || got.Manifest.Tenant != "acme" || len(got.Files) != 2 || got.Files[0].Path != "data.json" || got.Files[0].Size != 7 {
		t.Errorf("--json = %+v", got)
	}

	bad := filepath.Join(t.TempDir(), "x.tar.gz")
	_ = os.WriteFile(bad, []byte("not a bundle"), 0o644)
	for _, tc := range []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"bundle", "inspect", bad}, exitFailure, bad + ": invalid bundle: not gzip"},
		{[]string{"bundle", "inspect"}, exitUsage, "exactly one BUNDLE"},
		{[]string{"bundle", "inspect", "a", "b"}, exitUsage, "exactly one BUNDLE"},
	} {
		code, _, stderr := cryptoCLI(t, "", tc.args...)
		if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
			t.Errorf("%q: exit %d, stderr %q; want %d, ~%q", tc.args, code, stderr, tc.wantCode, tc.wantErr)
		}
	}
}
