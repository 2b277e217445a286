package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
)

// Authenticator recognises one more kind of bearer credential (agent
// tokens, from the tokens service). It returns ok=false, err=nil when the
// credential is not its kind, and an error when it is its kind but bad.
type Authenticator func(r *http.Request) (Principal, bool, error)

// TLSIdentity turns a verified client certificate into a node principal;
// ok=false when the connection carries no client certificate.
type TLSIdentity func(ctx context.Context, cs *tls.ConnectionState) (Principal, bool, error)

// Middleware authenticates every request and puts the principal in its
// context. Requests without credentials pass through anonymous, so that
// public routes (health, JWKS, enrollment) work; every other handler
// answers 401 itself when FromContext finds nothing. A credential that is
// present but invalid is refused here with 401, never downgraded to
// anonymous.
type Middleware struct {
	Issuer *TokenIssuer
	Store  *Store
	Extra  []Authenticator
	TLS    TLSIdentity
	// NodeServes returns the tenants an enrolled node serves (see
	// Principal.Serves); node principals authenticated by bearer token get
	// it from here, so a shared gateway's reach is whatever its enrolled
	// record says now, never what the token or the node claims. Nil: node
	// principals serve their home tenant only.
	NodeServes func(ctx context.Context, nodeID, tenant string) ([]string, error)
	Logger     *slog.Logger
	Now        func() time.Time
}

// Wrap returns next behind authentication.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok, err := m.authenticate(r)
		if err != nil {
			m.Logger.Info("authentication refused", "method", r.Method, "path", r.URL.Path, "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer realm="aegis"`)
			httpapi.Error(w, http.StatusUnauthorized, "unauthenticated", "credential not accepted", nil)
			return
		}
		if ok {
			r = r.WithContext(WithPrincipal(r.Context(), p))
		}
		next.ServeHTTP(w, r)
	})
}

var errNotBearer = errors.New("authorization header is not a bearer token")

func (m *Middleware) authenticate(r *http.Request) (Principal, bool, error) {
	var certP Principal
	var hasCert bool
	if r.TLS != nil && m.TLS != nil {
		p, ok, err := m.TLS(r.Context(), r.TLS)
		if err != nil {
			return Principal{}, false, err
		}
		certP, hasCert = p, ok
	}
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return certP, hasCert, nil
	}
	if len(h) > 1 {
		return Principal{}, false, errors.New("more than one authorization header")
	}
	raw, found := strings.CutPrefix(h[0], "Bearer ")
	if !found || raw == "" || strings.ContainsAny(raw, " \t") {
		return Principal{}, false, errNotBearer
	}
	p, err := m.bearer(r, raw)
	if err != nil {
		return Principal{}, false, err
	}
	if p.Has(RoleNode) {
		p.Serves = nil
		if m.NodeServes != nil {
			if p.Serves, err = m.NodeServes(r.Context(), p.Subject, p.Tenant); err != nil {
				return Principal{}, false, fmt.Errorf("node %s: %w", p.Subject, err)
			}
		}
	}
	// A node presenting both must present the same identity twice; a
	// node certificate with someone else's token is a stolen credential.
	if hasCert && (certP.Subject != p.Subject || certP.Tenant != p.Tenant) {
		return Principal{}, false, errors.New("bearer token and client certificate name different callers")
	}
	return p, true, nil
}

func (m *Middleware) bearer(r *http.Request, raw string) (Principal, error) {
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	p, _, apiErr := m.Issuer.Verify(raw, now)
	if apiErr == nil {
		if err := m.Store.CheckToken(r.Context(), p.TokenID); err != nil {
			return Principal{}, err
		}
		return p, nil
	}
	for _, a := range m.Extra {
		p, ok, err := a(r)
		if err != nil {
			return Principal{}, err
		}
		if ok {
			return p, nil
		}
	}
	return Principal{}, apiErr
}

// Require answers 401 when the request is anonymous and 403 when its
// principal holds none of roles or may not act on tenant (empty: no
// tenant check). Handlers call it first and return when ok is false.
func Require(w http.ResponseWriter, r *http.Request, tenant string, roles ...Role) (Principal, bool) {
	return require(w, r, tenant, false, roles)
}

// RequireServing is Require for the routes a node uses to do its work
// (bundle, state, approvals, overrides): a node principal passes the
// tenant check for every tenant it serves (Principal.CanServe), anyone
// else as in Require.
func RequireServing(w http.ResponseWriter, r *http.Request, tenant string, roles ...Role) (Principal, bool) {
	return require(w, r, tenant, true, roles)
}

func require(w http.ResponseWriter, r *http.Request, tenant string, serving bool, roles []Role) (Principal, bool) {
	p, ok := FromContext(r.Context())
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="aegis"`)
		httpapi.Error(w, http.StatusUnauthorized, "unauthenticated", "this endpoint needs a credential", nil)
		return Principal{}, false
	}
	has := len(roles) == 0
	for _, role := range roles {
		has = has || p.Has(role)
	}
	if !has {
		names := make([]string, len(roles))
		for i, r := range roles {
			names[i] = string(r)
		}
		httpapi.Error(w, http.StatusForbidden, "forbidden", "needs one of the roles "+strings.Join(names, ", "), nil)
		return Principal{}, false
	}
	allowed := p.CanAccessTenant(tenant)
	if serving && p.Has(RoleNode) {
		allowed = p.CanServe(tenant)
	}
	if tenant != "" && !allowed {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "credential is for another tenant", map[string]any{"tenant": tenant})
		return Principal{}, false
	}
	return p, true
}
