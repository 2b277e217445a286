package server

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
	"github.com/aegis-mesh/aegis/controlplane/livestate"
	"github.com/aegis-mesh/aegis/controlplane/nodes"
	"github.com/aegis-mesh/aegis/controlplane/policy"
)

func (s *Server) buildHTTP() error {
	st := s.settings
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))

	(&auth.Service{Store: s.Auth, Issuer: s.Issuer, Logger: s.log}).Register(mux)
	(&nodes.Service{Store: s.Nodes, Tenants: s.Auth, CA: s.CA, Issuer: s.Issuer, Tokens: s.Auth, Logger: s.log,
		CertTTL: 90 * 24 * time.Hour, TokenTTL: 90 * 24 * time.Hour}).Register(mux)
	ps, err := policy.NewService(policy.Config{Store: s.Policy, Tenants: s.Auth, Nodes: s.Nodes, Notifier: s.Notifier, Ring: s.BundleKeys,
		BundleValidity: st.BundleValidity, MaxPolicyBytes: st.MaxPolicyBytes, Registerer: s.registry, Logger: s.log})
	if err != nil {
		return err
	}
	ps.Register(mux)
	(&livestate.Service{Builder: s.State, Tenants: s.Auth, Logger: s.log}).Register(mux)
	if s.XDS != nil {
		s.XDS.Register(mux)
	}
	for _, svc := range s.cfg.Services {
		svc.Register(mux)
	}
	s.mux = mux

	mw := &auth.Middleware{Issuer: s.Issuer, Store: s.Auth, Extra: s.cfg.Authenticators, TLS: s.Nodes.Identity, NodeServes: s.Nodes.Serves, Logger: s.log}
	obs, err := newObserver(s.registry, s.log, mux)
	if err != nil {
		return err
	}

	s.handler = obs.wrap(mw.Wrap(mux))
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	// The newest tables of each built-in component must be queryable:
	// that proves both the connection and the migrations.
	for _, q := range []string{`SELECT count(*) FROM tenants`, `SELECT count(*) FROM nodes`, `SELECT count(*) FROM policy_heads`, `SELECT count(*) FROM live_state`} {
		var n int64
		if err := s.DB.QueryRowContext(ctx, q).Scan(&n); err != nil {
			s.log.Warn("not ready", "error", err.Error())
			httpapi.Error(w, http.StatusServiceUnavailable, "not_ready", "database unreachable or not migrated", nil)
			return
		}
	}
	httpapi.JSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// observer logs each request and counts it by route pattern, so that
// metrics stay bounded whatever paths clients send.
type observer struct {
	log      *slog.Logger
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newObserver(reg prometheus.Registerer, log *slog.Logger, mux *http.ServeMux) (*observer, error) {
	o := &observer{log: log, mux: mux,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aegis_cp_http_requests_total", Help: "API requests by route and status."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aegis_cp_http_request_seconds", Help: "API request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{o.requests, o.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (o *observer) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, route := o.mux.Handler(r)
		if route == "" {
			route = "unmatched"
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		d := time.Since(start)
		o.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		o.duration.WithLabelValues(route).Observe(d.Seconds())
		// Paths and status only: never headers or bodies, which carry
		// credentials and policy content.
		level := slog.LevelInfo
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
			level = slog.LevelDebug
		}
		o.log.Log(r.Context(), level, "request", "method", r.Method, "route", route, "path", r.URL.Path, "status", sw.code,
			"bytes", sw.bytes, "duration_ms", float64(d.Microseconds())/1000)
	})
}
