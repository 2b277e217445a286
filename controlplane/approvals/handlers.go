package approvals

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
)

// Register adds the approval routes to mux. Every route needs a principal:
// nodes create approvals and redeem overrides, approvers decide, agents
// poll their own approvals.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/approvals", s.handleCreate)
	mux.HandleFunc("GET /v1/approvals", s.handleList)
	mux.HandleFunc("GET /v1/approvals/{id}", s.handleGet)
	mux.HandleFunc("POST /v1/approvals/{id}/approve", s.handleDecide(StatusApproved))
	mux.HandleFunc("POST /v1/approvals/{id}/deny", s.handleDecide(StatusDenied))
	mux.HandleFunc("POST /v1/overrides/redeem", s.handleRedeem)
}

// principal answers 401 when the request is unauthenticated, 403 when the
// caller holds none of roles.
func principal(w http.ResponseWriter, r *http.Request, roles ...auth.Role) (auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		httpapi.Error(w, http.StatusUnauthorized, "unauthenticated", "this call needs a credential", nil)
		return p, false
	}
	for _, role := range roles {
		if p.Has(role) {
			return p, true
		}
	}
	httpapi.Error(w, http.StatusForbidden, "forbidden", "the caller's role may not make this call", nil)
	return p, false
}

func (s *Service) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.ErrorContext(r.Context(), what, "err", err)
	httpapi.Error(w, http.StatusInternalServerError, "internal", what, nil)
}

// CreateResponse answers POST /v1/approvals.
type CreateResponse struct {
	ApprovalID string    `json:"approval_id"`
	Status     string    `json:"status"`
	ExpiresAt  time.Time `json:"expires_at"`
	Batched    int       `json:"batched"`
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r, auth.RoleNode)
	if !ok {
		return
	}
	if p.Tenant == "" {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "the node credential names no tenant", nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxCreateBody+1))
	if err != nil || len(body) > MaxCreateBody {
		httpapi.Error(w, http.StatusRequestEntityTooLarge, "too_large", "request body too large", nil)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		httpapi.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "want application/json", nil)
		return
	}
	req, err := DecodeCreate(body)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	// The tenant is the node's enrolled tenant unless the body names
	// another that the node was enrolled to serve (a shared gateway); any
	// other tenant is refused, never followed.
	tenant := p.Tenant
	if req.Tenant != "" {
		if !p.CanServe(req.Tenant) {
			httpapi.Error(w, http.StatusForbidden, "forbidden", "the node does not serve this tenant", nil)
			return
		}
		tenant = req.Tenant
	}
	a, created, err := s.Create(r.Context(), tenant, p.Subject, req)
	if err != nil {
		s.internalError(w, r, "creating the approval failed", err)
		return
	}
	st := http.StatusOK
	if created {
		st = http.StatusCreated
	}
	httpapi.JSON(w, st, CreateResponse{ApprovalID: a.ID, Status: a.Status, ExpiresAt: a.ExpiresAt, Batched: a.Batched})
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r, auth.RoleApprover, auth.RoleAdmin, auth.RoleAuditor)
	if !ok {
		return
	}
	q := r.URL.Query()
	for k, v := range q {
		if len(v) > 1 || (k != "tenant" && k != "status" && k != "limit") {
			httpapi.Error(w, http.StatusBadRequest, "bad_request", "query parameters: tenant, status, limit, each at most once", nil)
			return
		}
	}
	tenant := q.Get("tenant")
	if tenant == "" {
		tenant = p.Tenant
	}
	status := q.Get("status")
	if status == "" {
		status = StatusPending
	}
	limit := 100
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			httpapi.Error(w, http.StatusBadRequest, "bad_request", "limit must be 1..1000", nil)
			return
		}
		limit = n
	}
	switch {
	case !validName(tenant):
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "tenant is missing or invalid", nil)
		return
	case !validStatus(status):
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "status must be pending, approved, denied or expired", nil)
		return
	case !p.CanAccessTenant(tenant):
		httpapi.Error(w, http.StatusForbidden, "forbidden", "the caller may not act on this tenant", nil)
		return
	}
	as, err := s.List(r.Context(), tenant, status, limit)
	if err != nil {
		s.internalError(w, r, "listing approvals failed", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"approvals": as})
}

// HeaderAgentToken carries the agent's token when a node polls an approval
// on the agent's behalf (the filter's approval hold).
const HeaderAgentToken = "X-Aegis-Agent-Token"

// AgentView is what the requesting agent sees of its approval.
type AgentView struct {
	ApprovalID    string    `json:"approval_id"`
	Status        string    `json:"status"`
	ExpiresAt     time.Time `json:"expires_at"`
	OverrideToken string    `json:"override_token,omitempty"`
	// OverrideIssued is true once the token was handed out; it is never
	// handed out again.
	OverrideIssued bool `json:"override_issued"`
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r, auth.RoleAgent, auth.RoleApprover, auth.RoleAdmin, auth.RoleAuditor, auth.RoleNode)
	if !ok {
		return
	}
	// A node is scoped by the tenants it serves, checked below once the
	// approval's tenant is known; everyone else by its own tenant.
	scope := p.Tenant
	if p.Has(auth.RoleNode) {
		if p.Tenant == "" {
			httpapi.Error(w, http.StatusNotFound, "not_found", "no such approval", nil)
			return
		}
		scope = ""
	}
	a, err := s.Get(r.Context(), scope, r.PathValue("id"))
	if err == nil && p.Has(auth.RoleNode) && !p.CanServe(a.Tenant) {
		err = ErrNotFound
	}
	if errors.Is(err, ErrNotFound) {
		httpapi.Error(w, http.StatusNotFound, "not_found", "no such approval", nil)
		return
	}
	if err != nil {
		s.internalError(w, r, "reading the approval failed", err)
		return
	}
	// A node holding the agent's request polls in the agent's name with
	// the agent's own token; it then gets exactly what the agent would.
	if fwd := r.Header.Get(HeaderAgentToken); fwd != "" && p.Has(auth.RoleNode) && !p.Has(auth.RoleAgent) {
		if s.cfg.Agents == nil || p.Tenant == "" {
			httpapi.Error(w, http.StatusForbidden, "forbidden", "forwarded agent tokens are not accepted here", nil)
			return
		}
		ap, err := s.cfg.Agents.AgentPrincipal(r.Context(), fwd)
		if err != nil {
			s.log.InfoContext(r.Context(), "forwarded agent token refused", "node", p.Subject, "reason", err.Error())
			httpapi.Error(w, http.StatusForbidden, "invalid_agent_token", "the forwarded agent token does not verify", nil)
			return
		}
		if !p.CanServe(ap.Tenant) {
			httpapi.Error(w, http.StatusNotFound, "not_found", "no such approval", nil)
			return
		}
		p = ap
	}
	switch {
	case p.Has(auth.RoleAgent):
		// Only the requesting agent; for anyone else it does not exist.
		if p.Tenant == "" || p.Tenant != a.Tenant || p.Subject != a.Agent {
			httpapi.Error(w, http.StatusNotFound, "not_found", "no such approval", nil)
			return
		}
		tok, err := s.DeliverOverride(r.Context(), a)
		if err != nil {
			s.internalError(w, r, "issuing the override failed", err)
			return
		}
		httpapi.JSON(w, http.StatusOK, AgentView{ApprovalID: a.ID, Status: a.Status, ExpiresAt: a.ExpiresAt, OverrideToken: tok, OverrideIssued: a.OverrideIssued})
	case p.Has(auth.RoleNode):
		if !p.CanServe(a.Tenant) {
			httpapi.Error(w, http.StatusNotFound, "not_found", "no such approval", nil)
			return
		}
		httpapi.JSON(w, http.StatusOK, AgentView{ApprovalID: a.ID, Status: a.Status, ExpiresAt: a.ExpiresAt, OverrideIssued: a.OverrideIssued})
	default:
		httpapi.JSON(w, http.StatusOK, a)
	}
}

// DecideRequest is the optional body of approve and deny.
type DecideRequest struct {
	Note string `json:"note,omitempty"`
}

func (s *Service) handleDecide(decision string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r, auth.RoleApprover)
		if !ok {
			return
		}
		var req DecideRequest
		if r.ContentLength != 0 {
			if err := httpapi.Decode(r, 4<<10, &req); err != nil {
				httpapi.WriteDecodeError(w, err)
				return
			}
		}
		if !printable(req.Note, 1024) {
			httpapi.Error(w, http.StatusBadRequest, "bad_request", "note longer than 1024 bytes or not printable", nil)
			return
		}
		a, err := s.Decide(r.Context(), p.Tenant, r.PathValue("id"), p, decision, req.Note)
		switch {
		case errors.Is(err, ErrNotFound):
			httpapi.Error(w, http.StatusNotFound, "not_found", "no such approval", nil)
		case errors.Is(err, ErrNotApprover):
			httpapi.Error(w, http.StatusForbidden, "not_an_approver",
				"the policy names who may decide this approval and you are not among them (neither your name nor a group of your API token)",
				map[string]any{"approvers": approversOf(err)})
		case errors.Is(err, ErrSelfApproval):
			httpapi.Error(w, http.StatusForbidden, "self_approval", "the policy forbids the agent's owner from deciding its requests", nil)
		case errors.Is(err, ErrExpired):
			httpapi.Error(w, http.StatusGone, "expired", "the approval expired", nil)
		case errors.Is(err, ErrAlreadyDecided):
			httpapi.Error(w, http.StatusConflict, "already_decided", "the approval was already "+a.Status, nil)
		case err != nil:
			s.internalError(w, r, "deciding the approval failed", err)
		default:
			s.log.InfoContext(r.Context(), "approval decided", "approval_id", a.ID, "tenant", a.Tenant, "decision", decision, "by", p.Subject)
			httpapi.JSON(w, http.StatusOK, a)
		}
	}
}

func (s *Service) handleRedeem(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r, auth.RoleNode)
	if !ok {
		return
	}
	var req RedeemRequest
	if err := httpapi.Decode(r, 16<<10, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	if !p.CanServe(req.Tenant) {
		s.m.redemptions.WithLabelValues("forbidden").Inc()
		httpapi.Error(w, http.StatusForbidden, "forbidden", "the node does not serve this tenant", nil)
		return
	}
	c, err := s.Redeem(r.Context(), p.Subject, req)
	result := "ok"
	switch {
	case errors.Is(err, ErrAlreadyRedeemed):
		result = "already_redeemed"
		httpapi.Error(w, http.StatusConflict, result, "the override was already used", nil)
	case errors.Is(err, ErrMismatch):
		result = "mismatch"
		httpapi.Error(w, http.StatusForbidden, result, "the override is for another agent, tool, parameters or approval", nil)
	case errors.Is(err, ErrExpired):
		result = "expired"
		httpapi.Error(w, http.StatusGone, result, "the override expired", nil)
	case errors.Is(err, ErrInvalidOverride):
		result = "invalid_token"
		httpapi.Error(w, http.StatusForbidden, result, "the override token does not verify", nil)
	case err != nil:
		s.internalError(w, r, "redeeming the override failed", err)
		return
	default:
		s.log.InfoContext(r.Context(), "override redeemed", "approval_id", c.ApprovalID, "tenant", c.Tenant, "node", p.Subject)
		httpapi.JSON(w, http.StatusOK, map[string]any{"ok": true, "approval_id": c.ApprovalID, "jti": c.ID})
	}
	s.m.redemptions.WithLabelValues(result).Inc()
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// approversOf returns the approvers a NotApproverError names.
func approversOf(err error) []string {
	var e *NotApproverError
	if errors.As(err, &e) {
		return e.Approvers
	}
	return nil
}
