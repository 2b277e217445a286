package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
	"github.com/aegis-mesh/aegis/token"
)

const maxBody = 16 << 10

// reName is what agent ids, tenants, regions and audiences may look like:
// no spaces, quotes or control characters, bounded length.
var reName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$`)

func validName(s string) bool { return reName.MatchString(s) }

// authorize checks that a principal is present, may act on tenant and holds
// one of roles; it answers 401/403 itself and reports whether to go on.
func authorize(w http.ResponseWriter, r *http.Request, tenant string, roles ...auth.Role) (auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		httpapi.Error(w, http.StatusUnauthorized, "unauthenticated", "this call needs a credential", nil)
		return p, false
	}
	if !p.CanAccessTenant(tenant) {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "the caller may not act on this tenant", nil)
		return p, false
	}
	for _, role := range roles {
		if p.Has(role) {
			return p, true
		}
	}
	httpapi.Error(w, http.StatusForbidden, "forbidden", fmt.Sprintf("this call needs one of the roles %v", roles), nil)
	return p, false
}

func (s *Service) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.ErrorContext(r.Context(), what, "err", err)
	httpapi.Error(w, http.StatusInternalServerError, "internal", what, nil)
}

// handleJWKS serves the published keys of one tenant, or of every tenant
// at the well-known path, with a strong ETag over the exact bytes.
func (s *Service) handleJWKS(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if r.URL.Path != "/.well-known/jwks.json" && !validName(tenant) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "invalid tenant", nil)
		return
	}
	pk, err := s.keys.published(r.Context(), tenant, s.now())
	if err != nil {
		s.internalError(w, r, "listing keys failed", err)
		return
	}
	body := []byte("{\n  \"keys\": []\n}\n")
	if len(pk) > 0 {
		if body, err = token.MarshalBoundJWKS(bound(pk)...); err != nil {
			s.internalError(w, r, "rendering the key set failed", err)
			return
		}
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	// Short caching: a rotation must reach verifiers well before the new key
	// signs much (the old key stays valid meanwhile, so staleness is safe).
	w.Header().Set("Cache-Control", "public, max-age=60")
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(body)
}

func etagMatch(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == etag || v == "*" {
			return true
		}
	}
	return false
}

// MintRequest is the body of POST /v1/tokens/agent.
type MintRequest struct {
	// Tenant defaults to the caller's tenant.
	Tenant string `json:"tenant,omitempty"`
	// Agent is the acting agent; ActingFor the principals it acts for,
	// nearest first (the last one becomes sub), as token.Delegate takes them.
	Agent      string   `json:"agent"`
	ActingFor  []string `json:"acting_for,omitempty"`
	Org        string   `json:"org,omitempty"`
	Scope      string   `json:"scope,omitempty"`
	Audience   []string `json:"audience,omitempty"`
	Region     string   `json:"region,omitempty"`
	TTLSeconds int64    `json:"ttl_seconds,omitempty"`
}

// MintResponse answers a mint or an exchange.
type MintResponse struct {
	Token     string    `json:"token"`
	JTI       string    `json:"jti"`
	Kid       string    `json:"kid"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Service) handleMint(w http.ResponseWriter, r *http.Request) {
	var req MintRequest
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	p, ok := auth.FromContext(r.Context())
	if ok && req.Tenant == "" {
		req.Tenant = p.Tenant
	}
	if _, ok := authorize(w, r, req.Tenant, auth.RoleAdmin, auth.RoleAuthor); !ok {
		return
	}
	if msg := req.check(s.cfg.MaxTTL); msg != "" {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", msg, nil)
		return
	}
	ttl := s.cfg.DefaultTTL
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	sub, act := token.Delegate(req.Agent, req.ActingFor...)
	now := s.now()
	c := token.Claims{
		Issuer: s.cfg.Issuer, Subject: sub, Act: act, Tenant: req.Tenant, Org: req.Org, Scope: req.Scope,
		Audience: req.Audience, Region: req.Region, IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix(),
	}
	out, err := s.mint(r.Context(), c, "agent")
	if err != nil {
		if errors.Is(err, token.ErrChain) {
			httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
			return
		}
		s.internalError(w, r, "minting the token failed", err)
		return
	}
	httpapi.JSON(w, http.StatusCreated, out)
}

// check validates a mint request; "" means valid.
func (m *MintRequest) check(maxTTL time.Duration) string {
	switch {
	case !validName(m.Tenant):
		return "tenant is missing or invalid"
	case !validName(m.Agent):
		return "agent is missing or invalid"
	case len(m.ActingFor) > token.MaxChain-1:
		return fmt.Sprintf("at most %d principals in acting_for", token.MaxChain-1)
	case m.Region != "" && !validName(m.Region):
		return "invalid region"
	case m.Org != "" && !validName(m.Org):
		return "invalid org"
	case len(m.Scope) > 1024:
		return "scope longer than 1024 bytes"
	case len(m.Audience) > 8:
		return "at most 8 audiences"
	case m.TTLSeconds < 0 || m.TTLSeconds > int64(maxTTL/time.Second): // compared in seconds: no overflow
		return fmt.Sprintf("ttl_seconds must be between 1 and %d", int64(maxTTL/time.Second))
	}
	for _, a := range m.ActingFor {
		if !validName(a) {
			return "invalid name in acting_for"
		}
	}
	for _, a := range m.Audience {
		if !validName(a) {
			return "invalid audience"
		}
	}
	return ""
}

// mint signs c with the active key of its tenant and region, under a
// fresh random jti so the caller learns it without re-parsing the token.
func (s *Service) mint(ctx context.Context, c token.Claims, kind string) (MintResponse, error) {
	k, err := s.activeKey(ctx, c.Tenant, c.Region)
	if err != nil {
		return MintResponse{}, err
	}
	if c.ID, err = newJTI(); err != nil {
		return MintResponse{}, err
	}
	tok, err := token.Mint(k.priv, c)
	if err != nil {
		return MintResponse{}, err
	}
	s.m.minted.WithLabelValues(kind).Inc()
	return MintResponse{Token: tok, JTI: c.ID, Kid: k.kid, ExpiresAt: time.Unix(c.ExpiresAt, 0).UTC()}, nil
}

func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (s *Service) handleRotate(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if _, ok := authorize(w, r, tenant, auth.RoleAdmin); !ok {
		return
	}
	var req struct {
		Region string `json:"region"`
	}
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	if !validName(tenant) || (req.Region != "" && !validName(req.Region)) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "invalid tenant or region", nil)
		return
	}
	kid, err := s.Rotate(r.Context(), tenant, req.Region)
	if err != nil {
		s.internalError(w, r, "rotating the key failed", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]string{"kid": kid, "region": s.region(req.Region)})
}

func (s *Service) handleListRevocations(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if _, ok := authorize(w, r, tenant, auth.RoleAdmin, auth.RoleAuditor); !ok {
		return
	}
	rs, err := s.Revocations(r.Context(), tenant, s.now())
	if err != nil {
		s.internalError(w, r, "listing revocations failed", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"revocations": rs})
}

// RevokeRequest is the body of POST /v1/tenants/{tenant}/revocations.
type RevokeRequest struct {
	Kind      string     `json:"kind"`
	Value     string     `json:"value"`
	Reason    string     `json:"reason,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func (s *Service) handleRevoke(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := authorize(w, r, tenant, auth.RoleAdmin)
	if !ok {
		return
	}
	var req RevokeRequest
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	switch {
	case req.Kind != KindAgent && req.Kind != KindJTI:
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "kind must be agent or jti", nil)
		return
	case !validName(tenant) || !validName(req.Value):
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "invalid tenant or value", nil)
		return
	case len(req.Reason) > 512:
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "reason longer than 512 bytes", nil)
		return
	}
	rev := Revocation{Tenant: tenant, Kind: req.Kind, Value: req.Value, Reason: req.Reason, RevokedBy: p.Subject, CreatedAt: s.now(), ExpiresAt: req.ExpiresAt}
	if err := s.Revoke(r.Context(), rev); err != nil {
		s.internalError(w, r, "recording the revocation failed", err)
		return
	}
	s.log.InfoContext(r.Context(), "revoked", "tenant", tenant, "kind", req.Kind, "by", p.Subject)
	httpapi.JSON(w, http.StatusCreated, rev)
}

func (s *Service) handleUnrevoke(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if _, ok := authorize(w, r, tenant, auth.RoleAdmin); !ok {
		return
	}
	found, err := s.Unrevoke(r.Context(), tenant, r.PathValue("kind"), r.PathValue("value"))
	if err != nil {
		s.internalError(w, r, "removing the revocation failed", err)
		return
	}
	if !found {
		httpapi.Error(w, http.StatusNotFound, "not_found", "no such revocation", nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleGetKillSwitch(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if _, ok := authorize(w, r, tenant, auth.RoleAdmin, auth.RoleAuditor); !ok {
		return
	}
	on, err := s.KillSwitch(r.Context(), tenant)
	if err != nil {
		s.internalError(w, r, "reading the kill switch failed", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]bool{"enabled": on})
}

func (s *Service) handleSetKillSwitch(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := authorize(w, r, tenant, auth.RoleAdmin)
	if !ok {
		return
	}
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	if req.Enabled == nil || !validName(tenant) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "enabled (true or false) is required", nil)
		return
	}
	if err := s.SetKillSwitch(r.Context(), tenant, *req.Enabled, p.Subject, s.now()); err != nil {
		s.internalError(w, r, "setting the kill switch failed", err)
		return
	}
	s.log.WarnContext(r.Context(), "kill switch set", "tenant", tenant, "enabled", *req.Enabled, "by", p.Subject)
	httpapi.JSON(w, http.StatusOK, map[string]bool{"enabled": *req.Enabled})
}
