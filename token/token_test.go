package token

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/keys"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	priv, err := keys.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, priv.Public().(ed25519.PublicKey)
}

func baseClaims() Claims {
	sub, act := Delegate("agent-a", "user-1", "org-admin")
	return Claims{
		Issuer:    "https://cp.example",
		Subject:   sub,
		Act:       act,
		Audience:  Audience{"aegis"},
		Tenant:    "acme",
		Org:       "finance",
		Scope:     "payments:write tools:read",
		Region:    "eu-west-1",
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		ExpiresAt: now.Add(5 * time.Minute).Unix(),
	}
}

func mustMint(t testing.TB, priv ed25519.PrivateKey, c Claims) string {
	t.Helper()
	tok, err := Mint(priv, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func keySet(t testing.TB, pubs ...ed25519.PublicKey) *KeySet {
	t.Helper()
	ks, err := NewKeySet(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestDelegateAndChain(t *testing.T) {
	tests := []struct {
		name      string
		agent     string
		actingFor []string
		wantSub   string
		wantAct   string
		wantChain string
	}{
		{"no delegation", "a", nil, "a", "null", "a"},
		{"one principal", "a", []string{"p1"}, "p1", `{"sub":"a"}`, "a,p1"},
		{"two principals", "a", []string{"p1", "p2"}, "p2", `{"sub":"a","act":{"sub":"p1"}}`, "a,p1,p2"},
		{"three principals", "a", []string{"p1", "p2", "p3"}, "p3", `{"sub":"a","act":{"sub":"p1","act":{"sub":"p2"}}}`, "a,p1,p2,p3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, act := Delegate(tt.agent, tt.actingFor...)
			gotAct, _ := json.Marshal(act)
			if sub != tt.wantSub || string(gotAct) != tt.wantAct {
				t.Errorf("Delegate = %q, %s; want %q, %s", sub, gotAct, tt.wantSub, tt.wantAct)
			}
			c := Claims{Subject: sub, Act: act}
			if got := strings.Join(Chain(&c), ","); got != tt.wantChain {
				t.Errorf("Chain = %s, want %s", got, tt.wantChain)
			}
			if Agent(&c) != tt.agent {
				t.Errorf("Agent = %s, want %s", Agent(&c), tt.agent)
			}
		})
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	priv, pub := newKey(t)
	c := baseClaims()
	tok := mustMint(t, priv, c)

	parts := strings.Split(tok, ".")
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if want := `{"alg":"EdDSA","kid":"` + keys.KeyID(pub) + `","typ":"JWT"}`; string(h) != want {
		t.Errorf("header %s, want %s", h, want)
	}

	got, err := Verify(tok, keySet(t, pub), VerifyOptions{Now: now, Issuer: c.Issuer, Audience: "aegis", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == "" {
		t.Error("Mint left jti empty")
	}
	if id, err := base64.RawURLEncoding.DecodeString(got.ID); err != nil || len(id) != 16 {
		t.Errorf("jti %q is not 128 bits of base64url", got.ID)
	}
	c.ID = got.ID
	a, _ := json.Marshal(c)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Errorf("claims changed:\n got %s\nwant %s", b, a)
	}
	if chain := strings.Join(Chain(got), ","); chain != "agent-a,user-1,org-admin" {
		t.Errorf("chain = %s", chain)
	}
	if s := got.Scopes(); len(s) != 2 || s[1] != "tools:read" {
		t.Errorf("Scopes = %q", s)
	}
	// Two mints differ by jti.
	if again := mustMint(t, priv, baseClaims()); again == tok {
		t.Error("two tokens share a jti")
	}
}

func TestMintRejects(t *testing.T) {
	priv, _ := newKey(t)
	tests := []struct {
		name string
		edit func(*Claims)
		key  ed25519.PrivateKey
		want string
	}{
		{"bad key", nil, priv[:10], "private key"},
		{"no sub", func(c *Claims) { c.Subject = "" }, priv, "sub"},
		{"no tenant", func(c *Claims) { c.Tenant = "" }, priv, "tenant"},
		{"no iat", func(c *Claims) { c.IssuedAt = 0 }, priv, "iat"},
		{"exp before iat", func(c *Claims) { c.ExpiresAt = c.IssuedAt }, priv, "not after iat"},
		{"chain too deep", func(c *Claims) { c.Subject, c.Act = Delegate("a", "p1", "p2", "p3", "p4", "p5") }, priv, "longer than"},
		{"agent acts for itself", func(c *Claims) { c.Subject, c.Act = Delegate("a", "p1", "a") }, priv, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseClaims()
			if tt.edit != nil {
				tt.edit(&c)
			}
			_, err := Mint(tt.key, c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	// The longest allowed chain mints.
	c := baseClaims()
	c.Subject, c.Act = Delegate("a", "p1", "p2", "p3", "p4")
	if _, err := Mint(priv, c); err != nil {
		t.Fatalf("chain of %d: %v", MaxChain, err)
	}
}

// forge signs an arbitrary header and payload, for inputs Mint refuses
// to produce.
func forge(priv ed25519.PrivateKey, header, payload string) string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	return s + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(s)))
}

// signRaw signs already-encoded header.payload text as is.
func signRaw(priv ed25519.PrivateKey, signing string) string {
	return signing + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(signing)))
}

// strayBits changes the last character of an unpadded base64url string so
// that it decodes to the same bytes only under a lenient decoder.
func strayBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(s)%4 == 0 {
		return s + "A" // length 1 mod 4 is never valid
	}
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last^1])
}

func TestVerifyRejects(t *testing.T) {
	priv, pub := newKey(t)
	otherPriv, otherPub := newKey(t)
	ks := keySet(t, pub)
	kid := keys.KeyID(pub)
	hdr := `{"alg":"EdDSA","kid":"` + kid + `","typ":"JWT"}`
	good := mustMint(t, priv, baseClaims())
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	claims := func(edit func(*Claims)) string {
		c := baseClaims()
		c.ID = "fixed"
		edit(&c)
		p, _ := json.Marshal(c)
		return forge(priv, hdr, string(p))
	}
	raw := func(s string) string { return forge(priv, hdr, s) }
	withHeader := func(h string) string { return forge(priv, h, string(payload)) }
	flipped := []byte(parts[2])
	if flipped[3] == 'A' {
		flipped[3] = 'B'
	} else {
		flipped[3] = 'A'
	}

	tests := []struct {
		name string
		tok  string
		opts VerifyOptions
		want error
	}{
		{"empty", "", VerifyOptions{}, ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], VerifyOptions{}, ErrMalformed},
		{"four parts", good + ".x", VerifyOptions{}, ErrMalformed},
		{"empty signature", parts[0] + "." + parts[1] + ".", VerifyOptions{}, ErrMalformed},
		{"oversize", good, VerifyOptions{MaxSize: len(good) - 1}, ErrMalformed},
		{"padded header", parts[0] + "=." + parts[1] + "." + parts[2], VerifyOptions{}, ErrMalformed},
		{"newline in signed payload", signRaw(priv, parts[0]+"."+parts[1][:5]+"\n"+parts[1][5:]), VerifyOptions{}, ErrMalformed},
		{"std alphabet in signed payload", signRaw(priv, parts[0]+"."+parts[1][:4]+"+/"+parts[1][6:]), VerifyOptions{}, ErrMalformed},
		{"padded signed payload", signRaw(priv, parts[0]+"."+parts[1]+"=="), VerifyOptions{}, ErrMalformed},
		{"stray bits in signed payload", signRaw(priv, parts[0]+"."+strayBits(parts[1])), VerifyOptions{}, ErrMalformed},
		{"alg none", withHeader(`{"alg":"none","kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrAlgorithm},
		{"alg HS256", withHeader(`{"alg":"HS256","kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrAlgorithm},
		{"alg RS256", withHeader(`{"alg":"RS256","kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrAlgorithm},
		{"alg ES256", withHeader(`{"alg":"ES256","kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrAlgorithm},
		{"alg lower case", withHeader(`{"alg":"eddsa","kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrAlgorithm},
		{"alg missing", withHeader(`{"kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrAlgorithm},
		{"crit header", withHeader(`{"alg":"EdDSA","crit":["exp"],"kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrMalformed},
		{"jwk header", withHeader(`{"alg":"EdDSA","jwk":{},"kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrMalformed},
		{"duplicate alg", withHeader(`{"alg":"none","alg":"EdDSA","kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrMalformed},
		{"case variant alg", withHeader(`{"ALG":"none","alg":"EdDSA","kid":"` + kid + `","typ":"JWT"}`), VerifyOptions{}, ErrMalformed},
		{"wrong typ", withHeader(`{"alg":"EdDSA","kid":"` + kid + `","typ":"at+jwt"}`), VerifyOptions{}, ErrMalformed},
		{"header not object", withHeader(`["EdDSA"]`), VerifyOptions{}, ErrMalformed},
		{"header trailing data", withHeader(hdr + `{}`), VerifyOptions{}, ErrMalformed},
		{"no kid", withHeader(`{"alg":"EdDSA","typ":"JWT"}`), VerifyOptions{}, ErrUnknownKey},
		{"unknown kid", withHeader(`{"alg":"EdDSA","kid":"nope","typ":"JWT"}`), VerifyOptions{}, ErrUnknownKey},
		{"signed by another key", forge(otherPriv, hdr, string(payload)), VerifyOptions{}, ErrSignature},
		{"flipped signature", parts[0] + "." + parts[1] + "." + string(flipped), VerifyOptions{}, ErrSignature},
		{"short signature", parts[0] + "." + parts[1] + "." + parts[2][:40], VerifyOptions{}, ErrSignature},
		{"payload swapped", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "." + parts[2], VerifyOptions{}, ErrSignature},
		{"payload not json", raw("not json"), VerifyOptions{}, ErrMalformed},
		{"payload invalid utf8", raw("{\"sub\":\"\xff\"}"), VerifyOptions{}, ErrMalformed},
		{"duplicate tenant", raw(strings.Replace(string(payload), `"tenant":"acme"`, `"tenant":"acme","tenant":"evil"`, 1)), VerifyOptions{}, ErrMalformed},
		{"case variant tenant", raw(strings.Replace(string(payload), `"tenant":"acme"`, `"tenant":"acme","Tenant":"evil"`, 1)), VerifyOptions{}, ErrMalformed},
		{"case variant custom claim", raw(strings.Replace(string(payload), `"tenant":"acme"`, `"tenant":"acme","role":"a","ROLE":"b"`, 1)), VerifyOptions{}, ErrMalformed},
		{"duplicate in act", raw(strings.Replace(string(payload), `"act":{"sub":"agent-a"`, `"act":{"sub":"agent-a","sub":"x"`, 1)), VerifyOptions{}, ErrMalformed},
		{"float exp", raw(strings.Replace(string(payload), `"exp":`, `"exp":1.5,"x":`, 1)), VerifyOptions{}, ErrMalformed},
		{"exp as string", raw(strings.Replace(string(payload), `"exp":`, `"exp":"1","x":`, 1)), VerifyOptions{}, ErrMalformed},
		{"aud number", raw(strings.Replace(string(payload), `"aud":["aegis"]`, `"aud":5`, 1)), VerifyOptions{}, ErrMalformed},
		{"no exp", claims(func(c *Claims) { c.ExpiresAt = 0 }), VerifyOptions{Now: now}, ErrMalformed},
		{"no sub", claims(func(c *Claims) { c.Subject = "" }), VerifyOptions{Now: now}, ErrMalformed},
		{"no jti", claims(func(c *Claims) { c.ID = "" }), VerifyOptions{Now: now}, ErrMalformed},
		{"expired", good, VerifyOptions{Now: now.Add(5*time.Minute + DefaultSkew)}, ErrExpired},
		{"expired no skew", good, VerifyOptions{Now: now.Add(5 * time.Minute), Skew: -1}, ErrExpired},
		{"nbf ahead", claims(func(c *Claims) { c.NotBefore = now.Add(2 * time.Minute).Unix() }), VerifyOptions{Now: now}, ErrNotYetValid},
		{"iat ahead", claims(func(c *Claims) { c.IssuedAt = now.Add(2 * time.Minute).Unix() }), VerifyOptions{Now: now}, ErrNotYetValid},
		{"wrong issuer", good, VerifyOptions{Now: now, Issuer: "https://other"}, ErrIssuer},
		{"wrong audience", good, VerifyOptions{Now: now, Audience: "other"}, ErrAudience},
		{"wrong tenant", good, VerifyOptions{Now: now, Tenant: "evil"}, ErrTenant},
		{"no tenant", claims(func(c *Claims) { c.Tenant = "" }), VerifyOptions{Now: now}, ErrTenant},
		{"chain too deep", claims(func(c *Claims) { c.Subject, c.Act = Delegate("a", "p1", "p2", "p3", "p4", "p5") }), VerifyOptions{Now: now}, ErrChain},
		{"chain loop", claims(func(c *Claims) { c.Subject, c.Act = Delegate("a", "p1", "a") }), VerifyOptions{Now: now}, ErrChain},
		{"empty actor", claims(func(c *Claims) { c.Act = &Actor{Sub: ""} }), VerifyOptions{Now: now}, ErrChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Now.IsZero() {
				tt.opts.Now = now
			}
			set := ks
			if tt.name == "signed by another key" {
				// The other key is unknown under our kid; give the set
				// both keys so that only the signature can fail.
				set = &KeySet{keys: map[string]ed25519.PublicKey{kid: pub, keys.KeyID(otherPub): otherPub}}
			}
			c, err := Verify(tt.tok, set, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
		})
	}
}

func TestVerifySkewBoundaries(t *testing.T) {
	priv, pub := newKey(t)
	ks := keySet(t, pub)
	c := baseClaims()
	c.IssuedAt = now.Add(DefaultSkew).Unix()
	c.NotBefore = c.IssuedAt
	tok := mustMint(t, priv, c)
	if _, err := Verify(tok, ks, VerifyOptions{Now: now}); err != nil {
		t.Errorf("iat exactly skew ahead: %v", err)
	}
	exp := time.Unix(c.ExpiresAt, 0)
	if _, err := Verify(tok, ks, VerifyOptions{Now: exp.Add(DefaultSkew - time.Second)}); err != nil {
		t.Errorf("one second before exp+skew: %v", err)
	}
	if _, err := Verify(tok, ks, VerifyOptions{Now: exp.Add(DefaultSkew)}); !errors.Is(err, ErrExpired) {
		t.Errorf("at exp+skew: %v", err)
	}
	if _, err := Verify(tok, nil, VerifyOptions{Now: now}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("nil key set: %v", err)
	}
}

func TestAudienceShapes(t *testing.T) {
	priv, pub := newKey(t)
	hdr := `{"alg":"EdDSA","kid":"` + keys.KeyID(pub) + `","typ":"JWT"}`
	for _, aud := range []string{`"aegis"`, `["x","aegis"]`} {
		p := `{"sub":"a","tenant":"acme","aud":` + aud + `,"exp":` + jsonInt(now.Add(time.Minute).Unix()) + `,"iat":` + jsonInt(now.Unix()) + `,"jti":"j"}`
		if _, err := Verify(forge(priv, hdr, p), keySet(t, pub), VerifyOptions{Now: now, Audience: "aegis"}); err != nil {
			t.Errorf("aud %s: %v", aud, err)
		}
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func FuzzVerify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	ks, err := NewKeySet(pub)
	if err != nil {
		f.Fatal(err)
	}
	good, err := mint(priv, baseClaims(), bytes.NewReader(make([]byte, 16)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(forge(priv, `{"alg":"EdDSA","kid":"`+keys.KeyID(pub)+`","typ":"JWT"}`, `{"sub":"a","tenant":"t","exp":1,"act":{"sub":"a"}}`))
	f.Add(forge(priv, `{"alg":"none"}`, `{}`))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(tok, ks, VerifyOptions{Now: now})
		if err != nil {
			if c != nil {
				t.Fatal("claims with error")
			}
			return
		}
		// Anything accepted was signed by our key, so it must be a token
		// whose claims pass the checks again.
		if err := checkClaims(c, VerifyOptions{Now: now}); err != nil {
			t.Fatalf("accepted claims fail checks: %v", err)
		}
		if len(Chain(c)) > MaxChain {
			t.Fatalf("chain of %d accepted", len(Chain(c)))
		}
	})
}
