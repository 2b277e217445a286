// Package oteltrace turns ingested audit events into OpenTelemetry spans
// and exports them over OTLP (gRPC or HTTP), so a decision shows up in the
// agent's own trace: the event's trace_id/span_id (from the request's
// traceparent) become the span's parent.
package oteltrace

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/audit"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Protocols.
const (
	GRPC = "grpc"
	HTTP = "http"
)

// Config says where spans go.
type Config struct {
	Protocol string // grpc or http
	Endpoint string // host:port of the collector
	// URLPath is the HTTP path (default /v1/traces); HTTP only.
	URLPath string
	// Insecure sends without TLS (a collector on loopback or a sidecar).
	Insecure bool
	// Headers are sent with every export (e.g. a collector API key).
	Headers map[string]string
	// ServiceName is the resource's service.name (default aegis-controlplane).
	ServiceName string
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Protocol != GRPC && c.Protocol != HTTP {
		errs = append(errs, fmt.Errorf("oteltrace: protocol %q: want grpc or http", c.Protocol))
	}
	if c.Endpoint == "" {
		errs = append(errs, errors.New("oteltrace: endpoint is required"))
	}
	if c.URLPath != "" && c.Protocol != HTTP {
		errs = append(errs, errors.New("oteltrace: url path is for the http protocol only"))
	}
	return errors.Join(errs...)
}

// Exporter records decision spans; it implements audit.SpanSink.
type Exporter struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

var _ audit.SpanSink = (*Exporter)(nil)

// New starts an exporter. Spans are batched and sent in the background;
// Shutdown flushes them.
func New(ctx context.Context, cfg Config) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch cfg.Protocol {
	case GRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithHeaders(cfg.Headers)}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case HTTP:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.Endpoint), otlptracehttp.WithHeaders(cfg.Headers)}
		if cfg.URLPath != "" {
			opts = append(opts, otlptracehttp.WithURLPath(cfg.URLPath))
		}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("oteltrace: %s exporter: %w", cfg.Protocol, err)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "aegis-controlplane"
	}
	tp := sdktrace.NewTracerProvider(
		// A batch of 10,000 events arrives at once; the SDK's default
		// queue (2,048) would drop most of its spans.
		sdktrace.WithBatcher(exp, sdktrace.WithMaxQueueSize(1<<16), sdktrace.WithMaxExportBatchSize(4096)),
		// Every decision is evidence: sample all of them, whatever the
		// parent's sampling flag says.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))),
	)
	return &Exporter{tp: tp, tracer: tp.Tracer("github.com/aegis-mesh/aegis/controlplane/audit")}, nil
}

// RecordEvents makes one span per event: named "aegis.decision", starting
// at the event's time and lasting its decision_ns, child of the agent's
// span when the event carries a valid trace_id and span_id.
func (e *Exporter) RecordEvents(ctx context.Context, recs []audit.Record) {
	ctx = context.WithoutCancel(ctx)
	for i := range recs {
		r := &recs[i]
		start := time.UnixMicro(r.TimeUS)
		if t, err := time.Parse(time.RFC3339Nano, r.Time); err == nil {
			start = t
		}
		pctx := ctx
		if sc, ok := parent(r.TraceID, r.SpanID); ok {
			pctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
		_, span := e.tracer.Start(pctx, "aegis.decision", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(Attributes(r)...))
		span.End(trace.WithTimestamp(start.Add(time.Duration(r.DecisionNS))))
	}
}

// Attributes are the aegis.* attributes of an event's span.
func Attributes(r *audit.Record) []attribute.KeyValue {
	kv := []attribute.KeyValue{
		attribute.String("aegis.decision_id", r.ID),
		attribute.String("aegis.tenant", r.Tenant),
		attribute.String("aegis.node_id", r.NodeID),
		attribute.String("aegis.audit_chain_id", r.ChainID),
		attribute.Int64("aegis.audit_seq", r.Seq),
		attribute.String("aegis.agent_id", r.Agent),
		attribute.StringSlice("aegis.agent_chain", r.Chain),
		attribute.String("aegis.tool", r.Tool),
		attribute.String("aegis.action", r.Action),
		attribute.Int64("aegis.policy_version", r.PolicyRevision),
		attribute.StringSlice("aegis.rule_ids", r.RuleIDs),
		attribute.StringSlice("aegis.reasons", r.Reasons),
		attribute.Int64("aegis.decision_ns", r.DecisionNS),
		attribute.String("aegis.input_digest", r.InputDigest),
	}
	if r.ShadowAction != "" {
		kv = append(kv, attribute.String("aegis.shadow_action", r.ShadowAction))
	}
	if r.Status != 0 {
		kv = append(kv, attribute.Int("aegis.status", r.Status))
	}
	if r.ApprovalID != "" {
		kv = append(kv, attribute.String("aegis.approval_id", r.ApprovalID))
	}
	if r.OverrideJTI != "" {
		kv = append(kv, attribute.String("aegis.override_jti", r.OverrideJTI))
	}
	if r.CostMicroUSD != 0 {
		kv = append(kv, attribute.Float64("aegis.cost_usd", float64(r.CostMicroUSD)/1e6))
	}
	return kv
}

// parent reads W3C trace and span ids (lower-case hex, not all zero).
func parent(traceID, spanID string) (trace.SpanContext, bool) {
	var tid trace.TraceID
	var sid trace.SpanID
	if len(traceID) != 32 || len(spanID) != 16 {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(tid[:], []byte(traceID)); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(sid[:], []byte(spanID)); err != nil {
		return trace.SpanContext{}, false
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return sc, sc.IsValid()
}

// ForceFlush exports every span recorded so far.
func (e *Exporter) ForceFlush(ctx context.Context) error { return e.tp.ForceFlush(ctx) }

// Shutdown flushes and stops the exporter.
func (e *Exporter) Shutdown(ctx context.Context) error { return e.tp.Shutdown(ctx) }
