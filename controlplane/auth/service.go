package auth

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
)

// Service serves tenants and API tokens.
type Service struct {
	Store  *Store
	Issuer *TokenIssuer
	Logger *slog.Logger
	Now    func() time.Time
}

// MaxTokenTTL caps the lifetime of an issued API token.
const MaxTokenTTL = 365 * 24 * time.Hour

const maxBody = 16 << 10

// Register adds the routes.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tenants", s.createTenant)
	mux.HandleFunc("GET /v1/tenants", s.listTenants)
	mux.HandleFunc("GET /v1/tenants/{tenant}", s.getTenant)
	mux.HandleFunc("PUT /v1/tenants/{tenant}/approval-rule", s.setApprovalRule)
	mux.HandleFunc("POST /v1/tokens/api", s.issueToken)
	mux.HandleFunc("DELETE /v1/tokens/api/{jti}", s.revokeToken)
	mux.HandleFunc("GET /v1/tenants/{tenant}/tokens", s.listTokens)
	mux.HandleFunc("GET /v1/whoami", s.whoami)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// WriteUnknownTenant answers 404 naming the tenant.
func WriteUnknownTenant(w http.ResponseWriter, tenant string) {
	httpapi.Error(w, http.StatusNotFound, "unknown_tenant", "no tenant named "+tenant, map[string]any{"tenant": tenant})
}

func (s *Service) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
	httpapi.Error(w, http.StatusInternalServerError, "internal", "internal error", nil)
}

type tenantRequest struct {
	Name              string `json:"name"`
	TwoPerson         bool   `json:"two_person"`
	ApprovalsRequired int    `json:"approvals_required"`
}

func (s *Service) createTenant(w http.ResponseWriter, r *http.Request) {
	p, ok := Require(w, r, "", RoleAdmin)
	if !ok {
		return
	}
	if p.Tenant != "" {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "only a global admin creates tenants", nil)
		return
	}
	var req tenantRequest
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	if !ValidTenantName(req.Name) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "name: want 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", map[string]any{"field": "name"})
		return
	}
	if req.ApprovalsRequired == 0 {
		req.ApprovalsRequired = 1
	}
	if req.ApprovalsRequired < 1 || req.ApprovalsRequired > 10 {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "approvals_required: want 1..10", map[string]any{"field": "approvals_required"})
		return
	}
	t := Tenant{Name: req.Name, CreatedAt: s.now().UTC(), CreatedBy: p.Subject, TwoPerson: req.TwoPerson, ApprovalsRequired: req.ApprovalsRequired}
	if err := s.Store.CreateTenant(r.Context(), t); err != nil {
		if errors.Is(err, ErrTenantExists) {
			httpapi.Error(w, http.StatusConflict, "tenant_exists", "tenant "+req.Name+" already exists", map[string]any{"tenant": req.Name})
			return
		}
		s.internal(w, r, err)
		return
	}
	t.CreatedAt = t.CreatedAt.Truncate(time.Microsecond)
	httpapi.JSON(w, http.StatusCreated, t)
}

func (s *Service) listTenants(w http.ResponseWriter, r *http.Request) {
	p, ok := Require(w, r, "", RoleAdmin, RoleAuditor, RoleAuthor, RoleApprover, RolePublisher)
	if !ok {
		return
	}
	ts, err := s.Store.Tenants(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := ts[:0]
	for _, t := range ts {
		if p.CanAccessTenant(t.Name) {
			out = append(out, t)
		}
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"tenants": out})
}

func (s *Service) getTenant(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("tenant")
	if _, ok := Require(w, r, name); !ok {
		return
	}
	t, err := s.Store.Tenant(r.Context(), name)
	if errors.Is(err, ErrUnknownTenant) {
		WriteUnknownTenant(w, name)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, t)
}

type approvalRuleRequest struct {
	TwoPerson         bool `json:"two_person"`
	ApprovalsRequired int  `json:"approvals_required"`
}

func (s *Service) setApprovalRule(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("tenant")
	if _, ok := Require(w, r, name, RoleAdmin); !ok {
		return
	}
	var req approvalRuleRequest
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	if req.ApprovalsRequired < 1 || req.ApprovalsRequired > 10 {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "approvals_required: want 1..10", map[string]any{"field": "approvals_required"})
		return
	}
	err := s.Store.SetApprovalRule(r.Context(), name, req.TwoPerson, req.ApprovalsRequired)
	if errors.Is(err, ErrUnknownTenant) {
		WriteUnknownTenant(w, name)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	t, err := s.Store.Tenant(r.Context(), name)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, t)
}

type tokenRequest struct {
	Subject    string   `json:"subject"`
	Tenant     string   `json:"tenant"`
	Roles      []Role   `json:"roles"`
	Groups     []string `json:"groups"`
	TTLSeconds int64    `json:"ttl_seconds"`
}

type tokenResponse struct {
	Token     string    `json:"token"`
	JTI       string    `json:"jti"`
	Subject   string    `json:"subject"`
	Tenant    string    `json:"tenant,omitempty"`
	Roles     []Role    `json:"roles"`
	Groups    []string  `json:"groups,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// issuable are the roles an admin hands out here; node credentials come
// only from enrollment and agent tokens from the tokens service.
var issuable = map[Role]bool{RoleAdmin: true, RoleAuthor: true, RoleApprover: true, RolePublisher: true, RoleAuditor: true}

func (s *Service) issueToken(w http.ResponseWriter, r *http.Request) {
	p, ok := Require(w, r, "", RoleAdmin)
	if !ok {
		return
	}
	var req tokenRequest
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	if req.Subject == "" || len(req.Subject) > 256 {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "subject: want 1-256 bytes", map[string]any{"field": "subject"})
		return
	}
	if len(req.Roles) == 0 {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "roles: want at least one", map[string]any{"field": "roles"})
		return
	}
	for _, role := range req.Roles {
		if !issuable[role] {
			httpapi.Error(w, http.StatusBadRequest, "bad_request", "role "+string(role)+" cannot be issued here (admin, author, approver, publisher, auditor)", map[string]any{"field": "roles"})
			return
		}
	}
	if err := ValidGroups(req.Groups); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), map[string]any{"field": "groups"})
		return
	}
	// A tenant admin issues only inside its tenant, so it can never mint
	// a credential wider than its own.
	if p.Tenant != "" && req.Tenant != p.Tenant {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "a tenant admin issues tokens for its own tenant only", map[string]any{"tenant": req.Tenant})
		return
	}
	if req.Tenant != "" {
		if _, err := s.Store.Tenant(r.Context(), req.Tenant); errors.Is(err, ErrUnknownTenant) {
			WriteUnknownTenant(w, req.Tenant)
			return
		} else if err != nil {
			s.internal(w, r, err)
			return
		}
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if req.TTLSeconds == 0 {
		ttl = 30 * 24 * time.Hour
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "ttl_seconds: want 1..31536000", map[string]any{"field": "ttl_seconds"})
		return
	}
	it, err := s.Issuer.Issue(Principal{Subject: req.Subject, Tenant: req.Tenant, Roles: req.Roles, Groups: req.Groups}, s.now(), ttl)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if err := s.Store.RecordToken(r.Context(), it, p.Subject); err != nil {
		s.internal(w, r, err)
		return
	}
	s.Logger.Info("API token issued", "jti", it.ID, "subject", req.Subject, "tenant", req.Tenant, "by", p.Subject)
	httpapi.JSON(w, http.StatusCreated, tokenResponse{Token: it.Token, JTI: it.ID, Subject: req.Subject, Tenant: req.Tenant, Roles: req.Roles, Groups: req.Groups, ExpiresAt: it.ExpiresAt})
}

func (s *Service) revokeToken(w http.ResponseWriter, r *http.Request) {
	p, ok := Require(w, r, "", RoleAdmin)
	if !ok {
		return
	}
	jti := r.PathValue("jti")
	done, err := s.Store.RevokeToken(r.Context(), jti, p.Tenant, s.now())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if !done {
		httpapi.Error(w, http.StatusNotFound, "unknown_token", "no active token with this jti", map[string]any{"jti": jti})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) whoami(w http.ResponseWriter, r *http.Request) {
	p, ok := Require(w, r, "")
	if !ok {
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"subject": p.Subject, "tenant": p.Tenant, "roles": p.Roles, "jti": p.TokenID})
}

// listTokens shows who holds which roles in a tenant (admin, auditor).
func (s *Service) listTokens(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("tenant")
	if _, ok := Require(w, r, name, RoleAdmin, RoleAuditor); !ok {
		return
	}
	if _, err := s.Store.Tenant(r.Context(), name); errors.Is(err, ErrUnknownTenant) {
		WriteUnknownTenant(w, name)
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	ts, err := s.Store.Tokens(r.Context(), name)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"tokens": ts})
}
