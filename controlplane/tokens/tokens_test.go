package tokens

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/token"
)

func (e *env) jwks(t *testing.T, path string) (*token.KeySet, []byte, string) {
	t.Helper()
	st, h, body := e.do(t, anonymous, "GET", path, "", nil)
	if st != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, st, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("JWKS content type %q", ct)
	}
	ks, err := token.ParseJWKS(body)
	if err != nil {
		t.Fatalf("our parser refuses the JWKS: %v", err)
	}
	return ks, body, h.Get("ETag")
}

// TestRotation: a token signed by the previous key still verifies through
// the published JWKS until it has expired; then the old key leaves the set.
func TestRotation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		old := e.mintAgent(t, MintRequest{Agent: "billing-agent", TTLSeconds: 1800})
		ks1, _, etag1 := e.jwks(t, "/v1/tenants/acme/jwks")
		if got := ks1.KeyIDs(); !slices.Equal(got, []string{old.Kid}) {
			t.Fatalf("JWKS before rotation: %v, want [%s]", got, old.Kid)
		}
		if st, _, _ := e.do(t, anonymous, "GET", "/v1/tenants/acme/jwks", "", nil, "If-None-Match", etag1); st != http.StatusNotModified {
			t.Errorf("If-None-Match with the current ETag: %d, want 304", st)
		}

		var rot struct{ Kid, Region string }
		if st := e.json(t, acmeAdmin, "POST", "/v1/tenants/acme/keys/rotate", map[string]string{}, &rot); st != http.StatusOK {
			t.Fatalf("rotate: %d", st)
		}
		if rot.Kid == old.Kid || rot.Region != "eu-west-1" {
			t.Fatalf("rotate answered %+v", rot)
		}
		fresh := e.mintAgent(t, MintRequest{Agent: "billing-agent"})
		if fresh.Kid != rot.Kid {
			t.Errorf("token after rotation signed by %s, want the new key %s", fresh.Kid, rot.Kid)
		}
		ks2, _, etag2 := e.jwks(t, "/v1/tenants/acme/jwks")
		if got := ks2.KeyIDs(); len(got) != 2 || !slices.Contains(got, old.Kid) || !slices.Contains(got, rot.Kid) {
			t.Fatalf("JWKS after rotation: %v, want old and new", got)
		}
		if etag2 == etag1 {
			t.Error("ETag unchanged although the key set changed")
		}
		for _, tok := range []string{old.Token, fresh.Token} {
			if _, err := token.Verify(tok, ks2, token.VerifyOptions{Now: e.clock.Now(), Issuer: issuer, Tenant: "acme"}); err != nil {
				t.Errorf("token does not verify after rotation: %v", err)
			}
		}

		// The old token expires after 30 minutes; its key stays until then
		// plus skew, then leaves the JWKS.
		e.clock.Add(29 * time.Minute)
		if ks, _, _ := e.jwks(t, "/v1/tenants/acme/jwks"); !slices.Contains(ks.KeyIDs(), old.Kid) {
			t.Error("retired key left the JWKS while its tokens were alive")
		}
		e.clock.Add(2*time.Minute + tokenSkew)
		ks3, _, _ := e.jwks(t, "/v1/tenants/acme/jwks")
		if got := ks3.KeyIDs(); !slices.Equal(got, []string{rot.Kid}) {
			t.Errorf("JWKS after the old tokens expired: %v, want [%s]", got, rot.Kid)
		}
		if _, err := token.Verify(old.Token, ks3, token.VerifyOptions{Now: e.clock.Now()}); !errors.Is(err, token.ErrUnknownKey) {
			t.Errorf("old token after its key was dropped: %v, want ErrUnknownKey", err)
		}
	})
}

// TestRotateAfter: the active key is replaced on first use after its age.
func TestRotateAfter(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	e := newEnv(t, d, nil)
	e.svc.cfg.RotateAfter = time.Hour
	var changed []string
	e.svc.cfg.OnKeysChanged = func(_ context.Context, tenant string) { changed = append(changed, tenant) }
	a := e.mintAgent(t, MintRequest{Agent: "a"})
	e.clock.Add(30 * time.Minute)
	if b := e.mintAgent(t, MintRequest{Agent: "a"}); b.Kid != a.Kid {
		t.Error("key rotated before RotateAfter")
	}
	if len(changed) != 1 {
		t.Errorf("key-change notifications after the first key: %v, want one", changed)
	}
	e.clock.Add(31 * time.Minute)
	if c := e.mintAgent(t, MintRequest{Agent: "a"}); c.Kid == a.Kid {
		t.Error("key not rotated after RotateAfter")
	}
	if !slices.Equal(changed, []string{"acme", "acme"}) {
		t.Errorf("key-change notifications after rotation: %v", changed)
	}
}

// TestInterop: minted tokens verify with go-jose v4 against the JWKS as
// go-jose reads it, and with the filter's verifier (token.Verify).
func TestInterop(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		m := e.mintAgent(t, MintRequest{Agent: "billing-agent", ActingFor: []string{"support-agent"}, Org: "acme-org",
			Scope: "payments:write invoices:read", Audience: []string{"aegis"}, Region: "eu-central-1"})
		_, body, _ := e.jwks(t, "/.well-known/jwks.json")
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatalf("go-jose refuses the JWKS: %v", err)
		}
		keysFound := set.Key(m.Kid)
		if len(keysFound) != 1 || !keysFound[0].Valid() || keysFound[0].Algorithm != "EdDSA" {
			t.Fatalf("go-jose JWKS lookup of %s: %+v", m.Kid, keysFound)
		}
		parsed, err := jwt.ParseSigned(m.Token, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatal(err)
		}
		var std jwt.Claims
		var ours token.Claims
		if err := parsed.Claims(keysFound[0].Key, &std, &ours); err != nil {
			t.Fatalf("go-jose: %v", err)
		}
		if err := std.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{"aegis"}, Time: e.clock.Now()}, 0); err != nil {
			t.Fatal(err)
		}
		if std.ID != m.JTI || ours.Tenant != "acme" || ours.Org != "acme-org" || ours.Region != "eu-central-1" ||
			!slices.Equal(token.Chain(&ours), []string{"billing-agent", "support-agent"}) {
			t.Errorf("claims via go-jose: %+v %+v", std, ours)
		}
		ks, err := token.ParseJWKS(body)
		if err != nil {
			t.Fatal(err)
		}
		c, err := token.Verify(m.Token, ks, token.VerifyOptions{Now: e.clock.Now(), Issuer: issuer, Audience: "aegis", Tenant: "acme"})
		if err != nil {
			t.Fatalf("filter verifier: %v", err)
		}
		if token.Agent(c) != "billing-agent" || c.Subject != "support-agent" || c.Scope != "payments:write invoices:read" ||
			c.ExpiresAt-c.IssuedAt != 600 /* the configured default TTL */ {
			t.Errorf("claims via token.Verify: %+v", c)
		}
		if m.Kid == "" || !strings.Contains(string(body), m.Kid) {
			t.Error("well-known JWKS lacks the minting key")
		}
	})
}

// TestMintRules: who may mint, and what a mint request may ask for.
func TestMintRules(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.SQLite), nil)
	for _, tc := range []struct {
		name   string
		as     caller
		body   string
		status int
	}{
		{"author of the tenant", caller{sub: "bob", tenant: "acme", roles: "author"}, `{"agent":"a"}`, 201},
		{"global admin names the tenant", caller{sub: "root", roles: "admin"}, `{"tenant":"acme","agent":"a"}`, 201},
		{"anonymous", anonymous, `{"agent":"a","tenant":"acme"}`, 401},
		{"approver", caller{sub: "bob", tenant: "acme", roles: "approver"}, `{"agent":"a"}`, 403},
		{"node", caller{sub: "n1", tenant: "acme", roles: "node"}, `{"agent":"a"}`, 403},
		{"other tenant", acmeAdmin, `{"tenant":"globex","agent":"a"}`, 403},
		{"global admin without tenant", caller{sub: "root", roles: "admin"}, `{"agent":"a"}`, 400},
		{"ttl above max", acmeAdmin, `{"agent":"a","ttl_seconds":1801}`, 400},
		{"negative ttl", acmeAdmin, `{"agent":"a","ttl_seconds":-1}`, 400},
		{"ttl that overflows a duration", acmeAdmin, `{"agent":"a","ttl_seconds":9223372036854775}`, 400},
		{"agent with space", acmeAdmin, `{"agent":"a b"}`, 400},
		{"chain loop", acmeAdmin, `{"agent":"a","acting_for":["a"]}`, 400},
		{"chain too deep", acmeAdmin, `{"agent":"a","acting_for":["b","c","d","e","f"]}`, 400},
		{"unknown field", acmeAdmin, `{"agent":"a","role":"admin"}`, 400},
		{"duplicate body", acmeAdmin, `{"agent":"a"}{"agent":"b"}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, body := e.do(t, tc.as, "POST", "/v1/tokens/agent", "application/json", []byte(tc.body))
			if st != tc.status {
				t.Errorf("status %d (%s), want %d", st, body, tc.status)
			}
		})
	}
}

// TestAuthenticateAgent: bearer tokens of this service become agent
// principals; other bearer tokens are left to other authenticators; bad,
// expired and revoked ones are errors.
func TestAuthenticateAgent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		m := e.mintAgent(t, MintRequest{Agent: "billing-agent", ActingFor: []string{"support-agent"}, TTLSeconds: 60})
		_, foreignPriv, _ := ed25519.GenerateKey(nil)
		now := e.clock.Now()
		foreign, err := token.Mint(foreignPriv, token.Claims{Issuer: issuer, Subject: "x", Tenant: "acme", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		tampered := m.Token[:len(m.Token)-8] + strings.Repeat("A", 8)
		check := func(name, authz string, wantOK, wantErr bool) {
			t.Helper()
			r := httptest.NewRequest("GET", "/", nil).WithContext(context.Background())
			if authz != "" {
				r.Header.Set("Authorization", authz)
			}
			p, ok, err := e.svc.AuthenticateAgent(r)
			if ok != wantOK || (err != nil) != wantErr {
				t.Errorf("%s: ok %v err %v, want ok %v err %v", name, ok, err, wantOK, wantErr)
			}
			if ok && (p.Subject != "billing-agent" || p.Tenant != "acme" || p.TokenID != m.JTI || !slices.Equal(p.Roles, []auth.Role{auth.RoleAgent})) {
				t.Errorf("%s: principal %+v", name, p)
			}
		}
		check("none", "", false, false)
		check("basic", "Basic YTpi", false, false)
		check("foreign key", "Bearer "+foreign, false, false)
		check("garbage", "Bearer not-a-token", false, false)
		check("valid", "Bearer "+m.Token, true, false)
		check("tampered", "Bearer "+tampered, false, true)

		if err := e.svc.Revoke(context.Background(), Revocation{Tenant: "acme", Kind: KindAgent, Value: "support-agent", RevokedBy: "t", CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		check("principal revoked", "Bearer "+m.Token, false, true)
		if _, err := e.svc.Unrevoke(context.Background(), "acme", KindAgent, "support-agent"); err != nil {
			t.Fatal(err)
		}
		check("unrevoked", "Bearer "+m.Token, true, false)
		e.clock.Add(2*time.Minute + tokenSkew)
		check("expired", "Bearer "+m.Token, false, true)
	})
}

// TestSealedKeys: the database holds no usable private key; a service with
// another key-encryption key cannot sign with it.
func TestSealedKeys(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	e := newEnv(t, d, nil)
	m := e.mintAgent(t, MintRequest{Agent: "a"})
	var sealed, pub string
	if err := d.QueryRow(`SELECT sealed_private, public_key FROM token_keys WHERE kid = $1`, m.Kid).Scan(&sealed, &pub); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, pub) || len(sealed) < 60 {
		t.Errorf("sealed key looks unsealed: %q", sealed)
	}
	other := newEnv(t, d, nil) // same database, fresh KEK
	if _, err := other.svc.keys.active(context.Background(), "acme", "eu-west-1", other.clock.Now(), 0, time.Hour); err == nil {
		t.Error("a service with another key-encryption key unsealed the signing key")
	}
	// Moving a sealed key to another tenant's row does not open either.
	if _, err := e.svc.keys.unseal(sealed, "globex", "eu-west-1", m.Kid); err == nil {
		t.Error("sealed key opened under another tenant")
	}
	if _, err := New(context.Background(), Config{DB: d, Issuer: issuer, KeyEncryptionKey: make([]byte, 16)}); err == nil {
		t.Error("New accepted a short key-encryption key and no registerer")
	}
	if kid := keys.KeyID(mustPub(t, pub)); kid != m.Kid {
		t.Errorf("stored public key has kid %s, want %s", kid, m.Kid)
	}
}

func mustPub(t *testing.T, enc string) ed25519.PublicKey {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("stored public key %q: %v", enc, err)
	}
	return raw
}

// TestJWKSForXDS: the document shipped to nodes always parses (a key is
// created for a tenant that has none) and matches the HTTP endpoint.
func TestJWKSForXDS(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.SQLite), nil)
	doc, err := e.svc.JWKS(context.Background(), "globex")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.ParseJWKS(doc)
	if err != nil || len(ks.KeyIDs()) != 1 {
		t.Fatalf("JWKS of a new tenant: %v %v", ks.KeyIDs(), err)
	}
	_, body, _ := e.jwks(t, "/v1/tenants/globex/jwks")
	if string(body) != string(doc) {
		t.Errorf("HTTP JWKS differs from the xDS one:\n%s\n%s", body, doc)
	}
	m := e.mintAgent(t, MintRequest{Tenant: "acme", Agent: "a"})
	if slices.Contains(ks.KeyIDs(), m.Kid) {
		t.Error("another tenant's key is in globex's JWKS")
	}
	if _, err := e.svc.JWKS(context.Background(), "bad tenant"); err == nil {
		t.Error("JWKS accepted an invalid tenant name")
	}
}
