package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/prometheus/client_golang/prometheus"
)

// NodeKeys returns an enrolled node's tenant and registered Ed25519 key
// (the nodes store implements it).
type NodeKeys interface {
	NodeKey(ctx context.Context, nodeID string) (tenant string, pub ed25519.PublicKey, err error)
}

// SpanSink receives every newly stored event after its batch committed
// (OpenTelemetry export). It must not block for long.
type SpanSink interface {
	RecordEvents(ctx context.Context, recs []Record)
}

// Config configures a Service.
type Config struct {
	Store *Store
	Nodes NodeKeys
	// IsUnknownNode tells a NodeKeys "no such node" error from a failure
	// (e.g. errors.Is(err, nodes.ErrUnknownNode)). Required.
	IsUnknownNode func(error) bool
	// EvidenceKey signs checkpoints and evidence packs.
	EvidenceKey ed25519.PrivateKey
	Bundles     BundleSource   // optional
	Approvals   ApprovalSource // optional
	Spans       SpanSink       // optional
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
	// MaxBatchBytes bounds a batch body (default MaxBatchBytes).
	MaxBatchBytes int64
	// TempDir holds evidence packs while they are built ("" = system default).
	TempDir string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Validate reports every missing or invalid setting at once.
func (c Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("audit: Store is required"))
	}
	if c.Nodes == nil {
		errs = append(errs, errors.New("audit: Nodes is required"))
	}
	if c.IsUnknownNode == nil {
		errs = append(errs, errors.New("audit: IsUnknownNode is required"))
	}
	if len(c.EvidenceKey) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("audit: EvidenceKey must be an Ed25519 private key"))
	}
	if c.Registerer == nil {
		errs = append(errs, errors.New("audit: Registerer is required"))
	}
	if c.MaxBatchBytes < 0 {
		errs = append(errs, errors.New("audit: MaxBatchBytes is negative"))
	}
	return errors.Join(errs...)
}

// Service is the audit API.
type Service struct {
	cfg Config
	log *slog.Logger
	m   metrics
}

type metrics struct {
	batches    *prometheus.CounterVec
	events     prometheus.Counter
	duplicates prometheus.Counter
	incidents  *prometheus.CounterVec
	ingestSec  prometheus.Histogram
}

// New returns the service for a valid config.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = MaxBatchBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log}
	s.m = metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aegis_audit_batches_total", Help: "Audit batches received, by result (ok or the refusal code)."}, []string{"result"}),
		events:  prometheus.NewCounter(prometheus.CounterOpts{Name: "aegis_audit_events_ingested_total", Help: "Audit events stored."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "aegis_audit_duplicate_events_total",
			Help: "Audit events received again at a position already stored with the same hash (resends)."}),
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aegis_audit_integrity_incidents_total", Help: "Integrity incidents recorded, by kind."}, []string{"kind"}),
		ingestSec: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aegis_audit_ingest_seconds", Help: "Time to verify and store one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	for _, c := range []prometheus.Collector{s.m.batches, s.m.events, s.m.duplicates, s.m.incidents, s.m.ingestSec} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("audit metrics: %w", err)
		}
	}
	return s, nil
}

// Register adds the audit routes to mux.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/audit/batches", s.handleBatch)
	mux.HandleFunc("GET /v1/audit/events", s.handleEvents)
	mux.HandleFunc("GET /v1/audit/incidents", s.handleIncidents)
	mux.HandleFunc("GET /v1/audit/checkpoints", s.handleCheckpoints)
	mux.HandleFunc("GET /v1/audit/export", s.handleExport)
	mux.HandleFunc("GET /v1/audit/evidence-key", s.handleEvidenceKey)
}

// handleEvidenceKey returns the public half of the evidence key, for
// "aegis audit verify --key". Auditors should still compare its key id
// with one obtained out of band: a compromised control plane could serve
// its own key.
func (s *Service) handleEvidenceKey(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	switch {
	case !ok:
		httpapi.Error(w, http.StatusUnauthorized, "unauthenticated", "credentials are required", nil)
		return
	case !p.Has(auth.RoleAuditor) && !p.Has(auth.RoleAdmin):
		httpapi.Error(w, http.StatusForbidden, "forbidden", "the auditor or admin role is required", nil)
		return
	}
	pub := s.cfg.EvidenceKey.Public().(ed25519.PublicKey)
	pemKey, err := keys.MarshalPublicPEM(pub)
	if err != nil {
		s.internal(w, "evidence key", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]string{"key_id": keys.KeyID(pub), "public_key_pem": string(pemKey)})
}

// RunCheckpoints signs checkpoints of moved chains every interval until ctx
// ends.
func (s *Service) RunCheckpoints(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("audit checkpoints: interval %s: want more than 0", every)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n, err := s.cfg.Store.CheckpointAll(ctx, s.cfg.EvidenceKey, s.cfg.Now()); err != nil {
				s.log.Error("audit checkpoints", "error", err)
			} else if n > 0 {
				s.log.Debug("audit checkpoints signed", "chains", n)
			}
		}
	}
}

type conflictBody struct {
	Error       string `json:"error"`
	Message     string `json:"message"`
	ExpectedSeq int64  `json:"expected_seq"`
}

func (s *Service) handleBatch(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := r.Context()
	p, ok := auth.FromContext(ctx)
	if !ok {
		httpapi.Error(w, http.StatusUnauthorized, "unauthenticated", "a node credential is required", nil)
		return
	}
	if !p.Has(auth.RoleNode) {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "only enrolled nodes send audit batches", nil)
		return
	}
	fb, err := readBatch(r, s.cfg.MaxBatchBytes)
	if err != nil {
		s.m.batches.WithLabelValues("bad_request").Inc()
		httpapi.WriteDecodeError(w, err)
		return
	}
	b := fb.Batch
	// The node and tenant come from the credential; the body must agree.
	if b.NodeID != p.Subject || b.Tenant != p.Tenant {
		s.m.batches.WithLabelValues("forbidden").Inc()
		httpapi.Error(w, http.StatusForbidden, "forbidden", "node_id and tenant must be the caller's own", nil)
		return
	}
	in := Incident{Tenant: b.Tenant, NodeID: b.NodeID, ChainID: b.ChainID, SeqFirst: b.SeqFirst, SeqLast: b.SeqLast}
	tenant, pub, err := s.cfg.Nodes.NodeKey(ctx, b.NodeID)
	switch {
	case err != nil && s.cfg.IsUnknownNode(err):
		in.Kind, in.Detail = CodeUnknownNode, "batch from a node with no registered key"
		s.incident(ctx, in)
		s.m.batches.WithLabelValues(CodeUnknownNode).Inc()
		httpapi.Error(w, http.StatusUnauthorized, CodeUnknownNode, "the node has no registered key", nil)
		return
	case err != nil:
		s.internal(w, "node key", err)
		return
	case tenant != p.Tenant:
		s.m.batches.WithLabelValues("forbidden").Inc()
		httpapi.Error(w, http.StatusForbidden, "forbidden", "the node is enrolled in another tenant", nil)
		return
	}
	prep, err := prepare(b, fb.canon, fb.ends, pub, p.Serves)
	if err != nil {
		var be *BatchError
		if !errors.As(err, &be) {
			s.internal(w, "batch", err)
			return
		}
		s.m.batches.WithLabelValues(be.Kind).Inc()
		if be.Incident {
			in.Kind, in.Detail = be.Kind, be.Msg
			head, _, herr := s.cfg.Store.Head(ctx, b.NodeID, b.ChainID)
			if herr != nil {
				s.internal(w, "chain head", herr)
				return
			}
			in.ExpectedSeq = head + 1
			s.incident(ctx, in)
			if be.Kind == CodeTenantNotServed {
				httpapi.Error(w, http.StatusForbidden, be.Kind, be.Msg, nil)
				return
			}
			if be.Kind == CodeBadSignature || be.Kind == CodeHashMismatch {
				httpapi.Error(w, http.StatusUnauthorized, be.Kind, be.Msg, nil)
				return
			}
			httpapi.JSON(w, http.StatusConflict, conflictBody{Error: be.Kind, Message: be.Msg, ExpectedSeq: head + 1})
			return
		}
		httpapi.Error(w, http.StatusBadRequest, be.Kind, be.Msg, nil)
		return
	}
	res, err := s.cfg.Store.Ingest(ctx, prep, s.cfg.Now())
	if err != nil {
		var ce *ChainError
		if !errors.As(err, &ce) {
			s.internal(w, "ingest", err)
			return
		}
		in.Kind, in.Detail, in.ExpectedSeq = ce.Kind, ce.Msg, ce.ExpectedSeq
		s.incident(ctx, in)
		s.m.batches.WithLabelValues(ce.Kind).Inc()
		httpapi.JSON(w, http.StatusConflict, conflictBody{Error: ce.Kind, Message: ce.Msg, ExpectedSeq: ce.ExpectedSeq})
		return
	}
	if res.Accepted == 0 && res.Duplicates > 0 {
		// A whole batch seen before: harmless for the chain and answered as
		// duplicates (a producer whose reply was lost must not be stuck),
		// but recorded, since an attacker replaying captured batches looks
		// the same.
		in.Kind, in.ExpectedSeq = CodeReplay, res.HeadSeq+1
		in.Detail = fmt.Sprintf("all %d events already stored; answered as duplicates", res.Duplicates)
		s.incident(ctx, in)
	}
	s.m.batches.WithLabelValues("ok").Inc()
	s.m.events.Add(float64(res.Accepted))
	s.m.duplicates.Add(float64(res.Duplicates))
	s.m.ingestSec.Observe(time.Since(start).Seconds())
	if s.cfg.Spans != nil && len(res.Stored) > 0 {
		s.cfg.Spans.RecordEvents(ctx, res.Stored)
	}
	httpapi.JSON(w, http.StatusOK, res)
}

// readBatch reads a batch body: on the fast path with its events already
// canonical, else through encoding/json with Decode's rules and errors.
func readBatch(r *http.Request, maxBytes int64) (*fastBatch, error) {
	body, err := httpapi.ReadBody(r, maxBytes)
	if err != nil {
		return nil, err
	}
	if fb, ok := decodeBatchFast(body); ok {
		return fb, nil
	}
	fb := &fastBatch{}
	if err := httpapi.DecodeBody(body, &fb.Batch); err != nil {
		return nil, err
	}
	return fb, nil
}

// incident records in; failing to record it is logged, never hidden.
func (s *Service) incident(ctx context.Context, in Incident) {
	s.m.incidents.WithLabelValues(in.Kind).Inc()
	s.log.Warn("audit integrity incident", "kind", in.Kind, "tenant", in.Tenant, "node_id", in.NodeID, "chain_id", in.ChainID,
		"seq_first", in.SeqFirst, "seq_last", in.SeqLast, "expected_seq", in.ExpectedSeq)
	if err := s.cfg.Store.RecordIncident(context.WithoutCancel(ctx), in, s.cfg.Now()); err != nil {
		s.log.Error("audit: recording an integrity incident failed", "kind", in.Kind, "error", err)
	}
}

func (s *Service) internal(w http.ResponseWriter, what string, err error) {
	s.log.Error("audit: "+what, "error", err)
	httpapi.Error(w, http.StatusInternalServerError, "internal", what+" failed", nil)
}

// reader authorizes an auditor or admin and resolves the tenant asked for.
func reader(w http.ResponseWriter, r *http.Request) (string, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		httpapi.Error(w, http.StatusUnauthorized, "unauthenticated", "credentials are required", nil)
		return "", false
	}
	if !p.Has(auth.RoleAuditor) && !p.Has(auth.RoleAdmin) {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "the auditor or admin role is required", nil)
		return "", false
	}
	tenant := r.URL.Query().Get("tenant")
	if tenant == "" {
		tenant = p.Tenant
	}
	if tenant == "" {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "tenant is required", nil)
		return "", false
	}
	if !p.CanAccessTenant(tenant) {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "no access to this tenant", nil)
		return "", false
	}
	return tenant, true
}

func parseTime(q, name string) (time.Time, error) {
	if q == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, q)
	if err != nil {
		return t, fmt.Errorf("%s: want RFC 3339", name)
	}
	return t, nil
}

func parseWindow(r *http.Request) (from, to time.Time, err error) {
	q := r.URL.Query()
	if from, err = parseTime(q.Get("from"), "from"); err != nil {
		return
	}
	if to, err = parseTime(q.Get("to"), "to"); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		err = errors.New("to is before from")
	}
	return
}

func parseLimit(s string, def, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("limit: 1 to %d", max)
	}
	return n, nil
}

func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	tenant, ok := reader(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	from, to, err := parseWindow(r)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	query := Query{Tenant: tenant, Agent: q.Get("agent"), Tool: q.Get("tool"), Action: q.Get("action"), DecisionID: q.Get("decision_id"), From: from, To: to}
	if v := q.Get("policy_revision"); v != "" {
		if query.PolicyRevision, err = strconv.ParseInt(v, 10, 64); err != nil || query.PolicyRevision < 1 {
			httpapi.Error(w, http.StatusBadRequest, "bad_request", "policy_revision: a positive integer", nil)
			return
		}
	}
	if query.After, err = ParseCursor(q.Get("cursor")); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	switch q.Get("format") {
	case "jsonl":
		s.streamJSONL(w, r, query)
		return
	case "", "json":
	default:
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "format: json or jsonl", nil)
		return
	}
	if query.Limit, err = parseLimit(q.Get("limit"), 100, 1000); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	var (
		out  = []byte(`{"events":[`)
		n    int
		last Cursor
	)
	err = s.cfg.Store.Events(r.Context(), query, func(body []byte, c Cursor) error {
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, body...)
		n++
		last = c
		return nil
	})
	if err != nil {
		s.internal(w, "query", err)
		return
	}
	next := ""
	if n == query.Limit {
		next = last.String()
	}
	out = append(out, `],"next_cursor":"`...)
	out = append(out, next...)
	out = append(out, "\"}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(out)
}

// streamJSONL writes every matching event as one JSON line (SIEM export),
// reading the store a page at a time.
func (s *Service) streamJSONL(w http.ResponseWriter, r *http.Request, q Query) {
	const page = 1000
	q.Limit = page
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	wrote := false
	for {
		n := 0
		var buf []byte
		err := s.cfg.Store.Events(r.Context(), q, func(body []byte, c Cursor) error {
			buf = append(buf, body...)
			buf = append(buf, '\n')
			n++
			q.After = c
			return nil
		})
		if err != nil {
			if !wrote {
				s.internal(w, "query", err)
				return
			}
			// Headers are gone: abort the connection so the reader sees a
			// failed transfer, never a clean but short stream.
			s.log.Error("audit: jsonl export", "error", err)
			panic(http.ErrAbortHandler)
		}
		if _, err := w.Write(buf); err != nil {
			return
		}
		wrote = true
		if n < page {
			return
		}
	}
}

func (s *Service) handleIncidents(w http.ResponseWriter, r *http.Request) {
	tenant, ok := reader(w, r)
	if !ok {
		return
	}
	from, to, err := parseWindow(r)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	limit, err := parseLimit(r.URL.Query().Get("limit"), 1000, 10000)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	ins, err := s.cfg.Store.Incidents(r.Context(), tenant, from, to, limit)
	if err != nil {
		s.internal(w, "incidents", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"incidents": ins})
}

func (s *Service) handleCheckpoints(w http.ResponseWriter, r *http.Request) {
	tenant, ok := reader(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	from, to, err := parseWindow(r)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	f := CheckpointFilter{Tenant: tenant, NodeID: q.Get("node_id"), ChainID: q.Get("chain_id"), From: from, To: to}
	if (f.NodeID == "") != (f.ChainID == "") {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "node_id and chain_id go together", nil)
		return
	}
	if f.Limit, err = parseLimit(q.Get("limit"), 10000, 100000); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	cps, err := s.cfg.Store.Checkpoints(r.Context(), f)
	if err != nil {
		s.internal(w, "checkpoints", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"checkpoints": cps})
}

func (s *Service) handleExport(w http.ResponseWriter, r *http.Request) {
	tenant, ok := reader(w, r)
	if !ok {
		return
	}
	from, to, err := parseWindow(r)
	if err == nil && (from.IsZero() || to.IsZero()) {
		err = errors.New("from and to are required")
	}
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	// Build the pack in memory-bounded form first (events spool to disk),
	// then stream it; an error before the first byte is still a JSON reply.
	pw := &lazyWriter{w: w, header: func() {
		w.Header().Set("Content-Type", "application/gzip")
		w.Header().Set("Content-Disposition", `attachment; filename="evidence-`+safeFile(tenant)+`.tar.gz"`)
		w.Header().Set("Cache-Control", "no-store")
	}}
	err = s.cfg.Store.Export(r.Context(), pw, tenant, from, to, ExportOptions{
		Key: s.cfg.EvidenceKey, Bundles: s.cfg.Bundles, Approvals: s.cfg.Approvals, TempDir: s.cfg.TempDir, Now: s.cfg.Now(),
	})
	if err != nil {
		if !pw.started {
			s.internal(w, "export", err)
			return
		}
		// Part of the pack is out: abort the connection so the client
		// sees a failed download rather than a clean end.
		s.log.Error("audit: export cut short", "error", err)
		panic(http.ErrAbortHandler)
	}
}

// lazyWriter sets the reply headers on the first write.
type lazyWriter struct {
	w       http.ResponseWriter
	header  func()
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.header()
	}
	return l.w.Write(p)
}

func safeFile(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
