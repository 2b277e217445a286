package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/token"
)

func TestTokenMintVerifyJWKS(t *testing.T) {
	dir := cryptoKeyPair(t)
	keyPath := filepath.Join(dir, "aegis.key")
	pubPath := filepath.Join(dir, "aegis.pub")

	code, stdout, stderr := cryptoCLI(t, "", "token", "mint", "--key", keyPath, "--agent", "agent-a", "--tenant", "acme",
		"--ttl", "10m", "--region", "eu", "--acting-for", "user-1", "--acting-for", "org-admin",
		"--scope", "payments:write", "--scope", "tools:read", "--issuer", "aegis-cli", "--audience", "gateway")
	if code != exitOK {
		t.Fatalf("mint: exit %d: %s", code, stderr)
	}
	tok := strings.TrimSpace(stdout)

	code, jwks, stderr := cryptoCLI(t, "", "token", "jwks", "--key", pubPath)
	if code != exitOK {
		t.Fatalf("jwks: exit %d: %s", code, stderr)
	}
	ks, err := token.ParseJWKS([]byte(jwks))
	if err != nil {
		t.Fatal(err)
	}
	c, err := token.Verify(tok, ks, token.VerifyOptions{Issuer: "aegis-cli", Audience: "gateway", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(token.Chain(c), ","); got != "agent-a,user-1,org-admin" {
		t.Errorf("chain %s", got)
	}
	if c.Scope != "payments:write tools:read" || c.Region != "eu" || c.ExpiresAt-c.IssuedAt != 600 {
		t.Errorf("claims %+v", c)
	}

	jwksPath := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksPath, []byte(jwks), 0o644); err != nil {
		t.Fatal(err)
	}
	otherDir := cryptoKeyPair(t)
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"verify with jwks", "", []string{"--jwks", jwksPath, tok}, exitOK, `"agent-a",`, ""},
		{"verify with pem", "", []string{"--key", pubPath, "--tenant", "acme", tok}, exitOK, `"tenant": "acme"`, ""},
		{"verify from stdin", tok + "\n", []string{"--jwks", jwksPath, "-"}, exitOK, `"sub": "org-admin"`, ""},
		{"jwks and pem merged", "", []string{"--jwks", jwksPath, "--key", filepath.Join(otherDir, "aegis.pub"), tok}, exitOK, "chain", ""},
		{"same key twice", "", []string{"--jwks", jwksPath, "--key", pubPath, tok}, exitFailure, "", "twice"},
		{"unknown key", "", []string{"--key", filepath.Join(otherDir, "aegis.pub"), tok}, exitFailure, "", "unknown key"},
		{"expired", "", []string{"--key", pubPath, "--at", later, tok}, exitFailure, "", "expired"},
		{"wrong tenant", "", []string{"--key", pubPath, "--tenant", "other", tok}, exitFailure, "", "tenant"},
		{"wrong audience", "", []string{"--key", pubPath, "--audience", "other", tok}, exitFailure, "", "audience"},
		{"tampered", "", []string{"--key", pubPath, tamper(tok)}, exitFailure, "", "signature"},
		{"bad jwks file", "", []string{"--jwks", keyPath, tok}, exitFailure, "", keyPath},
		{"no keys", "", []string{tok}, exitUsage, "", "--jwks or --key"},
		{"no token", "", []string{"--key", pubPath}, exitUsage, "", "exactly one TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cryptoCLI(t, tt.stdin, append([]string{"token", "verify"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantOut) || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout ~%q, stderr ~%q",
					code, stdout, stderr, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

func TestTokenMintUsage(t *testing.T) {
	dir := cryptoKeyPair(t)
	keyPath := filepath.Join(dir, "aegis.key")
	base := []string{"token", "mint", "--key", keyPath, "--agent", "a", "--tenant", "t"}
	with := func(extra ...string) []string { return append(append([]string(nil), base...), extra...) }
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"minimal", base, exitOK, ".", ""},
		{"help", []string{"token", "mint", "--help"}, exitOK, "-acting-for value", ""},
		{"group help", []string{"token", "--help"}, exitOK, "jwks", ""},
		{"no agent", []string{"token", "mint", "--key", keyPath, "--tenant", "t"}, exitUsage, "", "--agent"},
		{"no key", []string{"token", "mint", "--agent", "a", "--tenant", "t"}, exitUsage, "", "--key"},
		{"zero ttl", with("--ttl", "0s"), exitUsage, "", "--ttl"},
		{"ttl too long", with("--ttl", "48h"), exitUsage, "", "--ttl"},
		{"bad ttl", with("--ttl", "soon"), exitUsage, "", "invalid value"},
		{"scope with space", with("--scope", "a b"), exitUsage, "", "one non-empty word"},
		{"agent in its own chain", with("--acting-for", "p", "--acting-for", "a"), exitUsage, "", "twice"},
		{"chain too long", with("--acting-for", "p1", "--acting-for", "p2", "--acting-for", "p3", "--acting-for", "p4", "--acting-for", "p5"), exitUsage, "", "longer than 5"},
		{"public key as --key", []string{"token", "mint", "--key", filepath.Join(dir, "aegis.pub"), "--agent", "a", "--tenant", "t"}, exitFailure, "", "aegis.pub"},
		{"missing key file", []string{"token", "mint", "--key", "/nonexistent.key", "--agent", "a", "--tenant", "t"}, exitFailure, "", "/nonexistent.key"},
		{"extra argument", with("x"), exitUsage, "", `unexpected argument "x"`},
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

func TestTokenJWKSUsage(t *testing.T) {
	dir := cryptoKeyPair(t)
	other := cryptoKeyPair(t)
	code, stdout, stderr := cryptoCLI(t, "", "token", "jwks", "--key", filepath.Join(dir, "aegis.pub"), "--key", filepath.Join(other, "aegis.pub"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Keys) != 2 {
		t.Fatalf("jwks %q: %v", stdout, err)
	}
	pub, _ := loadPublicKey(filepath.Join(dir, "aegis.pub"))
	if doc.Keys[0].Kid != keys.KeyID(pub) {
		t.Errorf("kid %s, want %s", doc.Keys[0].Kid, keys.KeyID(pub))
	}
	for _, tc := range []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"token", "jwks"}, exitUsage, "at least one --key"},
		{[]string{"token", "jwks", "--key", filepath.Join(dir, "aegis.key")}, exitFailure, "aegis.key"},
		{[]string{"token", "jwks", "--key", filepath.Join(dir, "aegis.pub"), "--key", filepath.Join(dir, "aegis.pub")}, exitFailure, "twice"},
	} {
		code, _, stderr := cryptoCLI(t, "", tc.args...)
		if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
			t.Errorf("%q: exit %d, stderr %q; want %d, ~%q", tc.args, code, stderr, tc.wantCode, tc.wantErr)
		}
	}
}

// tamper changes one character well inside the signature. (Overwriting the
// last characters can leave the decoded bytes unchanged: the final base64url
// character of a 64-byte signature carries only 2 bits.)
func tamper(tok string) string {
	i := len(tok) - 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
