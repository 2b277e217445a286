//go:build deps

// Package deps pins the modules that host-side packages (control plane, edge,
// e2e, bench) are built on, so that go.mod carries them at the versions
// ARCHITECTURE.md names before every importer exists. It is never built: the
// "deps" tag is set nowhere. Entries may go once a real importer exists.
package deps

import (
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/modelcontextprotocol/go-sdk/mcp"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/sigstore/sigstore/pkg/signature"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	_ "google.golang.org/grpc"
	_ "istio.io/api/extensions/v1alpha1"
	_ "modernc.org/sqlite"
)
