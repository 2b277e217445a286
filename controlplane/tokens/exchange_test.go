package tokens

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/policies"
	"github.com/aegis-mesh/aegis/token"
)

// paymentsPolicy compiles the payments example policy (tenant acme) and
// returns its may_delegate_to table read from data.json and its signed
// runtime bundle, as the policy store publishes it.
func paymentsPolicy(t *testing.T) (Delegations, []byte) {
	t.Helper()
	ps, errs := policies.LoadPath(filepath.Join("..", "..", "policies", "examples", "payments.yaml"))
	if len(errs) > 0 {
		t.Fatalf("load payments example: %v", errs)
	}
	c, err := policies.Compile(context.Background(), ps, policies.Options{SkipWasm: true})
	if err != nil {
		t.Fatalf("compile payments example: %v", err)
	}
	d, err := ParseDelegation(c.Data)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	now := time.Now().UTC()
	_, runtime, err := policies.BuildBundles(c, policies.BundleOptions{Revision: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour), SignKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return d, runtime
}

func TestDataRootMatchesPolicies(t *testing.T) {
	if dataRoot != policies.DataRoot {
		t.Errorf("dataRoot %q, policies.DataRoot %q", dataRoot, policies.DataRoot)
	}
}

// TestExchange: delegation is granted exactly when the compiled payments
// policy lists the actor in the principal's may_delegate_to
// (support-agent → billing-agent, not the reverse).
func TestExchange(t *testing.T) {
	table, runtime := paymentsPolicy(t)
	if !table.Allows("support-agent", "billing-agent") || table.Allows("billing-agent", "support-agent") || table.Allows("support-agent", "nobody") {
		t.Fatalf("payments delegation table: %v", table)
	}
	// The exchange reads the table from the tenant's current runtime bundle.
	deleg := BundleDelegation(func(_ context.Context, tenant string) ([]byte, error) {
		if tenant != "acme" {
			return nil, errors.New("no release")
		}
		return runtime, nil
	})
	if ok, err := deleg.DelegationAllowed(context.Background(), "globex", "support-agent", "billing-agent"); ok || err == nil {
		t.Errorf("tenant without a release: %v %v", ok, err)
	}
	if ok, err := BundleDelegation(func(context.Context, string) ([]byte, error) { return runtime, nil }).DelegationAllowed(context.Background(), "globex", "support-agent", "billing-agent"); ok || err == nil {
		t.Errorf("another tenant's bundle accepted: %v %v", ok, err)
	}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, deleg)
		support := e.mintAgent(t, MintRequest{Agent: "support-agent", Scope: "crm invoices", Audience: []string{"aegis"}, Region: "eu-west-1", TTLSeconds: 1200})
		billing := e.mintAgent(t, MintRequest{Agent: "billing-agent", TTLSeconds: 300})
		form := func(kv ...string) url.Values {
			v := url.Values{"grant_type": {GrantTypeExchange}, "subject_token_type": {TokenTypeJWT}}
			for i := 0; i+1 < len(kv); i += 2 {
				v.Set(kv[i], kv[i+1])
			}
			return v
		}
		withActor := func(subject, actor string, kv ...string) url.Values {
			return form(append([]string{"subject_token", subject, "actor_token", actor, "actor_token_type", TokenTypeJWT}, kv...)...)
		}

		st, out := e.exchange(t, anonymous, withActor(support.Token, billing.Token))
		if st != http.StatusOK {
			t.Fatalf("allowed exchange: %d %v", st, out)
		}
		ks, err := e.svc.KeySet(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		c, err := token.Verify(out["access_token"].(string), ks, token.VerifyOptions{Now: e.clock.Now(), Issuer: issuer, Tenant: "acme", Audience: "aegis"})
		if err != nil {
			t.Fatalf("exchanged token does not verify with the filter's verifier: %v", err)
		}
		if !slices.Equal(token.Chain(c), []string{"billing-agent", "support-agent"}) || c.Scope != "crm invoices" || c.Region != "eu-west-1" {
			t.Errorf("exchanged claims %+v", c)
		}
		if c.ExpiresAt != e.clock.Now().Add(5*time.Minute).Unix() || out["issued_token_type"] != TokenTypeJWT || out["token_type"] != "N_A" {
			t.Errorf("exchanged token: exp %d (want the actor token's), reply %v", c.ExpiresAt, out)
		}

		for _, tc := range []struct {
			name   string
			as     caller
			form   url.Values
			status int
			code   string
		}{
			{"reverse direction", anonymous, withActor(billing.Token, support.Token), 403, "access_denied"},
			{"requested actor, anonymous", anonymous, form("subject_token", support.Token, "requested_actor", "billing-agent"), 403, "access_denied"},
			{"requested actor, admin of other tenant", caller{sub: "x", tenant: "globex", roles: "admin"}, form("subject_token", support.Token, "requested_actor", "billing-agent"), 403, "access_denied"},
			{"requested actor, admin, not allowed", acmeAdmin, form("subject_token", billing.Token, "requested_actor", "support-agent"), 403, "access_denied"},
			{"requested actor, admin, allowed", acmeAdmin, form("subject_token", support.Token, "requested_actor", "billing-agent"), 200, ""},
			{"widen scope", anonymous, withActor(support.Token, billing.Token, "scope", "crm payments"), 400, "invalid_scope"},
			{"narrow scope", anonymous, withActor(support.Token, billing.Token, "scope", "crm"), 200, ""},
			{"other audience", anonymous, withActor(support.Token, billing.Token, "audience", "elsewhere"), 400, "invalid_target"},
			{"forged subject", anonymous, withActor(support.Token[:len(support.Token)-4]+"AAAA", billing.Token), 400, "invalid_grant"},
			{"no actor", anonymous, form("subject_token", support.Token), 400, "invalid_request"},
			{"wrong grant", anonymous, func() url.Values {
				v := withActor(support.Token, billing.Token)
				v.Set("grant_type", "password")
				return v
			}(), 400, "unsupported_grant_type"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, out := e.exchange(t, tc.as, tc.form)
				if st != tc.status || (tc.code != "" && out["error"] != tc.code) {
					t.Errorf("status %d %v, want %d %s", st, out, tc.status, tc.code)
				}
			})
		}

		// A revoked subject token or a tenant under its kill switch cannot
		// be exchanged.
		ctx := context.Background()
		if err := e.svc.Revoke(ctx, Revocation{Tenant: "acme", Kind: KindJTI, Value: support.JTI, RevokedBy: "t", CreatedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		if st, out := e.exchange(t, anonymous, withActor(support.Token, billing.Token)); st != 400 || !strings.Contains(out["message"].(string), "revoked") {
			t.Errorf("revoked subject: %d %v", st, out)
		}
		fresh := e.mintAgent(t, MintRequest{Agent: "support-agent"})
		if err := e.svc.SetKillSwitch(ctx, "acme", true, "t", e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if st, out := e.exchange(t, anonymous, withActor(fresh.Token, billing.Token)); st != 400 || !strings.Contains(out["message"].(string), "kill switch") {
			t.Errorf("kill switch on: %d %v", st, out)
		}
	})
}

// TestExchangeWithoutPolicy: no delegation policy refuses every exchange.
func TestExchangeWithoutPolicy(t *testing.T) {
	e := newEnv(t, dbtest.New(t, db.SQLite), nil)
	s := e.mintAgent(t, MintRequest{Agent: "support-agent"})
	a := e.mintAgent(t, MintRequest{Agent: "billing-agent"})
	v := url.Values{"grant_type": {GrantTypeExchange}, "subject_token": {s.Token}, "subject_token_type": {TokenTypeJWT},
		"actor_token": {a.Token}, "actor_token_type": {TokenTypeJWT}}
	if st, out := e.exchange(t, anonymous, v); st != 403 || out["error"] != "access_denied" {
		t.Errorf("exchange without a delegation policy: %d %v", st, out)
	}
}

func TestParseExchange(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	base := "grant_type=" + url.QueryEscape(GrantTypeExchange) + "&subject_token=s.t.x&subject_token_type=" + url.QueryEscape(TokenTypeJWT)
	actor := "&actor_token=a.t.x&actor_token_type=" + url.QueryEscape(TokenTypeJWT)
	for _, tc := range []struct {
		name, ctype, body, code string
	}{
		{"ok with actor token", form, base + actor, ""},
		{"ok with requested actor and audiences", form + "; charset=utf-8", base + "&requested_actor=billing-agent&audience=a&audience=b", ""},
		{"json body", "application/json", `{"grant_type":"x"}`, "invalid_request"},
		{"no content type", "", base + actor, "invalid_request"},
		{"missing grant", form, "subject_token=x&subject_token_type=" + url.QueryEscape(TokenTypeJWT) + actor, "unsupported_grant_type"},
		{"other grant", form, strings.Replace(base, "token-exchange", "jwt-bearer", 1) + actor, "unsupported_grant_type"},
		{"missing subject", form, "grant_type=" + url.QueryEscape(GrantTypeExchange) + actor, "invalid_request"},
		{"missing subject type", form, strings.Replace(base, "&subject_token_type=", "&x_type=", 1) + actor, "invalid_request"},
		{"saml subject", form, strings.Replace(base, "type%3Ajwt", "type%3Asaml2", 1) + actor, "invalid_request"},
		{"duplicate subject", form, base + "&subject_token=other" + actor, "invalid_request"},
		{"duplicate grant", form, base + "&grant_type=" + url.QueryEscape(GrantTypeExchange) + actor, "invalid_request"},
		{"unknown parameter", form, base + actor + "&resource=https://x", "invalid_request"},
		{"semicolon", form, base + ";x=y" + actor, "invalid_request"},
		{"actor token without type", form, base + "&actor_token=a.t.x", "invalid_request"},
		{"actor type without token", form, base + "&actor_token_type=" + url.QueryEscape(TokenTypeJWT) + "&requested_actor=b", "invalid_request"},
		{"both actors", form, base + actor + "&requested_actor=b", "invalid_request"},
		{"no actor", form, base, "invalid_request"},
		{"bad requested actor", form, base + "&requested_actor=a%20b", "invalid_request"},
		{"control character", form, base + actor + "&scope=a%0Ab", "invalid_request"},
		{"invalid utf-8", form, base + actor + "&scope=%ff", "invalid_request"},
		{"bad escape", form, base + actor + "&scope=%zz", "invalid_request"},
		{"saml requested", form, base + actor + "&requested_token_type=" + url.QueryEscape("urn:ietf:params:oauth:token-type:saml2"), "invalid_target"},
		{"too large", form, base + actor + "&scope=" + strings.Repeat("a", maxExchangeBody), "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseExchange(tc.ctype, []byte(tc.body))
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			ee, ok := err.(*ExchangeError)
			if !ok || ee.Code != tc.code {
				t.Errorf("error %v, want code %s", err, tc.code)
			}
		})
	}
}

func FuzzParseExchange(f *testing.F) {
	f.Add("grant_type=" + url.QueryEscape(GrantTypeExchange) + "&subject_token=a&subject_token_type=" + url.QueryEscape(TokenTypeJWT) + "&requested_actor=b")
	f.Add("grant_type=x&grant_type=y")
	f.Add("%ff=%00&;")
	f.Add("audience=a&audience=b&scope=c%20d")
	f.Fuzz(func(t *testing.T, body string) {
		req, err := ParseExchange("application/x-www-form-urlencoded", []byte(body))
		if err != nil {
			if _, ok := err.(*ExchangeError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		// Anything accepted names a subject and exactly one way to the actor.
		if req.SubjectToken == "" || (req.ActorToken == "") == (req.RequestedActor == "") {
			t.Fatalf("accepted %q as %+v", body, req)
		}
		if !isPrintable(req.SubjectToken) || !isPrintable(req.Scope) {
			t.Fatalf("accepted control characters in %q", body)
		}
	})
}
