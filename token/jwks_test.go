package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/keys"
)

func TestJWKSRoundTrip(t *testing.T) {
	_, pub1 := newKey(t)
	_, pub2 := newKey(t)
	data, err := MarshalJWKS(pub1, pub2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(data), "}\n") {
		t.Error("JWKS does not end in a newline")
	}
	ks, err := ParseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []ed25519.PublicKey{pub1, pub2} {
		got, ok := ks.Lookup(keys.KeyID(p))
		if !ok || !got.Equal(p) {
			t.Errorf("key %s missing after round trip", keys.KeyID(p))
		}
	}
	if n := len(ks.KeyIDs()); n != 2 {
		t.Errorf("%d keys, want 2", n)
	}
	if _, err := MarshalJWKS(pub1, pub1); err == nil {
		t.Error("MarshalJWKS accepted the same key twice")
	}
	if _, err := MarshalJWKS(pub1[:5]); err == nil {
		t.Error("MarshalJWKS accepted a short key")
	}
}

func TestParseJWKSRejects(t *testing.T) {
	_, pub := newKey(t)
	good, _ := MarshalJWKS(pub)
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(good, &doc); err != nil {
		t.Fatal(err)
	}
	set := func(ks ...map[string]any) string {
		b, _ := json.Marshal(map[string]any{"keys": ks})
		return string(b)
	}
	edited := func(edit func(map[string]any)) map[string]any {
		k := map[string]any{}
		for n, v := range doc.Keys[0] {
			k[n] = v
		}
		edit(k)
		return k
	}
	key := func(edit func(map[string]any)) string { return set(edited(edit)) }
	same := func(map[string]any) {}
	tests := []struct {
		name string
		data string
		want string
	}{
		{"not json", "nope", "not a JSON object"},
		{"array", "[]", "not a JSON object"},
		{"no keys", `{"keys":[]}`, "no keys"},
		{"keys missing", `{}`, "no keys"},
		{"unknown top member", `{"keys":[],"x":1}`, "unknown member"},
		{"duplicate keys member", `{"keys":[],"keys":[]}`, "duplicate key"},
		{"kty RSA", key(func(k map[string]any) { k["kty"] = "RSA" }), "kty"},
		{"kty EC", key(func(k map[string]any) { k["kty"] = "EC" }), "kty"},
		{"crv X25519", key(func(k map[string]any) { k["crv"] = "X25519" }), "crv"},
		{"alg RS256", key(func(k map[string]any) { k["alg"] = "RS256" }), "alg"},
		{"use enc", key(func(k map[string]any) { k["use"] = "enc" }), "use"},
		{"key_ops sign only", key(func(k map[string]any) { k["key_ops"] = []string{"sign"} }), "key_ops"},
		{"private key", key(func(k map[string]any) { k["d"] = "AAAA" }), "private"},
		{"short x", key(func(k map[string]any) { k["x"] = "AAAA" }), "bytes"},
		{"padded x", key(func(k map[string]any) { k["x"] = k["x"].(string) + "=" }), "base64url"},
		{"unknown member", key(func(k map[string]any) { k["x5c"] = []string{"MII"} }), "unknown member"},
		{"case variant member", strings.Replace(string(good), `"kty"`, `"KTY": "RSA", "kty"`, 1), "must be spelled"},
		{"duplicate kid", set(edited(same), edited(same)), "twice"},
		{"oversize", `{"keys":[` + strings.Repeat(" ", MaxJWKSBytes) + `]}`, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseJWKS([]byte(tt.data))
			if !errors.Is(err, ErrJWKS) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrJWKS mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseJWKSWithoutKid(t *testing.T) {
	_, pub := newKey(t)
	good, _ := MarshalJWKS(pub)
	var doc map[string][]map[string]any
	_ = json.Unmarshal(good, &doc)
	delete(doc["keys"][0], "kid")
	delete(doc["keys"][0], "alg")
	delete(doc["keys"][0], "use")
	data, _ := json.Marshal(doc)
	ks, err := ParseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ks.Lookup(keys.KeyID(pub)); !ok {
		t.Fatal("key without kid not filed under its thumbprint")
	}
}

func FuzzParseJWKS(f *testing.F) {
	pub := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	good, err := MarshalJWKS(pub)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := ParseJWKS(data)
		if err != nil {
			if !errors.Is(err, ErrJWKS) {
				t.Fatalf("error without ErrJWKS: %v", err)
			}
			return
		}
		ids := ks.KeyIDs()
		if len(ids) == 0 || len(ids) > MaxJWKSKeys {
			t.Fatalf("%d keys accepted", len(ids))
		}
		for _, id := range ids {
			if k, ok := ks.Lookup(id); !ok || len(k) != ed25519.PublicKeySize {
				t.Fatalf("kid %q: bad key", id)
			}
		}
	})
}

// TestBoundKeys: a key bound to a tenant verifies that tenant's tokens
// only, the binding survives a JWKS round trip, and unbound keys verify
// any tenant's.
func TestBoundKeys(t *testing.T) {
	acmePriv, acmePub := newKey(t)
	globexPriv, globexPub := newKey(t)
	data, err := MarshalBoundJWKS(BoundKey{Tenant: "acme", Pub: acmePub}, BoundKey{Tenant: "globex", Pub: globexPub})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ParseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := ks.Tenant(keys.KeyID(acmePub)); got != "acme" {
		t.Fatalf("Tenant(acme key) = %q", got)
	}
	unbound, err := NewKeySet(acmePub, globexPub)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mint := func(priv ed25519.PrivateKey, tenant string) string {
		tok, err := Mint(priv, Claims{Subject: "agent-1", Tenant: tenant, IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name   string
		tok    string
		ks     *KeySet
		wantOK bool
	}{
		{"own tenant", mint(acmePriv, "acme"), ks, true},
		{"other tenant's key", mint(globexPriv, "acme"), ks, false},
		{"own key, other tenant", mint(acmePriv, "globex"), ks, false},
		{"unbound set", mint(globexPriv, "acme"), unbound, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.tok, tc.ks, VerifyOptions{Now: now})
			if tc.wantOK && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.wantOK && !errors.Is(err, ErrTenant) {
				t.Fatalf("got %v, want ErrTenant", err)
			}
		})
	}
	for _, bad := range []string{"", "ac me", strings.Repeat("t", 129)} {
		if _, err := MarshalBoundJWKS(BoundKey{Tenant: bad, Pub: acmePub}); err == nil {
			t.Errorf("MarshalBoundJWKS accepted tenant %q", bad)
		}
		if _, err := NewBoundKeySet(BoundKey{Tenant: bad, Pub: acmePub}); err == nil {
			t.Errorf("NewBoundKeySet accepted tenant %q", bad)
		}
	}
	doc := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + base64.RawURLEncoding.EncodeToString(acmePub) + `","tenant":"a b"}]}`
	if _, err := ParseJWKS([]byte(doc)); !errors.Is(err, ErrJWKS) {
		t.Errorf("ParseJWKS with a malformed tenant: %v", err)
	}
}
