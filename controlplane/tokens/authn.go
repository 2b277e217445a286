package tokens

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/token"
)

// ErrRevoked is returned for a token that verifies but is revoked, names a
// revoked agent, or belongs to a tenant whose kill switch is on.
var ErrRevoked = errors.New("token revoked")

// errNotOurs marks a token whose kid is not one of our signing keys: some
// other authenticator may own it.
var errNotOurs = errors.New("token not signed by a token-service key")

// peekKid reads the kid of a compact JWS without trusting anything else in
// it; it only chooses which key to verify with.
func peekKid(tok string) (string, bool) {
	head, _, ok := strings.Cut(tok, ".")
	if !ok || len(head) > 1024 {
		return "", false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(head)
	if err != nil {
		return "", false
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(raw, &h) != nil || h.Kid == "" {
		return "", false
	}
	return h.Kid, true
}

// verifyAgent verifies an agent token minted here: the key its kid names
// must be published, the tenant claim must be the key's tenant, the issuer
// ours, and neither the token, an agent of its chain nor its tenant may be
// revoked.
func (s *Service) verifyAgent(ctx context.Context, tok string) (*token.Claims, error) {
	kid, ok := peekKid(tok)
	if !ok {
		return nil, fmt.Errorf("%w: %w", errNotOurs, token.ErrMalformed)
	}
	now := s.now()
	tenant, pub, found, err := s.keys.lookup(ctx, kid, now)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: %w", errNotOurs, token.ErrUnknownKey)
	}
	ks, err := token.NewKeySet(ed25519.PublicKey(pub))
	if err != nil {
		return nil, err
	}
	c, err := token.Verify(tok, ks, token.VerifyOptions{Now: now, Issuer: s.cfg.Issuer, Tenant: tenant})
	if err != nil {
		return nil, err
	}
	why, err := s.revoked(ctx, c.Tenant, token.Chain(c), c.ID)
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, fmt.Errorf("%w: %s", ErrRevoked, why)
	}
	return c, nil
}

// AuthenticateAgent authenticates a request carrying an agent token
// (Authorization: Bearer) for the server's authentication middleware. It
// returns ok false and no error when the request has no bearer token or the
// token is not signed by one of this service's keys, so the middleware can
// try its other authenticators; an error means the token is ours but
// invalid, expired or revoked (answer 401). The principal's subject is the
// acting agent, with the single role agent.
func (s *Service) AuthenticateAgent(r *http.Request) (auth.Principal, bool, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return auth.Principal{}, false, nil
	}
	c, err := s.verifyAgent(r.Context(), tok)
	if errors.Is(err, errNotOurs) {
		return auth.Principal{}, false, nil
	}
	if err != nil {
		return auth.Principal{}, false, fmt.Errorf("agent token: %w", err)
	}
	return auth.Principal{Subject: token.Agent(c), Tenant: c.Tenant, Roles: []auth.Role{auth.RoleAgent}, TokenID: c.ID}, true, nil
}

// AgentPrincipal verifies a bare agent token (as AuthenticateAgent does for
// a bearer header) and returns its principal. Nodes forward the token of
// the agent whose request they hold this way (x-aegis-agent-token) when
// they poll its approval.
func (s *Service) AgentPrincipal(ctx context.Context, tok string) (auth.Principal, error) {
	c, err := s.verifyAgent(ctx, tok)
	if err != nil {
		return auth.Principal{}, fmt.Errorf("agent token: %w", err)
	}
	return auth.Principal{Subject: token.Agent(c), Tenant: c.Tenant, Roles: []auth.Role{auth.RoleAgent}, TokenID: c.ID}, nil
}
