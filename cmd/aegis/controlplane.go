package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/aegis-mesh/aegis/controlplane/config"
	"github.com/aegis-mesh/aegis/controlplane/server"
	"github.com/aegis-mesh/aegis/controlplane/xds"
)

// runControlplane runs the control plane until ctx ends (SIGINT/SIGTERM),
// then drains and exits 0.
func runControlplane(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("controlplane", "", `
Run the control plane: the REST API (tenants, API tokens, node enrollment,
policy lifecycle, live state, and the services mounted beside them), the
xDS server for Envoy and edge nodes (mTLS), Prometheus /metrics, /healthz
and /readyz.

Storage is PostgreSQL (--database postgres://...) or, by default, an
embedded SQLite file in the data directory. At first start the data
directory gets a CA, signing keys and admin.token, the bootstrap admin
credential (written once; only its path is logged).

Quick start:
  aegis controlplane --data-dir ./cp
  curl --cacert ./cp/ca.pem -H "Authorization: Bearer $(cat ./cp/admin.token)" \
    https://127.0.0.1:8443/v1/tenants

Decision spans go to an OpenTelemetry collector with --otel-endpoint (or
the standard OTEL_EXPORTER_OTLP_ENDPOINT). Approval webhooks (Slack, Teams,
generic JSON, HMAC-signed) are configured in the config file only.

Everything can also go in --config FILE (YAML, strict); flags override it.
See docs/controlplane.md.`, io)
	configPath := fs.String("config", "", "YAML configuration file")
	listen := fs.String("listen", "", "REST API address (default 127.0.0.1:8443)")
	xdsListen := fs.String("xds-listen", "", "xDS gRPC address (default 127.0.0.1:18000; needs --filter-wasm)")
	database := fs.String("database", "", "postgres:// URL, or sqlite:PATH (default sqlite:<data-dir>/aegis.db)")
	dataDir := fs.String("data-dir", "", "directory for the CA, keys, admin.token and the embedded store (default aegis-data)")
	tlsCert := fs.String("tls-cert", "", "API server certificate (PEM); default: issued by the control plane's CA")
	tlsKey := fs.String("tls-key", "", "API server key (PEM)")
	plainHTTP := fs.Bool("plain-http", false, "serve the API without TLS (local testing only)")
	bundleKey := fs.String("bundle-signing-key", "", "Ed25519 PKCS#8 PEM key signing bundles (default <data-dir>/keys/bundle.key, generated)")
	stateKey := fs.String("state-signing-key", "", "Ed25519 PKCS#8 PEM key signing live state (default <data-dir>/keys/state.key, generated)")
	var trusted stringList
	fs.Var(&trusted, "trusted-bundle-key", "PKIX PEM public key of an earlier bundle key; repeatable")
	filterWasm := fs.String("filter-wasm", "", "filter module served to nodes; enables xDS")
	wasmURL := fs.String("wasm-url", "", "URL nodes fetch the filter from (default https://<listen>/v1/filter.wasm)")
	tokenKEK := fs.String("token-kek", "", "32-byte key sealing agent-token keys (default <data-dir>/keys/token.kek, generated)")
	evidenceKey := fs.String("evidence-key", "", "Ed25519 PKCS#8 PEM key signing audit checkpoints (default <data-dir>/keys/evidence.key, generated)")
	issuer := fs.String("issuer", "aegis", "iss claim of agent tokens")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	otelEndpoint := fs.String("otel-endpoint", "", "OTLP collector for decision spans: host:port or http(s) URL (default $OTEL_EXPORTER_OTLP_ENDPOINT; empty: no spans)")
	otelProtocol := fs.String("otel-protocol", "", "OTLP protocol: grpc or http (default grpc, or $OTEL_EXPORTER_OTLP_PROTOCOL)")
	otelInsecure := fs.Bool("otel-insecure", false, "send spans to the collector without TLS")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintf(io.err, "aegis controlplane: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	var cfg config.Config
	if *configPath != "" {
		f, err := os.Open(*configPath)
		if err != nil {
			fmt.Fprintln(io.err, "aegis controlplane:", err)
			return exitUsage
		}
		cfg, err = config.Parse(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(io.err, "aegis controlplane: %s: %v\n", *configPath, err)
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
	str("xds-listen", &cfg.XDSListen, *xdsListen)
	str("database", &cfg.Database, *database)
	str("data-dir", &cfg.DataDir, *dataDir)
	str("tls-cert", &cfg.TLSCert, *tlsCert)
	str("tls-key", &cfg.TLSKey, *tlsKey)
	str("bundle-signing-key", &cfg.BundleSigningKey, *bundleKey)
	str("state-signing-key", &cfg.StateSigningKey, *stateKey)
	str("log-level", &cfg.LogLevel, *logLevel)
	str("otel-endpoint", &cfg.OTelEndpoint, *otelEndpoint)
	str("otel-protocol", &cfg.OTelProtocol, *otelProtocol)
	if set["plain-http"] {
		cfg.PlainHTTP = *plainHTTP
	}
	if set["otel-insecure"] {
		cfg.OTelInsecure = *otelInsecure
	}
	cfg.TrustedBundleKeys = append(cfg.TrustedBundleKeys, trusted...)
	cfg = cfg.WithEnv(os.Getenv).WithDefaults()
	if cfg.XDSListen == "" && *filterWasm != "" {
		cfg.XDSListen = config.Defaults().XDSListen
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(io.err, "aegis controlplane: config:", err)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintln(io.err, "aegis controlplane: --log-level:", err)
		return exitUsage
	}
	logger := slog.New(slog.NewJSONHandler(io.err, &slog.HandlerOptions{Level: level}))

	sc := server.Config{Settings: cfg, Logger: logger,
		Extend: server.Standard(server.StandardOptions{TokenKEKPath: *tokenKEK, EvidenceKeyPath: *evidenceKey, Issuer: *issuer})}
	if *filterWasm != "" {
		wasm, err := os.ReadFile(*filterWasm)
		if err != nil {
			fmt.Fprintln(io.err, "aegis controlplane: --filter-wasm:", err)
			return exitFailure
		}
		host, portStr, _ := net.SplitHostPort(cfg.Listen)
		port, _ := strconv.ParseUint(portStr, 10, 16)
		scheme := "https"
		if cfg.PlainHTTP {
			scheme = "http"
		}
		u := *wasmURL
		if u == "" {
			u = scheme + "://" + net.JoinHostPort(host, portStr) + xds.WasmPath
		}
		sc.XDS = &server.XDSOptions{Wasm: wasm, WasmURL: u, ControlPlane: xds.Endpoint{Host: host, Port: uint32(port)}}
	} else {
		cfg.XDSListen = ""
		sc.Settings = cfg
	}
	// Startup (migrations, key generation) runs to completion even if a
	// signal arrives meanwhile; Serve then shuts down at once.
	s, err := server.New(context.WithoutCancel(ctx), sc)
	if err != nil {
		logger.Error("control plane failed to start", "error", err.Error())
		return exitFailure
	}
	if err := s.Serve(ctx); err != nil {
		logger.Error("control plane stopped with an error", "error", err.Error())
		return exitFailure
	}
	return exitOK
}
