package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

func TestCanServe(t *testing.T) {
	shared := Principal{Subject: "gw", Tenant: "acme", Roles: []Role{RoleNode}, Serves: []string{"acme", "platform"}}
	plain := Principal{Subject: "n1", Tenant: "acme", Roles: []Role{RoleNode}}
	global := Principal{Subject: "root", Roles: []Role{RoleAdmin}}
	for _, tc := range []struct {
		name   string
		p      Principal
		tenant string
		want   bool
	}{
		{"home", shared, "acme", true},
		{"served", shared, "platform", true},
		{"not served", shared, "globex", false},
		{"empty tenant", shared, "", false},
		{"ordinary home", plain, "acme", true},
		{"ordinary other", plain, "platform", false},
		{"global principal serves nothing", global, "acme", false},
	} {
		if got := tc.p.CanServe(tc.tenant); got != tc.want {
			t.Errorf("%s: CanServe(%q) = %v", tc.name, tc.tenant, got)
		}
	}
}

// TestRequireServing: node principals pass for served tenants only on the
// serving routes; Require keeps refusing them everywhere but home.
func TestRequireServing(t *testing.T) {
	shared := Principal{Subject: "gw", Tenant: "acme", Roles: []Role{RoleNode}, Serves: []string{"acme", "platform"}}
	auditor := Principal{Subject: "aud", Tenant: "acme", Roles: []Role{RoleAuditor}, Serves: []string{"platform"}}
	for _, tc := range []struct {
		name    string
		p       *Principal
		serving bool
		tenant  string
		want    int
	}{
		{"anonymous", nil, true, "acme", 401},
		{"shared node, served tenant", &shared, true, "platform", 200},
		{"shared node, home", &shared, true, "acme", 200},
		{"shared node, unserved tenant", &shared, true, "globex", 403},
		{"shared node, served tenant, ordinary route", &shared, false, "platform", 403},
		{"serves ignored for non-nodes", &auditor, true, "platform", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/x", nil)
			if tc.p != nil {
				r = r.WithContext(WithPrincipal(r.Context(), *tc.p))
			}
			w := httptest.NewRecorder()
			require := Require
			if tc.serving {
				require = RequireServing
			}
			if _, ok := require(w, r, tc.tenant, RoleNode, RoleAuditor); ok {
				w.WriteHeader(200)
			}
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
		})
	}
}

// TestMiddlewareNodeServes: a node's bearer token gets the served tenants
// from NodeServes, never from the token; a lookup failure refuses the
// credential.
func TestMiddlewareNodeServes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		st, err := NewStore(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		iss := issuer(t)
		now := time.Now()
		mint := func(p Principal) string {
			it, err := iss.Issue(p, now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.RecordToken(ctx, it, "test"); err != nil {
				t.Fatal(err)
			}
			return it.Token
		}
		errGone := errors.New("node disabled")
		lookups := map[string][]string{}
		m := &Middleware{Issuer: iss, Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			NodeServes: func(_ context.Context, node, tenant string) ([]string, error) {
				lookups[node] = append(lookups[node], tenant)
				if node == "gone" {
					return nil, errGone
				}
				if node == "gw" && tenant == "acme" {
					return []string{"acme", "platform"}, nil
				}
				return nil, nil
			}}
		var got Principal
		h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, _ = FromContext(r.Context())
		}))
		call := func(tok string) int {
			got = Principal{}
			r := httptest.NewRequest("GET", "/v1/whoami", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}
		if c := call(mint(Principal{Subject: "gw", Tenant: "acme", Roles: []Role{RoleNode}})); c != 200 || !got.CanServe("platform") {
			t.Fatalf("shared node: %d %+v", c, got)
		}
		if c := call(mint(Principal{Subject: "n1", Tenant: "acme", Roles: []Role{RoleNode}})); c != 200 || got.CanServe("platform") || !got.CanServe("acme") {
			t.Fatalf("ordinary node: %d %+v", c, got)
		}
		if c := call(mint(Principal{Subject: "gone", Tenant: "acme", Roles: []Role{RoleNode}})); c != 401 {
			t.Fatalf("node whose lookup fails: %d, want 401", c)
		}
		if c := call(mint(Principal{Subject: "gw", Tenant: "acme", Roles: []Role{RoleAuditor}})); c != 200 || len(got.Serves) != 0 {
			t.Fatalf("non-node principal: %d %+v", c, got)
		}
		// Only the node credential was looked up, once.
		if !slices.Equal(lookups["gw"], []string{"acme"}) {
			t.Fatalf("lookups %v", lookups)
		}
	})
}
