package nodes

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
)

// Tenants is what the service needs to know about tenants.
type Tenants interface {
	Tenant(ctx context.Context, name string) (auth.Tenant, error)
}

// Service serves join tokens, enrollment and node listing.
type Service struct {
	Store   *Store
	Tenants Tenants
	CA      *CA
	Issuer  *auth.TokenIssuer
	Tokens  *auth.Store
	Logger  *slog.Logger
	Now     func() time.Time
	// CertTTL and TokenTTL are the lifetimes of what enrollment hands out.
	CertTTL, TokenTTL time.Duration
}

// EnrollProofPrefix is prepended to the join token in the message a node
// signs with its key when it enrolls without a CSR (proof of possession).
const EnrollProofPrefix = "aegis-enroll:"

const maxBody = 16 << 10

var labelRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Register adds the routes.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tenants/{tenant}/join-tokens", s.createJoinToken)
	mux.HandleFunc("GET /v1/tenants/{tenant}/nodes", s.list)
	mux.HandleFunc("DELETE /v1/tenants/{tenant}/nodes/{node}", s.disable)
	mux.HandleFunc("POST /v1/nodes/enroll", s.enroll)
	mux.HandleFunc("POST /v1/nodes/renew", s.renew)
	mux.HandleFunc("GET /v1/ca", s.ca)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
	httpapi.Error(w, http.StatusInternalServerError, "internal", "internal error", nil)
}

// tenantOK answers 404 for an unknown tenant.
func (s *Service) tenantOK(w http.ResponseWriter, r *http.Request, tenant string) bool {
	_, err := s.Tenants.Tenant(r.Context(), tenant)
	if errors.Is(err, auth.ErrUnknownTenant) {
		auth.WriteUnknownTenant(w, tenant)
		return false
	}
	if err != nil {
		s.internal(w, r, err)
		return false
	}
	return true
}

type joinTokenRequest struct {
	Region     string   `json:"region"`
	Role       string   `json:"role"`
	TTLSeconds int64    `json:"ttl_seconds"`
	Serves     []string `json:"serves"`
}

// maxServes bounds how many tenants one shared gateway may serve.
const maxServes = 64

func (s *Service) createJoinToken(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := auth.Require(w, r, tenant, auth.RoleAdmin)
	if !ok || !s.tenantOK(w, r, tenant) {
		return
	}
	var req joinTokenRequest
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	if !labelRe.MatchString(req.Region) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "region: want 1-64 letters, digits, '.', '_' or '-'", map[string]any{"field": "region"})
		return
	}
	if !slices.Contains(Roles, req.Role) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "role: want gateway, sidecar or edge", map[string]any{"field": "role"})
		return
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if req.TTLSeconds == 0 {
		ttl = time.Hour
	}
	if ttl <= 0 || ttl > 7*24*time.Hour {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "ttl_seconds: want 1..604800", map[string]any{"field": "ttl_seconds"})
		return
	}
	if len(req.Serves) > 0 && !s.servesOK(w, r, p, req.Serves) {
		return
	}
	jt, err := s.Store.CreateSharedJoinToken(r.Context(), tenant, req.Region, req.Role, req.Serves, p.Subject, s.now(), ttl)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.Logger.Info("join token created", "id", jt.ID, "tenant", tenant, "region", req.Region, "role", req.Role, "serves", jt.Serves, "by", p.Subject)
	httpapi.JSON(w, http.StatusCreated, jt)
}

// servesOK checks the serves list of a join token request: only a global
// admin may make a node that works for more than one tenant (a tenant
// admin would otherwise reach into tenants it does not administer), and
// every tenant named must exist.
func (s *Service) servesOK(w http.ResponseWriter, r *http.Request, p auth.Principal, serves []string) bool {
	if p.Tenant != "" {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "only a global admin may create a join token that serves several tenants", map[string]any{"field": "serves"})
		return false
	}
	if len(serves) > maxServes {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "serves: at most 64 tenants", map[string]any{"field": "serves"})
		return false
	}
	for _, t := range serves {
		if !labelRe.MatchString(t) {
			httpapi.Error(w, http.StatusBadRequest, "bad_request", "serves: want tenant names", map[string]any{"field": "serves"})
			return false
		}
		if !s.tenantOK(w, r, t) {
			return false
		}
	}
	return true
}

// EnrollRequest is the body of POST /v1/nodes/enroll: the join token and
// the node's Ed25519 public key, proven either by a CSR signed with it or
// by Proof, the signature of EnrollProofPrefix+JoinToken.
type EnrollRequest struct {
	JoinToken string `json:"join_token"`
	Name      string `json:"name,omitempty"`
	PublicKey string `json:"public_key,omitempty"` // base64 of the 32-byte key
	Proof     string `json:"proof,omitempty"`      // base64 signature
	CSR       string `json:"csr,omitempty"`        // PEM CERTIFICATE REQUEST
}

// EnrollResponse is what a node keeps: its id, certificate, the CA to
// trust, and a node API token.
type EnrollResponse struct {
	NodeID         string    `json:"node_id"`
	Tenant         string    `json:"tenant"`
	Region         string    `json:"region"`
	Role           string    `json:"role"`
	Serves         []string  `json:"serves,omitempty"`
	Certificate    string    `json:"certificate"`
	CA             string    `json:"ca"`
	Token          string    `json:"token"`
	TokenExpiresAt time.Time `json:"token_expires_at"`
}

// ParseEnrollRequest checks an enrollment body and returns the proven
// public key. It is pure, so the fuzz target exercises it directly.
func ParseEnrollRequest(req EnrollRequest) (ed25519.PublicKey, error) {
	if req.JoinToken == "" || len(req.JoinToken) > 256 {
		return nil, errors.New("join_token: want 1-256 bytes")
	}
	if req.Name != "" && !labelRe.MatchString(req.Name) {
		return nil, errors.New("name: want 1-64 letters, digits, '.', '_' or '-'")
	}
	var pub ed25519.PublicKey
	if req.PublicKey != "" {
		b, err := base64.StdEncoding.Strict().DecodeString(req.PublicKey)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, errors.New("public_key: want base64 of a 32-byte Ed25519 key")
		}
		pub = b
	}
	switch {
	case req.CSR != "":
		block, rest := pem.Decode([]byte(req.CSR))
		if block == nil || block.Type != "CERTIFICATE REQUEST" || strings.TrimSpace(string(rest)) != "" {
			return nil, errors.New("csr: want one CERTIFICATE REQUEST PEM block")
		}
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			return nil, errors.New("csr: " + err.Error())
		}
		if err := csr.CheckSignature(); err != nil {
			return nil, errors.New("csr: signature does not verify")
		}
		k, ok := csr.PublicKey.(ed25519.PublicKey)
		if !ok {
			return nil, errors.New("csr: want an Ed25519 key")
		}
		if pub != nil && !pub.Equal(k) {
			return nil, errors.New("csr and public_key name different keys")
		}
		return k, nil
	case pub != nil:
		sig, err := base64.StdEncoding.Strict().DecodeString(req.Proof)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return nil, errors.New("proof: want base64 of an Ed25519 signature over \"" + EnrollProofPrefix + "\" + join_token")
		}
		if !ed25519.Verify(pub, []byte(EnrollProofPrefix+req.JoinToken), sig) {
			return nil, errors.New("proof: signature does not verify with public_key")
		}
		return pub, nil
	default:
		return nil, errors.New("want csr, or public_key with proof")
	}
}

func (s *Service) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	if err := httpapi.Decode(r, maxBody, &req); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	pub, err := ParseEnrollRequest(req)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	now := s.now()
	var resp EnrollResponse
	n, err := s.Store.Enroll(r.Context(), req.JoinToken, req.Name, pub, now, func(tx *sql.Tx, n Node) error {
		cert, err := s.CA.IssueNode(n.Tenant, n.ID, pub, now, s.CertTTL)
		if err != nil {
			return err
		}
		it, err := s.Issuer.Issue(auth.Principal{Subject: n.ID, Tenant: n.Tenant, Roles: []auth.Role{auth.RoleNode}}, now, s.TokenTTL)
		if err != nil {
			return err
		}
		if err := auth.RecordTokenTx(r.Context(), tx, it, "enrollment"); err != nil {
			return err
		}
		resp = EnrollResponse{NodeID: n.ID, Tenant: n.Tenant, Region: n.Region, Role: n.Role, Serves: n.Serves, Certificate: string(cert), CA: string(s.CA.PEM),
			Token: it.Token, TokenExpiresAt: it.ExpiresAt}
		return nil
	})
	switch {
	case errors.Is(err, ErrJoinTokenInvalid):
		httpapi.Error(w, http.StatusUnauthorized, "join_token_invalid", "join token not recognised", nil)
	case errors.Is(err, ErrJoinTokenUsed):
		httpapi.Error(w, http.StatusConflict, "join_token_used", "join token already used", nil)
	case errors.Is(err, ErrJoinTokenExpired):
		httpapi.Error(w, http.StatusGone, "join_token_expired", "join token expired", nil)
	case err != nil:
		s.internal(w, r, err)
	default:
		s.Logger.Info("node enrolled", "node", n.ID, "tenant", n.Tenant, "region", n.Region, "role", n.Role, "serves", n.Serves)
		httpapi.JSON(w, http.StatusCreated, resp)
	}
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if _, ok := auth.Require(w, r, tenant, auth.RoleAdmin, auth.RoleAuditor); !ok || !s.tenantOK(w, r, tenant) {
		return
	}
	ns, err := s.Store.List(r.Context(), tenant)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"nodes": ns})
}

func (s *Service) disable(w http.ResponseWriter, r *http.Request) {
	tenant, node := r.PathValue("tenant"), r.PathValue("node")
	if _, ok := auth.Require(w, r, tenant, auth.RoleAdmin); !ok || !s.tenantOK(w, r, tenant) {
		return
	}
	now := s.now()
	done, err := s.Store.Disable(r.Context(), tenant, node, now)
	if err == nil && done {
		err = s.Tokens.RevokeSubject(r.Context(), tenant, node, now)
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if !done {
		httpapi.Error(w, http.StatusNotFound, "unknown_node", "no enabled node "+node+" in tenant "+tenant, map[string]any{"node": node})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) ca(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(s.CA.PEM)
}

// renew gives an enrolled node a fresh certificate and token for its
// registered key, before the old ones expire. The node proves itself with
// its current credential; the key, tenant, region and role stay as
// enrolled.
func (s *Service) renew(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.Require(w, r, "", auth.RoleNode)
	if !ok {
		return
	}
	n, err := s.Store.Node(r.Context(), p.Subject)
	if err != nil || n.Tenant != p.Tenant {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "not an enrolled node", nil)
		return
	}
	now := s.now()
	cert, err := s.CA.IssueNode(n.Tenant, n.ID, n.PublicKey, now, s.CertTTL)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	it, err := s.Issuer.Issue(auth.Principal{Subject: n.ID, Tenant: n.Tenant, Roles: []auth.Role{auth.RoleNode}}, now, s.TokenTTL)
	if err == nil {
		err = s.Tokens.RecordToken(r.Context(), it, "renewal")
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, EnrollResponse{NodeID: n.ID, Tenant: n.Tenant, Region: n.Region, Role: n.Role, Serves: n.Serves, Certificate: string(cert),
		CA: string(s.CA.PEM), Token: it.Token, TokenExpiresAt: it.ExpiresAt})
}
