package edge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/aegis-mesh/aegis/edge/proxy"
	"github.com/aegis-mesh/aegis/edge/wasmhost"
)

// decisionState is the part of the filter's "aegis.decision" filter state
// the edge reads for spans, metrics and logs.
type decisionState struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Tenant string `json:"tenant"`
	Agent  string `json:"agent"`
	Tool   string `json:"tool"`
	Policy string `json:"policy_version"`
}

type metrics struct {
	s         *Server
	framing   *prometheus.CounterVec
	requests  *prometheus.CounterVec
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		s: s,
		framing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_edge_framing_rejected_total", Help: "Connections ended by the framing guard, by violation code.",
		}, []string{"code"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_edge_requests_total", Help: "Requests answered by the edge, by status class.",
		}, []string{"code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_edge_decisions_total", Help: "Filter decisions seen by the edge, by action (none: no decision, e.g. unauthorized).",
		}, []string{"action"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "aegis_edge_request_duration_seconds", Help: "Time from request head to the end of the response, upstream included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"action"}),
	}
}

func (m *metrics) register(reg *prometheus.Registry) error {
	s := m.s
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		m.framing, m.requests, m.decisions, m.latency,
		gauge("aegis_edge_wal_depth", "Audit events in the WAL not yet acknowledged by the control plane.", func() float64 { return float64(s.wal.Depth()) }),
		gauge("aegis_edge_wal_last_seq", "Seq of the last audit event in the WAL.", func() float64 { seq, _ := s.wal.Head(); return float64(seq) }),
		counter("aegis_edge_bundles_refused_total", "Bundles refused (signature, validity, tenant, downgrade, damaged cache).", func() float64 { return float64(s.store.Refused()) }),
		counter("aegis_edge_tunnels_total", "CONNECT tunnels opened.", func() float64 { return float64(s.proxy.Tunnels()) }),
		counter("aegis_edge_egress_refused_total", "Forward-proxy and CONNECT requests refused by the egress rules.", func() float64 { return float64(s.proxy.Refusals()) }),
		&bundleCollector{s: s, desc: prometheus.NewDesc("aegis_edge_bundle_revision", "Revision of the verified bundle in force, per tenant.", []string{"tenant"}, nil)},
	}
	if s.shipper != nil {
		cs = append(cs,
			counter("aegis_edge_audit_shipped_total", "Audit events acknowledged by the control plane since start.", func() float64 { return float64(s.shipper.Shipped()) }),
			counter("aegis_edge_audit_ship_failures_total", "Failed audit shipping attempts since start.", func() float64 { return float64(s.shipper.Failures()) }))
	}
	if s.pool != nil {
		cs = append(cs, &poolCollector{pool: s.pool})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

type bundleCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (c *bundleCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *bundleCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.s.store.Tenants() {
		if e, ok := c.s.store.Get(t); ok {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(e.Manifest.Revision), t)
		}
	}
}

// poolCollector exports the VM pool's state and the filter's own metrics
// (proxy_define_metric) under aegis_filter_*.
type poolCollector struct{ pool *wasmhost.Pool }

var metricNameRE = regexp.MustCompile(`[^a-zA-Z0-9_]`)

var poolDescs = struct {
	size, instances, busy, memory, created, replaced, traps, timeouts, rejected *prometheus.Desc
}{
	prometheus.NewDesc("aegis_edge_vm_pool_size", "Configured filter VM instances.", nil, nil),
	prometheus.NewDesc("aegis_edge_vm_pool_instances", "Live filter VM instances.", nil, nil),
	prometheus.NewDesc("aegis_edge_vm_pool_busy", "Filter VM instances serving a request.", nil, nil),
	prometheus.NewDesc("aegis_edge_vm_memory_bytes", "Linear memory of all live filter VM instances.", nil, nil),
	prometheus.NewDesc("aegis_edge_vm_created_total", "Filter VM instances started.", nil, nil),
	prometheus.NewDesc("aegis_edge_vm_replaced_total", "Filter VM instances replaced after a trap or timeout.", nil, nil),
	prometheus.NewDesc("aegis_edge_vm_traps_total", "Filter traps (each failed its request closed).", nil, nil),
	prometheus.NewDesc("aegis_edge_vm_timeouts_total", "Requests that hit the filter request timeout.", nil, nil),
	prometheus.NewDesc("aegis_edge_vm_rejected_total", "Requests refused for want of a VM instance.", nil, nil),
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	// Filter metric names are known only at run time: unchecked collector.
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.pool.Metrics()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	k := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(poolDescs.size, float64(m.Pool.Size))
	g(poolDescs.instances, float64(m.Pool.Instances))
	g(poolDescs.busy, float64(m.Pool.Busy))
	var mem uint64
	for _, b := range m.Pool.Memory {
		mem += b
	}
	g(poolDescs.memory, float64(mem))
	k(poolDescs.created, float64(m.Pool.Created))
	k(poolDescs.replaced, float64(m.Pool.Replaced))
	k(poolDescs.traps, float64(m.Pool.Traps))
	k(poolDescs.timeouts, float64(m.Pool.Timeouts))
	k(poolDescs.rejected, float64(m.Pool.Rejected))
	for name, v := range m.Counters {
		d := prometheus.NewDesc("aegis_filter_"+metricNameRE.ReplaceAllString(strings.TrimPrefix(name, "aegis."), "_")+"_total", "Filter counter "+name+".", nil, nil)
		k(d, float64(v))
	}
	for name, v := range m.Gauges {
		d := prometheus.NewDesc("aegis_filter_"+metricNameRE.ReplaceAllString(strings.TrimPrefix(name, "aegis."), "_"), "Filter gauge "+name+".", nil, nil)
		g(d, float64(v))
	}
}

// statusWriter records the status for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var propagator = propagation.TraceContext{}

// observe wraps a request in a span (continuing the caller's traceparent,
// which it replaces with its own so that the filter's audit event and the
// upstream see this span), and records metrics and a debug log line with
// the decision the filter wrote to filter state.
func (s *Server) observe(next http.Handler) http.Handler {
	tracer := s.deps.TracerProvider.Tracer("github.com/aegis-mesh/aegis/edge")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, "aegis.edge "+r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("server.address", r.Host)))
		defer span.End()
		if span.SpanContext().IsValid() {
			propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
		}
		ctx, info := wasmhost.WithStreamInfo(ctx)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(ctx))

		status := sw.status
		if status == 0 {
			status = info.Status
		}
		var d decisionState
		if raw, ok := info.FilterState["aegis.decision"]; ok {
			if err := json.Unmarshal(raw, &d); err != nil {
				s.log.Warn("unreadable aegis.decision filter state", "err", err)
			}
		}
		action := d.Action
		if action == "" {
			action = "none"
		}
		elapsed := time.Since(start)
		s.metrics.requests.WithLabelValues(strconv.Itoa(status/100) + "xx").Inc()
		s.metrics.decisions.WithLabelValues(action).Inc()
		s.metrics.latency.WithLabelValues(action).Observe(elapsed.Seconds())
		span.SetAttributes(
			attribute.Int("http.response.status_code", status),
			attribute.String("aegis.agent_id", d.Agent),
			attribute.String("aegis.tool", d.Tool),
			attribute.String("aegis.action", action),
			attribute.String("aegis.policy_version", d.Policy),
			attribute.String("aegis.decision_id", d.ID),
			attribute.String("aegis.tenant", d.Tenant),
		)
		if info.Failure != "" {
			span.SetStatus(codes.Error, info.Failure)
		} else if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		// Debug only: one line per request is too much at load. No
		// headers, bodies or tokens are logged.
		s.log.Debug("request", "method", r.Method, "host", r.Host, "path", r.URL.Path, "status", status,
			"action", action, "tool", d.Tool, "agent", d.Agent, "decision_id", d.ID, "failure", info.Failure,
			"duration_us", elapsed.Microseconds())
	})
}

// countFraming counts the requests the framing guard synthesized.
func (s *Server) countFraming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := proxy.FramingViolation(r); v != nil {
			s.metrics.framing.WithLabelValues(v.Code).Inc()
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.deps.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, reason := s.Ready()
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"status":"not_ready","reason":%q}`+"\n", reason)
			return
		}
		fmt.Fprintln(w, `{"status":"ready"}`)
	})
	return mux
}

// Ready reports whether the edge can enforce: the audit WAL takes events,
// a filter is loaded (or was deliberately left out) and at least one
// tenant has a verified bundle.
func (s *Server) Ready() (bool, string) {
	if err := s.wal.Err(); err != nil {
		return false, "audit WAL: " + err.Error()
	}
	tenants := s.store.Tenants()
	if len(tenants) == 0 {
		return false, "no verified bundle: every request is refused (no_bundle)"
	}
	if s.pool != nil {
		// Every tenant the edge accepted must be in what the filter runs:
		// the hot swap that carries a new tenant may still be under way.
		var running []string
		if t := s.inFilter.Load(); t != nil {
			running = *t
		}
		for _, t := range tenants {
			if !slices.Contains(running, t) {
				return false, "tenant " + t + ": verified bundle not yet in the filter"
			}
		}
	}
	if s.pool != nil {
		m := s.pool.Metrics()
		if m.Pool.Instances == 0 {
			return false, "no filter instance is running"
		}
	}
	return true, strings.Join(tenants, ",")
}

// Flush implements http.Flusher for handlers that assert it (event streams
// must not wait in a buffer).
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}
