package tokens

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
	"github.com/aegis-mesh/aegis/token"
)

// RFC 8693 identifiers.
const (
	GrantTypeExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT      = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccess   = "urn:ietf:params:oauth:token-type:access_token"
)

// maxExchangeBody fits two maximal tokens plus the other parameters.
const maxExchangeBody = 3 * token.DefaultMaxSize

// ExchangeRequest is a decoded RFC 8693 §2.1 token exchange request.
type ExchangeRequest struct {
	SubjectToken string
	ActorToken   string // empty: RequestedActor names the actor
	// RequestedActor (parameter "requested_actor", an Aegis extension) names
	// the actor without its token; only an admin or author may use it.
	RequestedActor string
	Audience       []string
	Scope          string
}

// exchangeParams are the parameters accepted; any other is refused rather
// than ignored, so a client relying on one we do not implement (resource)
// learns it instead of getting a token it did not ask for.
var exchangeParams = []string{"grant_type", "subject_token", "subject_token_type", "actor_token", "actor_token_type",
	"requested_token_type", "audience", "scope", "requested_actor"}

// ExchangeError is a refused exchange with its RFC 6749 §5.2 error code.
type ExchangeError struct {
	Status int
	Code   string
	Msg    string
}

func (e *ExchangeError) Error() string { return e.Code + ": " + e.Msg }

func badExchange(format string, args ...any) *ExchangeError {
	return &ExchangeError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...)}
}

// ParseExchange decodes a token exchange body (application/x-www-form-
// urlencoded). It is strict: every parameter except audience at most once,
// no unknown parameters, valid UTF-8, token types we issue.
func ParseExchange(contentType string, body []byte) (ExchangeRequest, error) {
	var req ExchangeRequest
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return req, &ExchangeError{http.StatusUnsupportedMediaType, "invalid_request", "content type must be application/x-www-form-urlencoded"}
	}
	if len(body) > maxExchangeBody {
		return req, &ExchangeError{http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("body larger than %d bytes", maxExchangeBody)}
	}
	// ParseQuery also splits on ';' in older Go; refuse it outright so two
	// parsers can never read different parameters from one body.
	if strings.ContainsRune(string(body), ';') {
		return req, badExchange("';' is not a parameter separator")
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return req, badExchange("body: %v", err)
	}
	for k, v := range vals {
		if !slices.Contains(exchangeParams, k) {
			return req, badExchange("unsupported parameter %q", k)
		}
		if len(v) > 1 && k != "audience" {
			return req, badExchange("parameter %q given %d times", k, len(v))
		}
		for _, s := range v {
			if !isPrintable(s) {
				return req, badExchange("parameter %q has control characters or invalid UTF-8", k)
			}
		}
	}
	if g := vals.Get("grant_type"); g != GrantTypeExchange {
		return req, &ExchangeError{http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type must be %s", GrantTypeExchange)}
	}
	req.SubjectToken = vals.Get("subject_token")
	if req.SubjectToken == "" {
		return req, badExchange("subject_token is required")
	}
	if !tokenType(vals.Get("subject_token_type")) {
		return req, badExchange("subject_token_type must be %s or %s", TokenTypeJWT, TokenTypeAccess)
	}
	req.ActorToken = vals.Get("actor_token")
	_, hasActorType := vals["actor_token_type"]
	switch {
	case req.ActorToken != "" && !tokenType(vals.Get("actor_token_type")):
		return req, badExchange("actor_token_type must be %s or %s", TokenTypeJWT, TokenTypeAccess)
	case req.ActorToken == "" && hasActorType:
		return req, badExchange("actor_token_type without actor_token")
	}
	if rt, ok := vals["requested_token_type"]; ok && !tokenType(rt[0]) {
		return req, &ExchangeError{http.StatusBadRequest, "invalid_target", fmt.Sprintf("requested_token_type: only %s is issued", TokenTypeJWT)}
	}
	req.RequestedActor = vals.Get("requested_actor")
	switch {
	case req.ActorToken != "" && req.RequestedActor != "":
		return req, badExchange("give actor_token or requested_actor, not both")
	case req.ActorToken == "" && req.RequestedActor == "":
		return req, badExchange("actor_token (or requested_actor) is required: an exchange here always names who acts")
	case req.RequestedActor != "" && !validName(req.RequestedActor):
		return req, badExchange("invalid requested_actor")
	}
	for _, a := range vals["audience"] {
		if !validName(a) {
			return req, badExchange("invalid audience")
		}
	}
	if len(vals["audience"]) > 8 {
		return req, badExchange("at most 8 audiences")
	}
	req.Audience = vals["audience"]
	req.Scope = vals.Get("scope")
	if len(req.Scope) > 1024 {
		return req, badExchange("scope longer than 1024 bytes")
	}
	return req, nil
}

func tokenType(s string) bool { return s == TokenTypeJWT || s == TokenTypeAccess }

func isPrintable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// ExchangeResponse is the RFC 8693 §2.2.1 response.
type ExchangeResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
}

// Exchange issues a token in which the actor acts for the subject token's
// chain: sub stays, the actor becomes the outermost act. The subject's
// current acting agent must list the actor in may_delegate_to. The new token
// lives no longer than either input token and MaxTTL; its scope and audience
// can only narrow.
func (s *Service) Exchange(r *http.Request, req ExchangeRequest) (ExchangeResponse, error) {
	ctx := r.Context()
	subj, err := s.verifyAgent(ctx, req.SubjectToken)
	if err != nil {
		return ExchangeResponse{}, &ExchangeError{http.StatusBadRequest, "invalid_grant", "subject_token: " + err.Error()}
	}
	exp := subj.ExpiresAt
	actor := req.RequestedActor
	if req.ActorToken != "" {
		ac, err := s.verifyAgent(ctx, req.ActorToken)
		if err != nil {
			return ExchangeResponse{}, &ExchangeError{http.StatusBadRequest, "invalid_grant", "actor_token: " + err.Error()}
		}
		if ac.Tenant != subj.Tenant {
			return ExchangeResponse{}, &ExchangeError{http.StatusBadRequest, "invalid_grant", "actor_token belongs to another tenant"}
		}
		actor = token.Agent(ac)
		exp = min(exp, ac.ExpiresAt)
	} else {
		p, ok := auth.FromContext(ctx)
		if !ok || !p.CanAccessTenant(subj.Tenant) || !(p.Has(auth.RoleAdmin) || p.Has(auth.RoleAuthor)) {
			return ExchangeResponse{}, &ExchangeError{http.StatusForbidden, "access_denied", "requested_actor needs an admin or author of the tenant; otherwise present the actor's token"}
		}
	}
	from := token.Agent(subj)
	if s.cfg.Delegation == nil {
		return ExchangeResponse{}, &ExchangeError{http.StatusForbidden, "access_denied", "no delegation policy is configured"}
	}
	ok, err := s.cfg.Delegation.DelegationAllowed(ctx, subj.Tenant, from, actor)
	if err != nil {
		return ExchangeResponse{}, fmt.Errorf("delegation policy of tenant %q: %w", subj.Tenant, err)
	}
	if !ok {
		return ExchangeResponse{}, &ExchangeError{http.StatusForbidden, "access_denied", fmt.Sprintf("policy: %s does not delegate to %s (may_delegate_to)", from, actor)}
	}
	scope := subj.Scope
	if req.Scope != "" {
		have := subj.Scopes()
		for _, sc := range strings.Fields(req.Scope) {
			if !slices.Contains(have, sc) {
				return ExchangeResponse{}, &ExchangeError{http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not in the subject token", sc)}
			}
		}
		scope = req.Scope
	}
	aud := subj.Audience
	if len(req.Audience) > 0 {
		for _, a := range req.Audience {
			if len(subj.Audience) > 0 && !slices.Contains(subj.Audience, a) {
				return ExchangeResponse{}, &ExchangeError{http.StatusBadRequest, "invalid_target", fmt.Sprintf("audience %q is not in the subject token", a)}
			}
		}
		aud = req.Audience
	}
	now := s.now()
	exp = min(exp, now.Add(s.cfg.MaxTTL).Unix())
	if exp <= now.Unix() {
		return ExchangeResponse{}, &ExchangeError{http.StatusBadRequest, "invalid_grant", "the input tokens expire now"}
	}
	c := token.Claims{
		Issuer: s.cfg.Issuer, Subject: subj.Subject, Act: &token.Actor{Sub: actor, Act: subj.Act},
		Tenant: subj.Tenant, Org: subj.Org, Scope: scope, Audience: aud, Region: subj.Region,
		IssuedAt: now.Unix(), ExpiresAt: exp,
	}
	out, err := s.mint(ctx, c, "exchange")
	if errors.Is(err, token.ErrChain) {
		return ExchangeResponse{}, &ExchangeError{http.StatusBadRequest, "invalid_request", err.Error()}
	}
	if err != nil {
		return ExchangeResponse{}, err
	}
	return ExchangeResponse{AccessToken: out.Token, IssuedTokenType: TokenTypeJWT, TokenType: "N_A",
		ExpiresIn: int64(out.ExpiresAt.Sub(now) / time.Second), Scope: scope}, nil
}

func (s *Service) handleExchange(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxExchangeBody+1))
	if err != nil {
		httpapi.Error(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("body larger than %d bytes", maxExchangeBody), nil)
		return
	}
	req, err := ParseExchange(r.Header.Get("Content-Type"), body)
	if err == nil {
		var resp ExchangeResponse
		if resp, err = s.Exchange(r, req); err == nil {
			resp.ExpiresIn = max(resp.ExpiresIn, 0)
			httpapi.JSON(w, http.StatusOK, resp)
			return
		}
	}
	var ee *ExchangeError
	if errors.As(err, &ee) {
		s.m.refused.WithLabelValues(ee.Code).Inc()
		httpapi.Error(w, ee.Status, ee.Code, ee.Msg, nil)
		return
	}
	s.internalError(w, r, "token exchange failed", err)
}
