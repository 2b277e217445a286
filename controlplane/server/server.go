// Package server assembles the control plane: it opens the store, applies
// migrations, loads (or creates) the CA and signing keys, writes the
// bootstrap admin credential once, mounts every service on one HTTP mux
// behind authentication, request logging and metrics, and runs the xDS
// gRPC listener (mTLS), live-state refresh and cross-replica
// notifications. The CLI (`aegis controlplane`), the e2e suite, the demo
// and `aegis bench xds` all start it in-process through New.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/config"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/livestate"
	"github.com/aegis-mesh/aegis/controlplane/nodes"
	"github.com/aegis-mesh/aegis/controlplane/notify"
	"github.com/aegis-mesh/aegis/controlplane/policy"
	"github.com/aegis-mesh/aegis/controlplane/signing"
	"github.com/aegis-mesh/aegis/controlplane/xds"
	"github.com/aegis-mesh/aegis/keys"
)

// Service is anything that adds routes to the API mux.
type Service interface {
	Register(mux *http.ServeMux)
}

// XDSOptions turn on the xDS server. Wasm is the filter module nodes
// fetch; the remaining fields are passed to xds.Config as they are.
type XDSOptions struct {
	Wasm            []byte
	WasmURL         string
	ControlPlane    xds.Endpoint
	ControlPlaneTLS *xds.TLSFiles
	ListenerPort    uint32
	Upstreams       []xds.Upstream
}

// Config is everything New needs: the settings plus in-process hooks.
type Config struct {
	Settings config.Config
	Logger   *slog.Logger
	// Registry collects every metric; nil creates one.
	Registry *prometheus.Registry
	// XDS, when set with a Wasm module and Settings.XDSListen, serves ADS.
	XDS *XDSOptions
	// Authenticators recognise further bearer credentials (agent tokens).
	Authenticators []auth.Authenticator
	// Revocations and Spend feed live state (tokens and audit services).
	Revocations livestate.Revocations
	Spend       livestate.Spend
	// Services are mounted next to the built-in ones (audit, tokens,
	// approvals, …) and share authentication, logging and metrics.
	Services []Service
	// JWKS returns a tenant's agent-token JWKS (from the tokens service)
	// for the plugin configuration; xDS sync fails without it.
	JWKS func(ctx context.Context, tenant string) ([]byte, error)
	// Extend, when set, runs inside New once the store, CA, keys, node and
	// policy stores and notifier exist (and before routes are mounted), so
	// services that need them (tokens, audit, approvals) can be built on
	// the same database; what it returns is added to the fields above.
	Extend func(ctx context.Context, s *Server) (Extensions, error)
	// PluginConfig builds the filter plugin configuration shipped by ECDS
	// for a tenant's release, state and JWKS; nil uses DefaultPluginConfig.
	PluginConfig func(ctx context.Context, tenant string, bundle, stateEnvelope, jwks []byte) ([]byte, error)
}

// Extensions are what Config.Extend contributes.
type Extensions struct {
	Services       []Service
	Authenticators []auth.Authenticator
	Revocations    livestate.Revocations
	Spend          livestate.Spend
	JWKS           func(ctx context.Context, tenant string) ([]byte, error)
	// Background runs until the server's background context ends (an
	// expiry sweep, say); Shutdown waits for it.
	Background []func(ctx context.Context)
}

// Server is a running (or ready to run) control plane.
type Server struct {
	cfg      Config
	settings config.Config
	log      *slog.Logger
	registry *prometheus.Registry

	DB       *db.DB
	Auth     *auth.Store
	Issuer   *auth.TokenIssuer
	Nodes    *nodes.Store
	Policy   *policy.Store
	State    *livestate.Builder
	Notifier *notify.Notifier
	CA       *nodes.CA
	XDS      *xds.Server

	BundleKeys, StateKeys *signing.Ring
	// AdminTokenPath is where the bootstrap admin credential is (or was)
	// written.
	AdminTokenPath string

	mux        *http.ServeMux
	handler    http.Handler
	background []func(ctx context.Context)
	tlsCert    *tls.Certificate

	mu      sync.Mutex
	httpLn  net.Listener
	xdsLn   net.Listener
	httpSrv *http.Server
	grpcSrv *grpc.Server
	cancel  context.CancelFunc
	// xdsCancel stops the xDS server's background work.
	xdsCancel context.CancelFunc
	bg        sync.WaitGroup
	started   bool
	shutdown  bool
}

// New opens the store, applies migrations, loads keys and builds every
// service. It does not listen; call Start or Serve.
func New(ctx context.Context, cfg Config) (*Server, error) {
	st := cfg.Settings.WithDefaults()
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("control plane config: %w", err)
	}
	s := &Server{cfg: cfg, settings: st, log: cfg.Logger, registry: cfg.Registry}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
		s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if err := os.MkdirAll(st.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	ok := false
	d, err := db.Open(ctx, st.Database)
	if err != nil {
		return nil, err
	}
	s.DB = d
	defer func() {
		if !ok {
			if s.xdsCancel != nil {
				s.xdsCancel()
			}
			d.Close()
		}
	}()
	if err := s.build(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Server) build(ctx context.Context) error {
	st := s.settings
	now := time.Now()
	var err error
	if s.Auth, err = auth.NewStore(ctx, s.DB); err != nil {
		return err
	}
	if s.Nodes, err = nodes.NewStore(ctx, s.DB); err != nil {
		return err
	}
	if s.Policy, err = policy.NewStore(ctx, s.DB); err != nil {
		return err
	}
	signStore, err := signing.NewStore(ctx, s.DB)
	if err != nil {
		return err
	}
	keyDir := filepath.Join(st.DataDir, "keys")
	bundleKey := st.BundleSigningKey
	if bundleKey == "" {
		bundleKey = filepath.Join(keyDir, "bundle.key")
	}
	stateKey := st.StateSigningKey
	if stateKey == "" {
		stateKey = filepath.Join(keyDir, "state.key")
	}
	var extra []ed25519.PublicKey
	for _, p := range st.TrustedBundleKeys {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("trusted bundle key: %w", err)
		}
		pub, err := keys.ParsePublicPEM(data)
		if err != nil {
			return fmt.Errorf("trusted bundle key %s: %w", p, err)
		}
		extra = append(extra, pub)
	}
	var created bool
	if s.BundleKeys, created, err = signing.LoadRing(ctx, signStore, signing.PurposeBundle, bundleKey, extra, now); err != nil {
		return err
	}
	if created {
		s.log.Info("generated bundle signing key", "path", bundleKey, "kid", s.BundleKeys.Current().ID)
	}
	if s.StateKeys, created, err = signing.LoadRing(ctx, signStore, signing.PurposeState, stateKey, nil, now); err != nil {
		return err
	}
	if created {
		s.log.Info("generated state signing key", "path", stateKey, "kid", s.StateKeys.Current().ID)
	}
	apiKeys, _, err := signing.LoadRing(ctx, signStore, signing.PurposeAPI, filepath.Join(keyDir, "api.key"), nil, now)
	if err != nil {
		return err
	}
	s.Issuer = &auth.TokenIssuer{Ring: apiKeys}
	if s.CA, err = nodes.LoadOrCreateCA(st.DataDir, now); err != nil {
		return err
	}
	s.AdminTokenPath = filepath.Join(st.DataDir, "admin.token")
	wrote, err := auth.Bootstrap(ctx, s.Auth, s.Issuer, s.AdminTokenPath, now)
	if err != nil {
		return err
	}
	if wrote {
		// The path only: the credential itself never reaches a log.
		s.log.Info("bootstrap admin credential written", "path", s.AdminTokenPath)
	}
	dsn := st.Database
	s.Notifier = notify.New(s.DB, dsn, s.log)
	if s.cfg.Extend != nil {
		ext, err := s.cfg.Extend(ctx, s)
		if err != nil {
			return fmt.Errorf("extend control plane: %w", err)
		}
		s.cfg.Services = append(s.cfg.Services, ext.Services...)
		s.cfg.Authenticators = append(s.cfg.Authenticators, ext.Authenticators...)
		if ext.Revocations != nil {
			s.cfg.Revocations = ext.Revocations
		}
		if ext.Spend != nil {
			s.cfg.Spend = ext.Spend
		}
		if ext.JWKS != nil {
			s.cfg.JWKS = ext.JWKS
		}
		s.background = ext.Background
	}
	s.State, err = livestate.New(ctx, livestate.Config{DB: s.DB, Ring: s.StateKeys, Revocations: s.cfg.Revocations, Spend: s.cfg.Spend,
		Budgets: s.Policy, Interval: st.StateInterval, Validity: st.StateValidity})
	if err != nil {
		return err
	}
	if err := s.buildTLS(now); err != nil {
		return err
	}
	if s.cfg.XDS != nil && len(s.cfg.XDS.Wasm) > 0 && st.XDSListen != "" {
		// The xDS server (and its drift writer) lives until Shutdown.
		xctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		s.xdsCancel = cancel
		x, err := xds.NewServer(xctx, xds.Config{
			Identity: s.xdsIdentity, Registerer: s.registry, Logger: s.log, Store: s.DB,
			Wasm: s.cfg.XDS.Wasm, WasmURL: s.cfg.XDS.WasmURL, ControlPlane: s.cfg.XDS.ControlPlane,
			ControlPlaneTLS: s.cfg.XDS.ControlPlaneTLS, ListenerPort: s.cfg.XDS.ListenerPort, Upstreams: s.cfg.XDS.Upstreams,
		})
		if err != nil {
			cancel()
			return err
		}
		s.XDS = x
	}
	return s.buildHTTP()
}

// xdsIdentity is the xDS stream identity: the verified node certificate of
// an enrolled, enabled node.
// xdsIdentity is the node behind an xDS stream: its certificate, checked
// against the enrolled (and not disabled) node, whose record also fixes
// its region and role.
func (s *Server) xdsIdentity(ctx context.Context) (xds.NodeIdentity, error) {
	cert, err := xds.PeerCertificate(ctx)
	if err != nil {
		return xds.NodeIdentity{}, err
	}
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	p, ok, err := s.Nodes.Identity(ctx, cs)
	if err != nil {
		return xds.NodeIdentity{}, err
	}
	if !ok {
		return xds.NodeIdentity{}, nodes.ErrNoIdentity
	}
	n, err := s.Nodes.Node(ctx, p.Subject)
	if err != nil {
		return xds.NodeIdentity{}, fmt.Errorf("node %s: %w", p.Subject, err)
	}
	return xds.NodeIdentity{NodeID: p.Subject, Tenant: p.Tenant, Region: n.Region, Role: xds.Role(n.Role)}, nil
}

func (s *Server) buildTLS(now time.Time) error {
	st := s.settings
	if st.PlainHTTP {
		return nil
	}
	if st.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(st.TLSCert, st.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		s.tlsCert = &c
		return nil
	}
	names := append([]string{"localhost", "127.0.0.1", "::1"}, st.ServerNames...)
	if host, _, err := net.SplitHostPort(st.Listen); err == nil && host != "" {
		names = append(names, host)
	}
	c, err := s.CA.IssueServer(names, now)
	if err != nil {
		return err
	}
	s.tlsCert = &c
	return nil
}

func (s *Server) tlsConfig() *tls.Config {
	if s.tlsCert == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*s.tlsCert},
		// Nodes authenticate with their certificate; people and services
		// with bearer tokens, so a client certificate is optional on the
		// API but verified against the CA whenever one is sent.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  s.CA.Pool(),
	}
}

// Handler is the complete API handler (authentication included), for
// tests that drive it without a listener.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry is the metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Mux is the route table (without middleware), for the OpenAPI check.
func (s *Server) Mux() *http.ServeMux { return s.mux }

// Start listens on the configured addresses and serves in the
// background until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("control plane already started")
	}
	ln, err := net.Listen("tcp", s.settings.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.settings.Listen, err)
	}
	if tc := s.tlsConfig(); tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	s.httpLn = ln
	s.httpSrv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	if s.XDS != nil {
		xln, err := net.Listen("tcp", s.settings.XDSListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen xds %s: %w", s.settings.XDSListen, err)
		}
		s.xdsLn = xln
		tc := s.tlsConfig()
		opts := []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
			grpc.MaxConcurrentStreams(1 << 20)}
		if tc != nil {
			// xDS always needs a verified node certificate.
			tc = tc.Clone()
			tc.ClientAuth = tls.RequireAndVerifyClientCert
			opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		}
		s.grpcSrv = grpc.NewServer(opts...)
		s.XDS.RegisterGRPC(s.grpcSrv)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.started = true
	s.goBG(func() {
		if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "error", err.Error())
		}
	})
	if s.grpcSrv != nil {
		s.goBG(func() {
			if err := s.grpcSrv.Serve(s.xdsLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.log.Error("xDS server stopped", "error", err.Error())
			}
		})
	}
	ready := make(chan struct{})
	s.goBG(func() { _ = s.Notifier.Run(bg, ready) })
	s.startLoops(bg)
	for _, fn := range s.background {
		s.goBG(func() { fn(bg) })
	}
	select {
	case <-ready:
	case <-ctx.Done():
	}
	s.log.Info("control plane listening", "api", s.httpLn.Addr().String(), "xds", s.XDSAddr(), "database", s.DB.DSN, "tls", s.tlsCert != nil)
	return nil
}

func (s *Server) goBG(fn func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
}

// Addr is the API listener's address (after Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// XDSAddr is the xDS listener's address, "" when xDS is off.
func (s *Server) XDSAddr() string {
	if s.xdsLn == nil {
		return ""
	}
	return s.xdsLn.Addr().String()
}

// Serve starts the server and blocks until ctx ends, then shuts down
// gracefully within the configured timeout.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.settings.ShutdownTimeout)
	defer cancel()
	return s.Shutdown(sctx)
}

// Shutdown stops accepting requests, drains in-flight ones (until ctx
// ends), stops background work and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		return nil
	}
	s.shutdown = true
	started := s.started
	s.mu.Unlock()
	var errs []error
	if started {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("drain API: %w", err))
		}
		if s.grpcSrv != nil {
			done := make(chan struct{})
			go func() { s.grpcSrv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				s.grpcSrv.Stop()
			}
		}
		s.cancel()
		s.bg.Wait()
	}
	if s.XDS != nil {
		if err := s.XDS.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush xDS store: %w", err))
		}
		s.xdsCancel()
	}
	if err := s.DB.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close store: %w", err))
	}
	s.log.Info("control plane stopped")
	return errors.Join(errs...)
}
