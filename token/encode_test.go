package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
)

// jsonHeader is the header struct as encoding/json wrote it before Mint
// stopped using encoding/json.
type jsonHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit,omitempty"`
}

// TestEncodeLikeJSON: the signed header and claims bytes are what
// encoding/json wrote for the tagged structs, so that golden tokens and
// any verifier that re-encodes see no change.
func TestEncodeLikeJSON(t *testing.T) {
	odd := "<&> \u2028 \"q\" \\ \x01 \xff é"
	full := baseClaims()
	full.ID = odd
	claims := []Claims{{}, baseClaims(), full, {Subject: odd, Audience: Audience{}, NotBefore: -1, Act: &Actor{}}}
	for _, c := range claims {
		checkSame(t, appendClaims(nil, &c), &c)
	}
	overrides := []OverrideClaims{{}, baseOverride(), {Issuer: odd, Audience: Audience{}, NotBefore: 5}, {Audience: Audience{"a", odd}}}
	for _, c := range overrides {
		checkSame(t, appendOverrideClaims(nil, &c), &c)
	}
	for _, h := range []header{{}, {Alg: Algorithm, Kid: odd, Typ: Type}, {Crit: []byte(`["exp"]`)}} {
		checkSame(t, appendHeader(nil, h), jsonHeader{h.Alg, h.Kid, h.Typ, h.Crit})
	}
}

func checkSame(t *testing.T, got []byte, v any) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestMarshalJWKSLikeJSON: the JWKS document is what
// json.MarshalIndent wrote for the tagged key structs.
func TestMarshalJWKSLikeJSON(t *testing.T) {
	type jsonJWK struct {
		Kty    string `json:"kty"`
		Crv    string `json:"crv"`
		X      string `json:"x"`
		Kid    string `json:"kid,omitempty"`
		Tenant string `json:"tenant,omitempty"`
		Alg    string `json:"alg,omitempty"`
		Use    string `json:"use,omitempty"`
	}
	for _, ks := range [][]jwk{nil, {{Kty: "OKP", Crv: "Ed25519", X: "x<>"}}, {{Kty: "a", Kid: "k", Tenant: "t", Alg: "EdDSA", Use: "sig"}, {Tenant: "u"}}} {
		doc := struct {
			Keys []jsonJWK `json:"keys"`
		}{Keys: []jsonJWK{}}
		for _, k := range ks {
			doc.Keys = append(doc.Keys, jsonJWK{k.Kty, k.Crv, k.X, k.Kid, k.Tenant, k.Alg, k.Use})
		}
		want, _ := json.MarshalIndent(doc, "", "  ")
		want = append(want, '\n')
		if got := appendJWKS(nil, ks); !bytes.Equal(got, want) {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
	}
	_, pub := newKey(t)
	data, err := MarshalBoundJWKS(BoundKey{Tenant: "acme", Pub: pub})
	if err != nil || !strings.Contains(string(data), `"tenant": "acme"`) {
		t.Errorf("MarshalBoundJWKS = %s, %v", data, err)
	}
}

func FuzzEncodeLikeJSON(f *testing.F) {
	f.Add("sub", "aud", "<&>\u2028", int64(1), int64(0), "")
	f.Add("\xff", "", "", int64(-1), int64(1<<62), "act")
	f.Fuzz(func(t *testing.T, s1, s2, s3 string, n1, n2 int64, act string) {
		c := Claims{Issuer: s1, Subject: s2, Audience: Audience{s3, s1}, Tenant: s3, Org: s2, Scope: s1, Region: s3,
			ExpiresAt: n1, NotBefore: n2, IssuedAt: n1 ^ n2, ID: s2}
		if act != "" {
			c.Act = &Actor{Sub: act, Act: &Actor{Sub: s1}}
		}
		checkSame(t, appendClaims(nil, &c), &c)
		o := OverrideClaims{Issuer: s1, Subject: s2, Audience: Audience{s3}, Tenant: s3, Tool: s1, ParamsDigest: s2,
			ApprovalID: act, ID: s3, IssuedAt: n1, ExpiresAt: n2, NotBefore: n1 - n2}
		checkSame(t, appendOverrideClaims(nil, &o), &o)
	})
}

// TestDecodeRejects: what the claims and header readers refuse, beyond
// the syntax parseJSON refuses.
func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"null claim", `{"sub":null}`, "sub"},
		{"null aud", `{"aud":null}`, "aud must be"},
		{"aud of numbers", `{"aud":[1]}`, "aud[0]"},
		{"aud object", `{"aud":{}}`, "aud must be"},
		{"act string", `{"act":"a"}`, "act"},
		{"nested act number", `{"act":{"sub":"a","act":{"sub":1}}}`, "act.act.sub"},
		{"exp fraction", `{"exp":1.0}`, "exp"},
		{"exp exponent", `{"exp":1e3}`, "exp"},
		{"exp beyond int64", `{"exp":9223372036854775808}`, "exp"},
		{"iat string", `{"iat":"1"}`, "iat"},
		{"array", `[]`, "not a JSON object"},
		{"leading space", ` {}`, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeClaims([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeClaims = %v, want it to mention %q", err, tt.want)
			}
			// Override claims have no act: theirs is an unknown claim.
			if _, err := decodeOverrideClaims([]byte(tt.in)); err == nil && !strings.HasPrefix(tt.in, `{"act"`) {
				t.Errorf("decodeOverrideClaims accepted %s", tt.in)
			}
		})
	}
	for _, h := range []string{`{"alg":null}`, `{"kid":1}`, `{"alg":"EdDSA","x":1}`, `{"Alg":"EdDSA"}`, `{"typ":["JWT"]}`} {
		if _, err := decodeHeader([]byte(h)); err == nil {
			t.Errorf("decodeHeader accepted %s", h)
		}
	}
	// Unknown claims are not errors, and act may carry its own.
	c, err := decodeClaims([]byte(`{"sub":"s","role":"r","act":{"sub":"a","x":[1]}}`))
	if err != nil || c.Act == nil || c.Act.Sub != "a" {
		t.Errorf("decodeClaims = %+v, %v", c, err)
	}
}

func TestAudienceUnmarshalJSON(t *testing.T) {
	var v struct {
		Aud Audience `json:"aud"`
	}
	for in, want := range map[string]string{`{"aud":"a"}`: "a", `{"aud":["a","b"]}`: "a,b", `{"aud":null}`: "", `{"aud":[]}`: ""} {
		v.Aud = nil
		if err := json.Unmarshal([]byte(in), &v); err != nil || strings.Join(v.Aud, ",") != want {
			t.Errorf("%s: %q, %v", in, v.Aud, err)
		}
	}
	for _, in := range []string{`{"aud":1}`, `{"aud":[1]}`, `{"aud":{}}`} {
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
	// A verified token survives a trip through the control plane's JSON.
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	ks, _ := NewKeySet(priv.Public().(ed25519.PublicKey))
	got, err := Verify(mustMint(t, priv, baseClaims()), ks, VerifyOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var back Claims
	if err := json.Unmarshal(must(json.Marshal(got)), &back); err != nil || strings.Join(back.Audience, ",") != "aegis" {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}
