package token

import (
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/aegis-mesh/aegis/keys"
)

// TestGoJoseVerifiesMintedToken: a well-kept JOSE library accepts what
// Mint writes, claims included.
func TestGoJoseVerifiesMintedToken(t *testing.T) {
	priv, pub := newKey(t)
	tok := mustMint(t, priv, baseClaims())
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.Headers[0].KeyID; got != keys.KeyID(pub) {
		t.Errorf("kid %s, want %s", got, keys.KeyID(pub))
	}
	var std jwt.Claims
	var ours Claims
	if err := parsed.Claims(pub, &std, &ours); err != nil {
		t.Fatal(err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: "https://cp.example", AnyAudience: jwt.Audience{"aegis"}, Time: now}, 0); err != nil {
		t.Fatal(err)
	}
	if ours.Tenant != "acme" || ours.Act == nil || ours.Act.Sub != "agent-a" {
		t.Errorf("claims = %+v", ours)
	}
	_, otherPub := newKey(t)
	if err := parsed.Claims(otherPub, &std); err == nil {
		t.Error("go-jose verified with the wrong key")
	}
}

// TestVerifyAcceptsGoJoseToken: a token a control plane would mint with
// go-jose (single audience written as a string) verifies here.
func TestVerifyAcceptsGoJoseToken(t *testing.T) {
	priv, pub := newKey(t)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", keys.KeyID(pub)))
	if err != nil {
		t.Fatal(err)
	}
	std := jwt.Claims{
		Issuer: "https://cp.example", Subject: "user-1", Audience: jwt.Audience{"aegis"}, ID: "j1",
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
	}
	extra := map[string]any{"tenant": "acme", "act": map[string]any{"sub": "agent-a"}}
	tok, err := jwt.Signed(signer).Claims(std).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(tok, keySet(t, pub), VerifyOptions{Now: now, Issuer: "https://cp.example", Audience: "aegis", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if Agent(c) != "agent-a" || c.Subject != "user-1" {
		t.Errorf("claims = %+v", c)
	}
}

func TestGoJoseReadsJWKS(t *testing.T) {
	_, pub1 := newKey(t)
	_, pub2 := newKey(t)
	// Bound keys carry an extra "tenant" member, which JOSE libraries
	// must ignore (RFC 7517 §4).
	data, err := MarshalBoundJWKS(BoundKey{Tenant: "acme", Pub: pub1}, BoundKey{Tenant: "globex", Pub: pub2})
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	for _, p := range []ed25519.PublicKey{pub1, pub2} {
		found := set.Key(keys.KeyID(p))
		if len(found) != 1 {
			t.Fatalf("go-jose finds %d keys for %s", len(found), keys.KeyID(p))
		}
		k, ok := found[0].Key.(ed25519.PublicKey)
		if !ok || !k.Equal(p) || found[0].Algorithm != "EdDSA" || found[0].Use != "sig" {
			t.Errorf("go-jose key = %+v", found[0])
		}
		// go-jose's own thumbprint agrees with KeyID.
		tp, err := found[0].Thumbprint(cryptoSHA256)
		if err != nil {
			t.Fatal(err)
		}
		if got := b64(tp); got != keys.KeyID(p) {
			t.Errorf("go-jose thumbprint %s, KeyID %s", got, keys.KeyID(p))
		}
	}

	// And the other way: go-jose's JWKS parses here.
	theirs, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub1, KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ParseJWKS(theirs)
	if err != nil {
		t.Fatalf("go-jose JWKS: %v\n%s", err, theirs)
	}
	if k, ok := ks.Lookup("k1"); !ok || !k.Equal(pub1) {
		t.Error("go-jose JWKS key not found under its kid")
	}
}

const cryptoSHA256 = crypto.SHA256

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
