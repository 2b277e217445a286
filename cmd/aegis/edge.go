package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/aegis-mesh/aegis/edge"
)

// runEdge runs the edge data plane until ctx ends (SIGINT/SIGTERM).
func runEdge(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("edge", "", `
Run the edge data plane: an HTTP proxy that checks every request with the
Aegis filter (the same .wasm Envoy runs), keeps verified bundles on disk
for offline operation, and writes audit events to a local WAL before
acknowledging them, shipping them to the control plane when it is
reachable.

Quick start:
  aegis edge --listen 127.0.0.1:8080 --upstream http://127.0.0.1:9000 \
    --bundle acme.runtime.bundle --trust-key bundle.pub --jwks jwks.json \
    --region eu-west-1

Everything else goes in --config FILE (YAML, strict); flags override it.
With OTEL_EXPORTER_OTLP_ENDPOINT set, a span per request is exported over
OTLP/HTTP. See docs/edge.md.`, io)
	configPath := fs.String("config", "", "YAML configuration file")
	listen := fs.String("listen", "", "proxy listen address (host:port)")
	admin := fs.String("admin", "", "admin listen address for /metrics, /healthz, /readyz")
	upstream := fs.String("upstream", "", "default upstream URL (gateway mode)")
	var bundles, egress, tenants stringList
	fs.Var(&bundles, "bundle", "runtime bundle file; repeatable (one per tenant)")
	trustKey := fs.String("trust-key", "", "PKIX PEM public key that verifies bundles")
	stateKey := fs.String("state-key", "", "PKIX PEM public key that verifies live state")
	jwks := fs.String("jwks", "", "JWKS file agent tokens are verified against")
	region := fs.String("region", "", "this node's region")
	nodeID := fs.String("node-id", "", "this node's id (default: the host name)")
	nodeKey := fs.String("node-key", "", "PKCS#8 PEM key signing audit batches (default: generated in the state directory)")
	filter := fs.String("filter", "", `filter module (default: aegis-filter.wasm next to the binary, then build/aegis-filter.wasm; "none" disables checks, for benchmarks)`)
	stateDir := fs.String("state-dir", "", "directory for the bundle cache, node key and WAL (default aegis-edge-state)")
	auditDir := fs.String("audit-dir", "", "audit WAL directory (default <state-dir>/audit)")
	controlPlane := fs.String("control-plane", "", "control plane base URL (audit shipping, approvals, bundle fetch)")
	fs.Var(&tenants, "tenant", "tenant whose bundle is fetched from the control plane; repeatable")
	forward := fs.Bool("forward", false, "also act as a forward proxy (absolute-form requests and CONNECT)")
	fs.Var(&egress, "egress", "host the forward proxy may reach (name or *.domain); repeatable")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintf(io.err, "aegis edge: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	var cfg edge.Config
	if *configPath != "" {
		data, err := os.ReadFile(*configPath)
		if err != nil {
			fmt.Fprintf(io.err, "aegis edge: %v\n", err)
			return exitUsage
		}
		if cfg, err = edge.ParseConfig(data); err != nil {
			fmt.Fprintf(io.err, "aegis edge: %s: %v\n", *configPath, err)
			return exitUsage
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	str := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	str("listen", &cfg.Listen, *listen)
	str("admin", &cfg.Admin, *admin)
	str("upstream", &cfg.Upstream, *upstream)
	str("trust-key", &cfg.Trust.BundleKey, *trustKey)
	str("state-key", &cfg.Trust.StateKey, *stateKey)
	str("jwks", &cfg.JWKS, *jwks)
	str("region", &cfg.Node.Region, *region)
	str("node-id", &cfg.Node.ID, *nodeID)
	str("node-key", &cfg.Node.SigningKey, *nodeKey)
	str("filter", &cfg.Filter.Wasm, *filter)
	str("state-dir", &cfg.StateDir, *stateDir)
	str("audit-dir", &cfg.Audit.Dir, *auditDir)
	str("control-plane", &cfg.ControlPlane.URL, *controlPlane)
	str("log-level", &cfg.LogLevel, *logLevel)
	if set["forward"] {
		cfg.Forward = *forward
	}
	cfg.Bundles = append(cfg.Bundles, bundles...)
	cfg.Egress.Allow = append(cfg.Egress.Allow, egress...)
	cfg.ControlPlane.Tenants = append(cfg.ControlPlane.Tenants, tenants...)
	if cfg.Node.ID == "" {
		if h, err := os.Hostname(); err == nil {
			cfg.Node.ID = strings.ReplaceAll(h, "/", "-")
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(io.err, "aegis edge: %s\n", strings.ReplaceAll(err.Error(), "\n", "\naegis edge: "))
		return exitUsage
	}
	return serveEdge(ctx, cfg, io)
}

func serveEdge(ctx context.Context, cfg edge.Config, io stdio) int {
	var deps edge.Deps
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		// Spans go to the collector the standard OTLP variables name
		// (endpoint, headers, protocol http/protobuf).
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			fmt.Fprintf(io.err, "aegis edge: OTLP exporter: %v\n", err)
			return exitFailure
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "aegis-edge"), attribute.String("service.instance.id", cfg.Node.ID))))
		defer tp.Shutdown(context.Background())
		deps.TracerProvider = tp
	}
	srv, err := edge.NewServer(ctx, cfg, deps)
	if err != nil {
		fmt.Fprintf(io.err, "aegis edge: %v\n", err)
		return exitFailure
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Shutdown(context.Background())
		fmt.Fprintf(io.err, "aegis edge: %v\n", err)
		return exitFailure
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(l) }()
	adminAddr := ""
	if cfg.Admin != "" {
		al, err := net.Listen("tcp", cfg.Admin)
		if err != nil {
			l.Close()
			srv.Shutdown(context.Background())
			fmt.Fprintf(io.err, "aegis edge: admin: %v\n", err)
			return exitFailure
		}
		adminAddr = al.Addr().String()
		go func() { errc <- srv.ServeAdmin(al) }()
	}
	fmt.Fprintf(io.out, "aegis edge: listening on %s", l.Addr())
	if adminAddr != "" {
		fmt.Fprintf(io.out, " (admin %s)", adminAddr)
	}
	fmt.Fprintln(io.out)
	if ready, reason := srv.Ready(); !ready {
		fmt.Fprintf(io.err, "aegis edge: not ready: %s\n", reason)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	grace := cfg.Timeouts.Shutdown
	if grace <= 0 {
		grace = 10 * time.Second
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(io.err, "aegis edge: shutdown: %v\n", err)
	}
	if serveErr != nil {
		fmt.Fprintf(io.err, "aegis edge: %v\n", serveErr)
		return exitFailure
	}
	return exitOK
}
