package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/keys"
)

const testDigest = "3b7c3b1e9f0c5a7d2e4f6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"

func baseOverride() OverrideClaims {
	return OverrideClaims{
		Issuer:       "https://cp.example",
		Subject:      "agent-a",
		Tenant:       "acme",
		Tool:         "payments.refund",
		ParamsDigest: testDigest,
		ApprovalID:   "apr_1",
		IssuedAt:     now.Unix(),
		ExpiresAt:    now.Add(10 * time.Minute).Unix(),
	}
}

func mustMintOverride(t testing.TB, priv ed25519.PrivateKey, c OverrideClaims) string {
	t.Helper()
	tok, err := MintOverride(priv, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestOverrideRoundTrip(t *testing.T) {
	priv, pub := newKey(t)
	ks := keySet(t, pub)
	tok := mustMintOverride(t, priv, baseOverride())

	hdr, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"alg":"EdDSA","kid":"` + keys.KeyID(pub) + `","typ":"aegis-override+jwt"}`; string(hdr) != want {
		t.Errorf("header %s, want %s", hdr, want)
	}
	c, err := VerifyOverride(tok, ks, VerifyOptions{Now: now, Issuer: "https://cp.example", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	want := baseOverride()
	if c.ID == "" || len(c.Audience) != 1 || c.Audience[0] != OverrideAudience {
		t.Fatalf("jti %q aud %q: want a generated jti and the default audience", c.ID, c.Audience)
	}
	want.ID, want.Audience = c.ID, c.Audience
	if got, _ := json.Marshal(c); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("claims %s, want %+v", got, want)
	}
	again := mustMintOverride(t, priv, baseOverride())
	if c2, err := VerifyOverride(again, ks, VerifyOptions{Now: now}); err != nil || c2.ID == c.ID {
		t.Errorf("second mint: jti %v err %v; want a fresh jti", c2, err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestTokenKindsDoNotCross: both kinds are signed by the same tenant key,
// so only the header type keeps an override from passing as an agent
// token and the other way round.
func TestTokenKindsDoNotCross(t *testing.T) {
	priv, pub := newKey(t)
	ks := keySet(t, pub)
	agentTok := mustMint(t, priv, baseClaims())
	overrideTok := mustMintOverride(t, priv, baseOverride())
	if _, err := Verify(overrideTok, ks, VerifyOptions{Now: now}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "typ") {
		t.Errorf("override as agent token: %v, want a typ refusal", err)
	}
	if _, err := VerifyOverride(agentTok, ks, VerifyOptions{Now: now}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "typ") {
		t.Errorf("agent token as override: %v, want a typ refusal", err)
	}
	// An agent token's payload under an override header still lacks the
	// override claims.
	payload := must(base64.RawURLEncoding.DecodeString(strings.Split(agentTok, ".")[1]))
	forged := forge(priv, `{"alg":"EdDSA","kid":"`+keys.KeyID(pub)+`","typ":"aegis-override+jwt"}`, string(payload))
	if _, err := VerifyOverride(forged, ks, VerifyOptions{Now: now}); !errors.Is(err, ErrMalformed) {
		t.Errorf("agent claims under override typ: %v, want ErrMalformed", err)
	}
}

func TestMintOverrideRejects(t *testing.T) {
	priv, _ := newKey(t)
	tests := []struct {
		name string
		edit func(*OverrideClaims)
	}{
		{"no iss", func(c *OverrideClaims) { c.Issuer = "" }},
		{"no sub", func(c *OverrideClaims) { c.Subject = "" }},
		{"no tenant", func(c *OverrideClaims) { c.Tenant = "" }},
		{"no tool", func(c *OverrideClaims) { c.Tool = "" }},
		{"no digest", func(c *OverrideClaims) { c.ParamsDigest = "" }},
		{"upper-case digest", func(c *OverrideClaims) { c.ParamsDigest = strings.ToUpper(testDigest) }},
		{"short digest", func(c *OverrideClaims) { c.ParamsDigest = testDigest[:63] }},
		{"no approval", func(c *OverrideClaims) { c.ApprovalID = "" }},
		{"no iat", func(c *OverrideClaims) { c.IssuedAt = 0 }},
		{"exp before iat", func(c *OverrideClaims) { c.ExpiresAt = c.IssuedAt }},
		{"foreign audience", func(c *OverrideClaims) { c.Audience = Audience{"aegis"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseOverride()
			tt.edit(&c)
			if tok, err := MintOverride(priv, c); err == nil {
				t.Errorf("minted %s", tok)
			}
		})
	}
	if _, err := MintOverride(priv[:10], baseOverride()); err == nil {
		t.Error("minted with a short key")
	}
	if _, err := mintOverride(priv, baseOverride(), bytes.NewReader(nil)); err == nil {
		t.Error("minted without randomness for the jti")
	}
}

func TestVerifyOverrideRejects(t *testing.T) {
	priv, pub := newKey(t)
	_, otherPub := newKey(t)
	otherPriv, _ := newKey(t)
	ks := keySet(t, pub, otherPub)
	kid := keys.KeyID(pub)
	hdr := `{"alg":"EdDSA","kid":"` + kid + `","typ":"aegis-override+jwt"}`
	good := mustMintOverride(t, priv, baseOverride())
	parts := strings.Split(good, ".")
	payload := string(must(base64.RawURLEncoding.DecodeString(parts[1])))
	claims := func(edit func(map[string]any)) string {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(payload), &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		return forge(priv, hdr, string(must(json.Marshal(m))))
	}
	withHeader := func(h string) string { return forge(priv, h, payload) }
	flipped := []byte(parts[2])
	if flipped[3] == 'A' {
		flipped[3] = 'B'
	} else {
		flipped[3] = 'A'
	}
	opts := VerifyOptions{Now: now}

	tests := []struct {
		name string
		tok  string
		opts VerifyOptions
		want error
	}{
		{"empty", "", opts, ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], opts, ErrMalformed},
		{"four parts", good + ".x", opts, ErrMalformed},
		{"oversize", good, VerifyOptions{Now: now, MaxSize: len(good) - 1}, ErrMalformed},
		{"padded payload", signRaw(priv, parts[0]+"."+parts[1]+"=="), opts, ErrMalformed},
		{"stray bits in payload", signRaw(priv, parts[0]+"."+strayBits(parts[1])), opts, ErrMalformed},
		{"tampered signature", parts[0] + "." + parts[1] + "." + string(flipped), opts, ErrSignature},
		{"signed by another key", forge(otherPriv, hdr, payload), opts, ErrSignature},
		{"alg none", withHeader(`{"alg":"none","kid":"` + kid + `","typ":"aegis-override+jwt"}`), opts, ErrAlgorithm},
		{"alg HS256", withHeader(`{"alg":"HS256","kid":"` + kid + `","typ":"aegis-override+jwt"}`), opts, ErrAlgorithm},
		{"typ JWT", withHeader(`{"alg":"EdDSA","kid":"` + kid + `","typ":"JWT"}`), opts, ErrMalformed},
		{"typ missing", withHeader(`{"alg":"EdDSA","kid":"` + kid + `"}`), opts, ErrMalformed},
		{"typ case", withHeader(`{"alg":"EdDSA","kid":"` + kid + `","typ":"AEGIS-OVERRIDE+JWT"}`), opts, ErrMalformed},
		{"unknown header", withHeader(`{"alg":"EdDSA","kid":"` + kid + `","typ":"aegis-override+jwt","jku":"x"}`), opts, ErrMalformed},
		{"crit header", withHeader(`{"alg":"EdDSA","kid":"` + kid + `","typ":"aegis-override+jwt","crit":["x"]}`), opts, ErrMalformed},
		{"duplicate typ", withHeader(`{"alg":"EdDSA","kid":"` + kid + `","typ":"JWT","typ":"aegis-override+jwt"}`), opts, ErrMalformed},
		{"no kid", withHeader(`{"alg":"EdDSA","typ":"aegis-override+jwt"}`), opts, ErrUnknownKey},
		{"unknown kid", withHeader(`{"alg":"EdDSA","kid":"nope","typ":"aegis-override+jwt"}`), opts, ErrUnknownKey},
		{"claims not an object", forge(priv, hdr, `["a"]`), opts, ErrMalformed},
		{"duplicate tool", forge(priv, hdr, strings.Replace(payload, `"tool":`, `"tool":"x","tool":`, 1)), opts, ErrMalformed},
		{"case-folded tool", forge(priv, hdr, strings.Replace(payload, `"tool":`, `"TOOL":"x","tool":`, 1)), opts, ErrMalformed},
		{"case-folded digest", forge(priv, hdr, strings.Replace(payload, `"params_digest":`, `"PARAMS_DIGEST":"x","params_digest":`, 1)), opts, ErrMalformed},
		{"invalid utf-8", forge(priv, hdr, strings.Replace(payload, `"apr_1"`, "\"apr\xff\"", 1)), opts, ErrMalformed},
		{"no iss", claims(func(m map[string]any) { delete(m, "iss") }), opts, ErrMalformed},
		{"no sub", claims(func(m map[string]any) { delete(m, "sub") }), opts, ErrMalformed},
		{"no tenant", claims(func(m map[string]any) { delete(m, "tenant") }), opts, ErrMalformed},
		{"no tool", claims(func(m map[string]any) { delete(m, "tool") }), opts, ErrMalformed},
		{"no digest", claims(func(m map[string]any) { delete(m, "params_digest") }), opts, ErrMalformed},
		{"digest not hex", claims(func(m map[string]any) { m["params_digest"] = strings.Repeat("g", 64) }), opts, ErrMalformed},
		{"no approval", claims(func(m map[string]any) { delete(m, "approval_id") }), opts, ErrMalformed},
		{"no jti", claims(func(m map[string]any) { delete(m, "jti") }), opts, ErrMalformed},
		{"no iat", claims(func(m map[string]any) { delete(m, "iat") }), opts, ErrMalformed},
		{"no exp", claims(func(m map[string]any) { delete(m, "exp") }), opts, ErrMalformed},
		{"negative nbf", claims(func(m map[string]any) { m["nbf"] = -1 }), opts, ErrMalformed},
		{"tool not a string", claims(func(m map[string]any) { m["tool"] = 1 }), opts, ErrMalformed},
		{"no aud", claims(func(m map[string]any) { delete(m, "aud") }), opts, ErrAudience},
		{"agent aud", claims(func(m map[string]any) { m["aud"] = []string{"aegis"} }), opts, ErrAudience},
		{"aud option", good, VerifyOptions{Now: now, Audience: "other"}, ErrAudience},
		{"expired", good, VerifyOptions{Now: now.Add(10*time.Minute + DefaultSkew)}, ErrExpired},
		{"iat in future", good, VerifyOptions{Now: now.Add(-DefaultSkew - time.Second)}, ErrNotYetValid},
		{"nbf in future", claims(func(m map[string]any) { m["nbf"] = now.Add(time.Hour).Unix() }), opts, ErrNotYetValid},
		{"issuer", good, VerifyOptions{Now: now, Issuer: "https://other"}, ErrIssuer},
		{"tenant", good, VerifyOptions{Now: now, Tenant: "globex"}, ErrTenant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := VerifyOverride(tt.tok, ks, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
		})
	}
}

func TestVerifyOverrideSkew(t *testing.T) {
	priv, pub := newKey(t)
	ks := keySet(t, pub)
	tok := mustMintOverride(t, priv, baseOverride())
	exp := now.Add(10 * time.Minute)
	tests := []struct {
		at   time.Time
		skew time.Duration
		ok   bool
	}{
		{exp.Add(DefaultSkew - time.Second), 0, true},
		{exp.Add(DefaultSkew), 0, false},
		{exp, -1, false},
		{exp.Add(-time.Second), -1, true},
		{now.Add(-DefaultSkew), 0, true},
		{now.Add(-time.Second), -1, false},
	}
	for _, tt := range tests {
		_, err := VerifyOverride(tok, ks, VerifyOptions{Now: tt.at, Skew: tt.skew})
		if (err == nil) != tt.ok {
			t.Errorf("at %s skew %s: err %v, want ok=%v", tt.at.Format(time.RFC3339), tt.skew, err, tt.ok)
		}
	}
}

func FuzzVerifyOverride(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	ks, err := NewKeySet(pub)
	if err != nil {
		f.Fatal(err)
	}
	good, err := mintOverride(priv, baseOverride(), bytes.NewReader(make([]byte, 16)))
	if err != nil {
		f.Fatal(err)
	}
	agent, err := mint(priv, baseClaims(), bytes.NewReader(make([]byte, 16)))
	if err != nil {
		f.Fatal(err)
	}
	hdr := `{"alg":"EdDSA","kid":"` + keys.KeyID(pub) + `","typ":"aegis-override+jwt"}`
	f.Add(good)
	f.Add(agent)
	f.Add("")
	f.Add("a.b.c")
	f.Add(forge(priv, hdr, `{"iss":"i","sub":"a","tenant":"t","tool":"x","params_digest":"`+testDigest+`","approval_id":"p","jti":"j","iat":1,"exp":2,"aud":"aegis-override"}`))
	f.Add(forge(priv, hdr, `{"aud":[]}`))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := VerifyOverride(tok, ks, VerifyOptions{Now: now})
		if err != nil {
			if c != nil {
				t.Fatal("claims with error")
			}
			return
		}
		if err := checkOverrideClaims(c, VerifyOptions{Now: now}); err != nil {
			t.Fatalf("accepted claims fail checks: %v", err)
		}
		if _, err := Verify(tok, ks, VerifyOptions{Now: now}); err == nil {
			t.Fatal("an accepted override also verifies as an agent token")
		}
	})
}
