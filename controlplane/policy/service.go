package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
	"github.com/aegis-mesh/aegis/controlplane/nodes"
	"github.com/aegis-mesh/aegis/controlplane/notify"
	"github.com/aegis-mesh/aegis/controlplane/signing"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/policies"
)

// Tenants reads tenants and their approval rule.
type Tenants interface {
	Tenant(ctx context.Context, name string) (auth.Tenant, error)
}

// Nodes finds an enrolled node's region and role.
type Nodes interface {
	Node(ctx context.Context, nodeID string) (nodes.Node, error)
}

// Notifier announces published releases to every replica.
type Notifier interface {
	Notify(ctx context.Context, e notify.Event) error
}

// Config builds a Service.
type Config struct {
	Store          *Store
	Tenants        Tenants
	Nodes          Nodes
	Notifier       Notifier
	Ring           *signing.Ring // bundle signing keys
	BundleValidity time.Duration
	MaxPolicyBytes int64
	Registerer     prometheus.Registerer
	Logger         *slog.Logger
	Now            func() time.Time
}

// Service serves the lifecycle API.
type Service struct {
	cfg         Config
	transitions *prometheus.CounterVec
	compileDur  prometheus.Histogram
}

// NewService registers the metrics and returns the service.
func NewService(cfg Config) (*Service, error) {
	s := &Service{cfg: cfg,
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aegis_policy_transitions_total",
			Help: "Policy lifecycle requests by transition and result."}, []string{"transition", "result"}),
		compileDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aegis_policy_compile_seconds",
			Help: "Time to validate and compile a submitted policy set.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
	}
	for _, c := range []prometheus.Collector{s.transitions, s.compileDur} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("policy metrics: %w", err)
		}
	}
	return s, nil
}

// Register adds the routes.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tenants/{tenant}/policies", s.submit)
	mux.HandleFunc("GET /v1/tenants/{tenant}/policies", s.listVersions)
	mux.HandleFunc("GET /v1/tenants/{tenant}/policies/{version}", s.getVersion)
	mux.HandleFunc("POST /v1/tenants/{tenant}/policies/{version}/approve", s.approve)
	mux.HandleFunc("GET /v1/tenants/{tenant}/policies/{version}/archive", s.archive)
	mux.HandleFunc("POST /v1/tenants/{tenant}/releases", s.publish)
	mux.HandleFunc("POST /v1/tenants/{tenant}/releases/rollback", s.rollback)
	mux.HandleFunc("GET /v1/tenants/{tenant}/releases", s.listReleases)
	mux.HandleFunc("GET /v1/tenants/{tenant}/releases/{seq}/bundle", s.releaseBundle)
	mux.HandleFunc("GET /v1/tenants/{tenant}/policy-events", s.events)
	mux.HandleFunc("GET /v1/tenants/{tenant}/bundle", s.nodeBundle)
	mux.HandleFunc("GET /v1/keys/bundle", s.keys)
}

func (s *Service) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

func (s *Service) fail(w http.ResponseWriter, r *http.Request, transition string, err error) {
	code, status := Code(err)
	if status == 500 {
		s.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
		httpapi.Error(w, status, code, "internal error", nil)
	} else {
		httpapi.Error(w, status, code, err.Error(), nil)
	}
	if transition != "" {
		s.transitions.WithLabelValues(transition, code).Inc()
	}
}

// tenant authorizes and loads the tenant named in the path.
func (s *Service) tenant(w http.ResponseWriter, r *http.Request, roles ...auth.Role) (auth.Principal, auth.Tenant, bool) {
	return s.tenantWith(w, r, auth.Require, roles)
}

func (s *Service) tenantWith(w http.ResponseWriter, r *http.Request, require func(http.ResponseWriter, *http.Request, string, ...auth.Role) (auth.Principal, bool), roles []auth.Role) (auth.Principal, auth.Tenant, bool) {
	name := r.PathValue("tenant")
	p, ok := require(w, r, name, roles...)
	if !ok {
		return p, auth.Tenant{}, false
	}
	t, err := s.cfg.Tenants.Tenant(r.Context(), name)
	if errors.Is(err, auth.ErrUnknownTenant) {
		auth.WriteUnknownTenant(w, name)
		return p, t, false
	}
	if err != nil {
		s.fail(w, r, "", err)
		return p, t, false
	}
	return p, t, true
}

func rule(t auth.Tenant) ApprovalRule {
	return ApprovalRule{TwoPerson: t.TwoPerson, Required: t.ApprovalsRequired}
}

func (s *Service) submit(w http.ResponseWriter, r *http.Request) {
	p, t, ok := s.tenant(w, r, auth.RoleAuthor, auth.RoleAdmin)
	if !ok {
		return
	}
	files, err := DecodeSubmit(r, s.cfg.MaxPolicyBytes)
	if err != nil {
		httpapi.WriteDecodeError(w, err)
		s.transitions.WithLabelValues("submit", "bad_request").Inc()
		return
	}
	name := PolicyFile(files)
	start := time.Now()
	ps, errs := policies.Load(name, []byte(files[name]))
	if len(errs) == 0 && ps.Metadata.Tenant != t.Name {
		errs = policies.Errors{{Code: "tenant_mismatch", Message: fmt.Sprintf("metadata.tenant is %q, the request is for tenant %q", ps.Metadata.Tenant, t.Name),
			Location: tenantLocation(name, files[name]), Path: "metadata.tenant"}}
	}
	var compiled, observe *policies.Compiled
	if len(errs) == 0 {
		compiled, err = policies.Compile(r.Context(), ps, policies.Options{})
		if err == nil {
			obs := *ps
			obs.Defaults.Mode = "observe"
			observe, err = policies.Compile(r.Context(), &obs, policies.Options{SkipWasm: true})
		}
		var pe *policies.Error
		var pes policies.Errors
		switch {
		case errors.As(err, &pes):
			errs = pes
		case errors.As(err, &pe):
			errs = policies.Errors{pe}
		case err != nil:
			s.fail(w, r, "submit", err)
			return
		}
	}
	s.compileDur.Observe(time.Since(start).Seconds())
	if len(errs) > 0 {
		httpapi.Error(w, http.StatusUnprocessableEntity, "invalid_policy",
			fmt.Sprintf("%d error(s); first: %s", len(errs), errs[0].Error()), map[string]any{"errors": errs})
		s.transitions.WithLabelValues("submit", "invalid_policy").Inc()
		return
	}
	budgets, owners, delegates := map[string]float64{}, map[string]string{}, map[string][]string{}
	for _, a := range ps.Agents {
		if a.Owner != "" {
			owners[a.ID] = a.Owner
		}
		for _, d := range a.MayDelegateTo {
			delegates[a.ID] = append(delegates[a.ID], d.Name)
		}
		if a.BudgetPerDay != nil {
			if micro, ok := a.BudgetPerDay.Micro(); ok {
				budgets[a.ID] = float64(micro) / 1e6
			}
		}
	}
	now := s.now()
	v, err := s.cfg.Store.Submit(r.Context(), Submission{
		Tenant: t.Name, Name: compiled.Name, Files: files, Budgets: budgets, Owners: owners, Delegates: delegates, By: p.Subject, At: now,
		Build: func(version int64) ([]byte, []byte, []byte, error) {
			opts := policies.BundleOptions{Revision: version, CreatedAt: now, ExpiresAt: now.Add(s.cfg.BundleValidity)}
			archive, runtime, err := policies.BuildBundles(compiled, opts)
			if err != nil {
				return nil, nil, nil, err
			}
			_, observeRuntime, err := policies.BuildBundles(observe, opts)
			return runtime, observeRuntime, archive, err
		},
	})
	if err != nil {
		s.fail(w, r, "submit", err)
		return
	}
	v.Approved = Approved(rule(t), v.SubmittedBy, v.Approvers)
	s.transitions.WithLabelValues("submit", "ok").Inc()
	s.cfg.Logger.Info("policy submitted", "tenant", t.Name, "version", v.Version, "digest", v.Digest, "by", p.Subject)
	httpapi.JSON(w, http.StatusCreated, v)
}

func pathInt(r *http.Request, name string) (int64, bool) {
	n, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	return n, err == nil && n > 0
}

func (s *Service) listVersions(w http.ResponseWriter, r *http.Request) {
	_, t, ok := s.tenant(w, r, auth.RoleAdmin, auth.RoleAuthor, auth.RoleApprover, auth.RolePublisher, auth.RoleAuditor)
	if !ok {
		return
	}
	vs, err := s.cfg.Store.Versions(r.Context(), t.Name, rule(t))
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"versions": vs})
}

func (s *Service) getVersion(w http.ResponseWriter, r *http.Request) {
	_, t, ok := s.tenant(w, r, auth.RoleAdmin, auth.RoleAuthor, auth.RoleApprover, auth.RolePublisher, auth.RoleAuditor)
	if !ok {
		return
	}
	n, valid := pathInt(r, "version")
	if !valid {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "version: want a positive integer", nil)
		return
	}
	v, err := s.cfg.Store.Version(r.Context(), t.Name, n, rule(t))
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, v)
}

// archive serves a version's archive bundle (Rego sources, plan, OPA wasm)
// for review and OPA tooling.
func (s *Service) archive(w http.ResponseWriter, r *http.Request) {
	_, t, ok := s.tenant(w, r, auth.RoleAdmin, auth.RoleAuthor, auth.RoleApprover, auth.RolePublisher, auth.RoleAuditor)
	if !ok {
		return
	}
	n, valid := pathInt(r, "version")
	if !valid {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "version: want a positive integer", nil)
		return
	}
	b, err := s.cfg.Store.Archive(r.Context(), t.Name, n)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

func (s *Service) approve(w http.ResponseWriter, r *http.Request) {
	p, t, ok := s.tenant(w, r, auth.RoleApprover)
	if !ok {
		return
	}
	n, valid := pathInt(r, "version")
	if !valid {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "version: want a positive integer", nil)
		return
	}
	v, err := s.cfg.Store.Approve(r.Context(), t.Name, n, p.Subject, rule(t), s.now())
	if err != nil {
		s.fail(w, r, "approve", err)
		return
	}
	s.transitions.WithLabelValues("approve", "ok").Inc()
	s.cfg.Logger.Info("policy approved", "tenant", t.Name, "version", n, "by", p.Subject, "approved", v.Approved)
	httpapi.JSON(w, http.StatusOK, v)
}

// PublishBody is the body of POST /v1/tenants/{t}/releases.
type PublishBody struct {
	Version  int64    `json:"version"`
	Stage    string   `json:"stage,omitempty"` // observe or enforce (default)
	Regions  []string `json:"regions,omitempty"`
	Roles    []string `json:"roles,omitempty"`
	Revision int64    `json:"revision,omitempty"` // expected next revision; optional
}

// RollbackBody is the body of POST /v1/tenants/{t}/releases/rollback:
// the earlier revision to run again.
type RollbackBody struct {
	ToRevision int64    `json:"to_revision"`
	Stage      string   `json:"stage,omitempty"`
	Regions    []string `json:"regions,omitempty"`
	Roles      []string `json:"roles,omitempty"`
}

var regionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkSelector(stage string, regions, roles []string) (string, error) {
	if stage == "" {
		stage = StageEnforce
	}
	if stage != StageEnforce && stage != StageObserve {
		return "", errors.New("stage: want observe or enforce")
	}
	if len(regions) > 64 || len(roles) > 3 {
		return "", errors.New("too many regions or roles")
	}
	for _, rg := range regions {
		if !regionRe.MatchString(rg) {
			return "", fmt.Errorf("region %q: want letters, digits, '.', '_' or '-'", rg)
		}
	}
	for _, ro := range roles {
		if !slices.Contains(nodes.Roles, ro) {
			return "", fmt.Errorf("role %q: want gateway, sidecar or edge", ro)
		}
	}
	return stage, nil
}

func (s *Service) publish(w http.ResponseWriter, r *http.Request) {
	p, t, ok := s.tenant(w, r, auth.RolePublisher)
	if !ok {
		return
	}
	var body PublishBody
	if err := httpapi.Decode(r, 64<<10, &body); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	stage, err := checkSelector(body.Stage, body.Regions, body.Roles)
	if err == nil && body.Version <= 0 {
		err = errors.New("version: want a positive integer")
	}
	if err == nil && body.Revision < 0 {
		err = errors.New("revision: want a positive integer")
	}
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	s.release(w, r, "publish", PublishRequest{Tenant: t.Name, Version: body.Version, Stage: stage,
		Selector: Selector{Regions: body.Regions, Roles: body.Roles}, Revision: body.Revision, Publisher: p.Subject, Rule: rule(t)})
}

func (s *Service) rollback(w http.ResponseWriter, r *http.Request) {
	p, t, ok := s.tenant(w, r, auth.RolePublisher)
	if !ok {
		return
	}
	var body RollbackBody
	if err := httpapi.Decode(r, 64<<10, &body); err != nil {
		httpapi.WriteDecodeError(w, err)
		return
	}
	stage, err := checkSelector(body.Stage, body.Regions, body.Roles)
	if err == nil && body.ToRevision <= 0 {
		err = errors.New("to_revision: want a positive integer")
	}
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	s.release(w, r, "rollback", PublishRequest{Tenant: t.Name, ToRevision: body.ToRevision, Rollback: true, Stage: stage,
		Selector: Selector{Regions: body.Regions, Roles: body.Roles}, Publisher: p.Subject, Rule: rule(t)})
}

func (s *Service) release(w http.ResponseWriter, r *http.Request, transition string, req PublishRequest) {
	req.Key, req.Ring, req.Validity, req.Now = s.cfg.Ring.Current(), s.cfg.Ring, s.cfg.BundleValidity, s.now()
	rel, err := s.cfg.Store.Publish(r.Context(), req)
	if err != nil {
		s.fail(w, r, transition, err)
		return
	}
	s.transitions.WithLabelValues(transition, "ok").Inc()
	s.cfg.Logger.Info("release published", "tenant", req.Tenant, "revision", rel.Revision, "version", rel.Version, "stage", rel.Stage,
		"rollback", rel.Rollback, "by", req.Publisher, "key", rel.KeyID)
	// The release is committed; a lost notification is repaired by the
	// periodic reconciliation, so a failure here is logged, not returned.
	if err := s.cfg.Notifier.Notify(context.WithoutCancel(r.Context()), notify.Event{Tenant: req.Tenant, Kind: notify.KindRelease}); err != nil {
		s.cfg.Logger.Warn("release notification failed", "tenant", req.Tenant, "error", err.Error())
	}
	httpapi.JSON(w, http.StatusCreated, rel)
}

func (s *Service) listReleases(w http.ResponseWriter, r *http.Request) {
	_, t, ok := s.tenant(w, r, auth.RoleAdmin, auth.RoleAuthor, auth.RoleApprover, auth.RolePublisher, auth.RoleAuditor)
	if !ok {
		return
	}
	rs, err := s.cfg.Store.Releases(r.Context(), t.Name)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"releases": rs})
}

func (s *Service) events(w http.ResponseWriter, r *http.Request) {
	_, t, ok := s.tenant(w, r, auth.RoleAdmin, auth.RoleAuditor, auth.RolePublisher, auth.RoleApprover, auth.RoleAuthor)
	if !ok {
		return
	}
	es, err := s.cfg.Store.Events(r.Context(), t.Name)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"events": es})
}

func writeBundle(w http.ResponseWriter, r *http.Request, rel Release) {
	etag := `"` + rel.Digest + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("X-Aegis-Revision", strconv.FormatInt(rel.Revision, 10))
	w.Header().Set("Cache-Control", "no-cache")
	if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == etag || inm == rel.Digest) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", strconv.Itoa(len(rel.Bundle)))
	_, _ = w.Write(rel.Bundle)
}

func (s *Service) releaseBundle(w http.ResponseWriter, r *http.Request) {
	_, t, ok := s.tenant(w, r, auth.RoleAdmin, auth.RoleAuditor, auth.RolePublisher, auth.RoleApprover)
	if !ok {
		return
	}
	n, valid := pathInt(r, "seq")
	if !valid {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "seq: want a positive integer", nil)
		return
	}
	rel, err := s.cfg.Store.Release(r.Context(), t.Name, n)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	writeBundle(w, r, rel)
}

// nodeBundle serves the runtime bundle a node should run. The tenant is
// the node's enrolled tenant or, for a shared gateway, one it was enrolled
// to serve (auth.RequireServing refuses any other, and the enrolled record
// is checked again here), and its region and role come from enrollment,
// never from the request.
func (s *Service) nodeBundle(w http.ResponseWriter, r *http.Request) {
	p, t, ok := s.tenantWith(w, r, auth.RequireServing, []auth.Role{auth.RoleNode})
	if !ok {
		return
	}
	n, err := s.cfg.Nodes.Node(r.Context(), p.Subject)
	if err != nil || n.Tenant != p.Tenant || !(auth.Principal{Tenant: n.Tenant, Serves: n.Serves}).CanServe(t.Name) {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "not an enrolled node of this tenant", nil)
		return
	}
	rel, err := s.cfg.Store.Current(r.Context(), t.Name, n.Region, n.Role)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	writeBundle(w, r, rel)
}

func (s *Service) keys(w http.ResponseWriter, _ *http.Request) {
	type key struct {
		KeyID string `json:"kid"`
		PEM   string `json:"public_key_pem"`
	}
	out := []key{}
	for _, pub := range s.cfg.Ring.PublicKeys() {
		pemBytes, err := keys.MarshalPublicPEM(pub)
		if err != nil {
			httpapi.Error(w, http.StatusInternalServerError, "internal", "internal error", nil)
			return
		}
		out = append(out, key{KeyID: keys.KeyID(pub), PEM: string(pemBytes)})
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"current": s.cfg.Ring.Current().ID, "keys": out})
}

// tenantLocation finds the metadata.tenant line for the error report; the
// policy model keeps no position for it.
func tenantLocation(file, src string) policies.Location {
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if strings.HasPrefix(trimmed, "tenant:") {
			return policies.Location{File: file, Line: i + 1, Col: len(line) - len(trimmed) + 1}
		}
	}
	return policies.Location{File: file, Line: 1, Col: 1}
}
