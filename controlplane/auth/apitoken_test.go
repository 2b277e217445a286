package auth

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/signing"
	"github.com/aegis-mesh/aegis/token"
)

func issuer(t *testing.T) *TokenIssuer {
	t.Helper()
	k, _, err := signing.LoadOrCreate(filepath.Join(t.TempDir(), "api.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &TokenIssuer{Ring: signing.NewRing(signing.PurposeAPI, k)}
}

func TestAPITokens(t *testing.T) {
	iss := issuer(t)
	now := time.Now()
	it, err := iss.Issue(Principal{Subject: "alice", Tenant: "acme", Roles: []Role{RoleAuthor, RoleApprover}}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, exp, err := iss.Verify(it.Token, now)
	if err != nil || p.Subject != "alice" || p.Tenant != "acme" || !p.Has(RoleApprover) || p.TokenID != it.ID || !exp.Equal(it.ExpiresAt) {
		t.Fatalf("verify: %+v %v %v", p, exp, err)
	}
	other := issuer(t)
	agentKey := other.Ring.Current()
	agentTok, err := token.Mint(agentKey.Private(), token.Claims{Subject: "alice", Tenant: "acme", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	// The same key as the API issuer, but an agent token's type.
	sameKeyAgent, err := token.Mint(iss.Ring.Current().Private(), token.Claims{Subject: "alice", Tenant: "acme", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(it.Token, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[5] == 'A' {
			b[5] = 'B'
		} else {
			b[5] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name string
		tok  string
		at   time.Time
	}{
		{"expired", it.Token, now.Add(2 * time.Hour)},
		{"not yet valid", it.Token, now.Add(-time.Hour)},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), now},
		{"tampered claims", parts[0] + "." + flip(parts[1]) + "." + parts[2], now},
		{"other issuer's key", mustIssue(t, other, now), now},
		{"agent token", agentTok, now},
		{"agent token signed with the API key", sameKeyAgent, now},
		{"oversized", strings.Repeat("a", MaxTokenBytes+1), now},
		{"garbage", "a.b.c", now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := iss.Verify(tc.tok, tc.at); !errors.Is(err, ErrBadToken) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}
	if _, err := iss.Issue(Principal{Subject: "x", Roles: []Role{"root"}}, now, time.Hour); err == nil {
		t.Fatal("issued an unknown role")
	}
	if _, err := iss.Issue(Principal{Subject: "x"}, now, time.Hour); err == nil {
		t.Fatal("issued a token without roles")
	}
}

func mustIssue(t *testing.T, iss *TokenIssuer, now time.Time) string {
	t.Helper()
	it, err := iss.Issue(Principal{Subject: "mallory", Roles: []Role{RoleAdmin}}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return it.Token
}

func FuzzVerify(f *testing.F) {
	iss := &TokenIssuer{}
	k, _, err := signing.LoadOrCreate(filepath.Join(f.TempDir(), "api.key"))
	if err != nil {
		f.Fatal(err)
	}
	iss.Ring = signing.NewRing(signing.PurposeAPI, k)
	now := time.Now()
	it, err := iss.Issue(Principal{Subject: "a", Roles: []Role{RoleAdmin}}, now, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(it.Token)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		p, _, err := iss.Verify(tok, now)
		if err != nil {
			return
		}
		// Only tokens this issuer signed verify; the seed is one.
		if tok != it.Token || p.Subject != "a" {
			t.Fatalf("accepted %q as %+v", tok, p)
		}
	})
}

// TestAPITokenGroups: groups travel in the token and come back verified;
// malformed, repeated or too many groups are refused when issuing.
func TestAPITokenGroups(t *testing.T) {
	iss := issuer(t)
	now := time.Now()
	it, err := iss.Issue(Principal{Subject: "bob", Tenant: "acme", Roles: []Role{RoleApprover}, Groups: []string{"payments-leads", "release-managers"}}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := iss.Verify(it.Token, now)
	if err != nil || len(p.Groups) != 2 || p.Groups[0] != "payments-leads" || p.Groups[1] != "release-managers" {
		t.Fatalf("verify: %+v %v", p, err)
	}
	for _, tc := range []struct {
		name   string
		groups []string
	}{
		{"empty name", []string{""}},
		{"space", []string{"payments leads"}},
		{"leading dash", []string{"-leads"}},
		{"control character", []string{"leads\n"}},
		{"too long", []string{strings.Repeat("g", 129)}},
		{"repeated", []string{"a", "a"}},
		{"too many", strings.Split(strings.Repeat("g,", MaxGroups)+"last", ",")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := iss.Issue(Principal{Subject: "bob", Roles: []Role{RoleApprover}, Groups: tc.groups}, now, time.Hour); err == nil {
				t.Fatalf("groups %q were accepted", tc.groups)
			}
		})
	}
}

func TestInApprovers(t *testing.T) {
	p := Principal{Subject: "bob", Groups: []string{"payments-leads"}}
	for _, tc := range []struct {
		approvers []string
		want      bool
	}{
		{nil, true},
		{[]string{"payments-leads"}, true},
		{[]string{"release-managers", "bob"}, true},
		{[]string{"release-managers"}, false},
		{[]string{"Payments-Leads"}, false},
	} {
		if got := p.InApprovers(tc.approvers); got != tc.want {
			t.Errorf("InApprovers(%q) = %v, want %v", tc.approvers, got, tc.want)
		}
	}
}
