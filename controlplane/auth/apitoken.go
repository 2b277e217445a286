package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/aegis-mesh/aegis/controlplane/signing"
)

// APITokenType is the JOSE "typ" of control-plane API tokens. Agent tokens
// carry "JWT" and override tokens "aegis-override+jwt"; each verifier
// insists on its own type, so no token passes as another kind.
const APITokenType = "aegis-api+jwt"

// Issuer names the control plane in the iss claim and is the audience
// its API tokens are for.
const (
	Issuer   = "aegis-controlplane"
	Audience = "aegis-api"
)

// MaxTokenBytes bounds a bearer token before any parsing.
const MaxTokenBytes = 8 << 10

// ErrBadToken is any API token that does not verify.
var ErrBadToken = errors.New("invalid API token")

// apiClaims are the private claims next to the registered ones.
type apiClaims struct {
	Tenant string   `json:"tenant"`
	Roles  []Role   `json:"roles"`
	Groups []string `json:"groups,omitempty"`
}

// TokenIssuer mints and verifies API tokens (humans, services and nodes)
// with the API signing key ring: EdDSA, kid = key thumbprint.
type TokenIssuer struct {
	Ring *signing.Ring
}

// IssuedToken is a minted token and what it says.
type IssuedToken struct {
	Token     string
	ID        string
	Principal Principal
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Issue mints a token for p valid for ttl from now.
func (i *TokenIssuer) Issue(p Principal, now time.Time, ttl time.Duration) (IssuedToken, error) {
	if p.Subject == "" || len(p.Roles) == 0 || ttl <= 0 {
		return IssuedToken{}, errors.New("issue API token: want a subject, at least one role and a positive lifetime")
	}
	for _, r := range p.Roles {
		if !ValidRole(r) {
			return IssuedToken{}, fmt.Errorf("issue API token: unknown role %q", r)
		}
	}
	if err := ValidGroups(p.Groups); err != nil {
		return IssuedToken{}, fmt.Errorf("issue API token: %w", err)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return IssuedToken{}, fmt.Errorf("issue API token: %w", err)
	}
	p.TokenID = base64.RawURLEncoding.EncodeToString(id[:])
	k := i.Ring.Current()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k.Private()},
		(&jose.SignerOptions{}).WithType(APITokenType).WithHeader(jose.HeaderKey("kid"), k.ID))
	if err != nil {
		return IssuedToken{}, fmt.Errorf("issue API token: %w", err)
	}
	now = now.UTC().Truncate(time.Second)
	exp := now.Add(ttl)
	std := jwt.Claims{
		Issuer: Issuer, Subject: p.Subject, Audience: jwt.Audience{Audience}, ID: p.TokenID,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
	}
	tok, err := jwt.Signed(signer).Claims(std).Claims(apiClaims{Tenant: p.Tenant, Roles: p.Roles, Groups: p.Groups}).Serialize()
	if err != nil {
		return IssuedToken{}, fmt.Errorf("issue API token: %w", err)
	}
	return IssuedToken{Token: tok, ID: p.TokenID, Principal: p, IssuedAt: now, ExpiresAt: exp}, nil
}

// Verify checks an API token's size, type, algorithm, key, signature,
// issuer, audience and time window, and returns its principal and expiry.
// It does not consult revocation; the middleware does.
func (i *TokenIssuer) Verify(tok string, now time.Time) (Principal, time.Time, error) {
	if len(tok) > MaxTokenBytes {
		return Principal{}, time.Time{}, fmt.Errorf("%w: longer than %d bytes", ErrBadToken, MaxTokenBytes)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if len(parsed.Headers) != 1 {
		return Principal{}, time.Time{}, fmt.Errorf("%w: want one signature", ErrBadToken)
	}
	h := parsed.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != APITokenType {
		return Principal{}, time.Time{}, fmt.Errorf("%w: typ %q, want %q", ErrBadToken, typ, APITokenType)
	}
	pub, ok := i.Ring.Lookup(h.KeyID)
	if !ok {
		return Principal{}, time.Time{}, fmt.Errorf("%w: unknown key %q", ErrBadToken, h.KeyID)
	}
	var std jwt.Claims
	var priv apiClaims
	if err := parsed.Claims(pub, &std, &priv); err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if std.Expiry == nil || std.ID == "" || std.Subject == "" {
		return Principal{}, time.Time{}, fmt.Errorf("%w: exp, jti and sub are required", ErrBadToken)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: Issuer, AnyAudience: jwt.Audience{Audience}, Time: now}, 30*time.Second); err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if len(priv.Roles) == 0 {
		return Principal{}, time.Time{}, fmt.Errorf("%w: no roles", ErrBadToken)
	}
	for _, r := range priv.Roles {
		if !ValidRole(r) {
			return Principal{}, time.Time{}, fmt.Errorf("%w: unknown role %q", ErrBadToken, r)
		}
	}
	if err := ValidGroups(priv.Groups); err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	p := Principal{Subject: std.Subject, Tenant: priv.Tenant, Roles: priv.Roles, Groups: priv.Groups, TokenID: std.ID}
	return p, std.Expiry.Time().UTC(), nil
}

// ValidRole reports whether r is one of the fixed roles.
func ValidRole(r Role) bool {
	return slices.Contains([]Role{RoleAdmin, RoleAuthor, RoleApprover, RolePublisher, RoleAuditor, RoleNode, RoleAgent}, r)
}
