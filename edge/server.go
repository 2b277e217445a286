// Package edge is the Aegis edge data plane: an HTTP proxy (gateway and
// egress) that runs every request through the same proxy-wasm filter Envoy
// runs (hosted by edge/wasmhost), keeps its verified bundles on disk for
// offline operation (edge/distrib), writes audit evidence to a local WAL
// before acknowledging it (edge/wal) and ships it to the control plane
// (edge/cplink).
//
// NewServer builds everything from a Config; Serve runs the proxy on a
// listener and ServeAdmin the metrics/health endpoints. The same
// constructor serves `aegis edge`, tests and benchmarks.
package edge

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/aegis-mesh/aegis/edge/cplink"
	"github.com/aegis-mesh/aegis/edge/distrib"
	"github.com/aegis-mesh/aegis/edge/proxy"
	"github.com/aegis-mesh/aegis/edge/wal"
	"github.com/aegis-mesh/aegis/edge/wasmhost"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/token"
)

// ControlPlaneCluster is the cluster name the filter's configuration
// gives for the control plane; the edge answers it in-process.
const ControlPlaneCluster = "aegis-cp"

// Deps are what a caller may inject; zero values take defaults.
type Deps struct {
	Logger         *slog.Logger         // default: JSON to stderr at Config.LogLevel
	TracerProvider trace.TracerProvider // default: no tracing
	Registry       *prometheus.Registry // default: a new registry
	Now            func() time.Time
}

// Server is a built edge. Close it with Shutdown.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	nodeKey   ed25519.PrivateKey
	bundlePEM []byte
	statePEM  []byte
	jwks      json.RawMessage

	store   *distrib.Store
	wal     *wal.WAL
	remote  *cplink.Remote
	cluster *cplink.Cluster
	shipper *cplink.Shipper
	mod     *wasmhost.Module
	pool    *wasmhost.Pool
	proxy   *proxy.Proxy
	metrics *metrics

	handler http.Handler
	admin   http.Handler

	bg     context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	confMu sync.Mutex
	// inFilter lists the tenants whose bundles the running filter
	// configuration carries: readiness waits for the hot swap, not just
	// for the store to accept a bundle.
	inFilter atomic.Pointer[[]string]

	srvMu   sync.Mutex
	servers []*http.Server
}

// NewServer builds an edge from cfg: keys, bundle store (cache verified
// again), WAL (torn tail recovered), filter pool, proxy, metrics. Nothing
// listens until Serve.
func NewServer(ctx context.Context, cfg Config, deps Deps) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: parseLevel(cfg.LogLevel)}))
	}
	if deps.TracerProvider == nil {
		deps.TracerProvider = noop.NewTracerProvider()
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger}
	s.bg, s.stop = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.closeAll(ctx)
		}
	}()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := s.loadKeys(); err != nil {
		return nil, err
	}
	pub, err := keys.ParsePublicPEM(s.bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("trust.bundle_key: %w", err)
	}
	store, cacheErrs := distrib.NewStore(pub, filepath.Join(cfg.StateDir, "bundles"), s.log, deps.Now)
	for _, e := range cacheErrs {
		s.log.Error("bundle cache entry refused", "err", e)
	}
	s.store = store
	for _, path := range cfg.Bundles {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", path, err)
		}
		if _, err := store.Offer(data, ""); err != nil {
			// A refused bundle file leaves the cached one (if any) in
			// force; with none, the tenant fails closed in the filter.
			s.log.Error("bundle file refused", "path", path, "err", err)
		}
	}
	s.wal, err = wal.Open(cfg.Audit.Dir, wal.Options{NodeID: cfg.Node.ID, SegmentBytes: cfg.Audit.SegmentBytes,
		Sync: wal.SyncPolicy(cfg.Audit.Sync), KeepShipped: cfg.Audit.KeepShipped})
	if err != nil {
		return nil, err
	}
	if cfg.ControlPlane.URL != "" {
		tok := ""
		if cfg.ControlPlane.TokenFile != "" {
			b, err := os.ReadFile(cfg.ControlPlane.TokenFile)
			if err != nil {
				return nil, fmt.Errorf("control_plane.token_file: %w", err)
			}
			tok = strings.TrimSpace(string(b))
		}
		if s.remote, err = cplink.NewRemote(cfg.ControlPlane.URL, tok, cfg.ControlPlane.Timeout); err != nil {
			return nil, err
		}
		if s.shipper, err = cplink.NewShipper(s.wal, s.remote, cplink.ShipperConfig{NodeID: cfg.Node.ID, Key: s.nodeKey, Logger: s.log,
			HomeTenant: cplink.TokenTenant(tok)}); err != nil {
			return nil, err
		}
	}
	s.cluster = cplink.NewCluster(cplink.NewIngest(s.wal, s.log), s.remote).WithStateCache(filepath.Join(cfg.StateDir, "state"))

	routes := map[string]*url.URL{}
	for h, u := range cfg.Routes {
		pu, _ := url.Parse(u)
		routes[strings.ToLower(h)] = pu
	}
	var def *url.URL
	if cfg.Upstream != "" {
		def, _ = url.Parse(cfg.Upstream)
	}
	s.proxy, err = proxy.New(proxy.Config{Routes: routes, Default: def, Forward: cfg.Forward, Egress: cfg.Egress.Allow,
		Ports: cfg.Egress.Ports, ToolHosts: store.IsToolHost, DialTimeout: cfg.Timeouts.Dial,
		ResponseHeaderTimeout: cfg.Timeouts.ResponseHeader, TunnelIdleTimeout: cfg.Timeouts.TunnelIdle, Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}

	if cfg.Filter.Wasm != "none" {
		if err := s.startFilter(ctx); err != nil {
			return nil, err
		}
		store.OnChange(func() {
			// A failed swap leaves the previous configuration in force; it
			// is retried a few times because a VM that traps while starting
			// (seen rarely under load, see docs/edge.md) must not leave a
			// newly accepted tenant without its bundle until the next change.
			for attempt := 1; ; attempt++ {
				err := s.reconfigure(s.bg)
				if err == nil {
					return
				}
				if attempt == 5 || s.bg.Err() != nil {
					s.log.Error("filter reconfiguration failed; the previous configuration stays", "err", err, "attempts", attempt)
					return
				}
				s.log.Warn("filter reconfiguration failed; retrying", "err", err, "attempt", attempt)
				select {
				case <-s.bg.Done():
					return
				case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
				}
			}
		})
	} else {
		s.log.Warn("running WITHOUT the filter: no request is checked (benchmarks only)")
	}
	s.metrics = newMetrics(s)
	if err := s.metrics.register(deps.Registry); err != nil {
		return nil, err
	}
	s.handler = s.buildHandler()
	s.admin = s.adminHandler()

	if s.shipper != nil {
		s.goBG(func(ctx context.Context) { s.shipper.Run(ctx) })
	}
	if len(cfg.Bundles) > 0 {
		s.goBG(func(ctx context.Context) { s.watchBundleFiles(ctx, cfg.ControlPlane.PollInterval) })
	}
	if s.remote != nil && len(cfg.ControlPlane.Tenants) > 0 {
		s.goBG(func(ctx context.Context) {
			store.Poll(ctx, distrib.REST{Remote: s.remote}, cfg.ControlPlane.Tenants, cfg.ControlPlane.PollInterval)
		})
	}
	return s, nil
}

// watchBundleFiles offers the bundle files again whenever their content
// changes (an operator replacing a file on an offline node). Each new
// content is verified like any bundle; a refused one is logged once.
func (s *Server) watchBundleFiles(ctx context.Context, every time.Duration) {
	seen := map[string][32]byte{}
	for _, p := range s.cfg.Bundles {
		if b, err := os.ReadFile(p); err == nil {
			seen[p] = sha256.Sum256(b)
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range s.cfg.Bundles {
			b, err := os.ReadFile(p)
			if err != nil {
				continue // being replaced, or gone: the bundle in force stays
			}
			sum := sha256.Sum256(b)
			if sum == seen[p] {
				continue
			}
			seen[p] = sum
			if _, err := s.store.Offer(b, ""); err != nil {
				s.log.Error("changed bundle file refused; the bundle in force stays", "path", p, "err", err)
			}
		}
	}
}

func (s *Server) goBG(f func(context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.bg)
	}()
}

func parseLevel(l string) slog.Level {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l)); err != nil {
		return slog.LevelInfo
	}
	return lv
}

// loadKeys reads the trust root and the node key (generated at first
// start when not configured), and the JWKS.
func (s *Server) loadKeys() error {
	cfg := s.cfg
	var err error
	if s.bundlePEM, err = os.ReadFile(cfg.Trust.BundleKey); err != nil {
		return fmt.Errorf("trust.bundle_key: %w", err)
	}
	if cfg.Trust.StateKey != "" {
		if s.statePEM, err = os.ReadFile(cfg.Trust.StateKey); err != nil {
			return fmt.Errorf("trust.state_key: %w", err)
		}
		if _, err := keys.ParsePublicPEM(s.statePEM); err != nil {
			return fmt.Errorf("trust.state_key: %w", err)
		}
	}
	path := cfg.Node.SigningKey
	if path == "" {
		path = filepath.Join(cfg.StateDir, "node.key")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			k, err := keys.Generate(rand.Reader)
			if err != nil {
				return fmt.Errorf("generating the node key: %w", err)
			}
			pemBytes, err := keys.MarshalPrivatePEM(k)
			if err != nil {
				return err
			}
			if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
				return fmt.Errorf("writing the node key: %w", err)
			}
			pubPEM, _ := keys.MarshalPublicPEM(k.Public().(ed25519.PublicKey))
			s.log.Warn("generated a node signing key; enroll its public key with the control plane", "path", path, "public_key", string(pubPEM))
		}
	}
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("node signing key: %w", err)
	}
	if s.nodeKey, err = keys.ParsePrivatePEM(pemBytes); err != nil {
		return fmt.Errorf("node signing key %s: %w", path, err)
	}
	jwks, err := os.ReadFile(cfg.JWKS)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	if _, err := token.ParseJWKS(jwks); err != nil {
		return fmt.Errorf("jwks %s: %w", cfg.JWKS, err)
	}
	s.jwks = jwks
	return nil
}

// FindFilter returns the filter module path: explicit, else
// aegis-filter.wasm next to the executable, else build/aegis-filter.wasm
// under the working directory.
func FindFilter(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "aegis-filter.wasm")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	p := filepath.Join("build", "aegis-filter.wasm")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	tried = append(tried, p)
	return "", fmt.Errorf("no filter module (tried %s): build it with `make filter` or pass --filter", strings.Join(tried, ", "))
}

func (s *Server) startFilter(ctx context.Context) error {
	path, err := FindFilter(s.cfg.Filter.Wasm)
	if err != nil {
		return err
	}
	code, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("filter module: %w", err)
	}
	// A guest that outgrows its cap traps: that request fails closed and
	// the VM is replaced, instead of the host running out of memory.
	s.mod, err = wasmhost.Compile(ctx, code, wasmhost.CompileOptions{CacheDir: s.cfg.Filter.CacheDir,
		MemoryLimitPages: uint32(s.cfg.Filter.MemoryMiB) * 16})
	if err != nil {
		return fmt.Errorf("filter module %s: %w", path, err)
	}
	tenants := s.store.Tenants()
	conf, err := s.pluginConfig()
	if err != nil {
		return err
	}
	nodePEM, err := keys.MarshalPrivatePEM(s.nodeKey)
	if err != nil {
		return err
	}
	env := map[string]string{
		"AEGIS_BUNDLE_PUBLIC_KEY": string(s.bundlePEM),
		"AEGIS_NODE_SIGNING_KEY":  string(nodePEM),
	}
	if s.statePEM != nil {
		env["AEGIS_STATE_PUBLIC_KEY"] = string(s.statePEM)
	}
	s.pool, err = wasmhost.NewPool(ctx, s.mod, wasmhost.PoolConfig{
		Size:           s.cfg.Filter.PoolSize,
		PluginConfig:   conf,
		Env:            env,
		Clusters:       map[string]http.RoundTripper{ControlPlaneCluster: s.cluster},
		RequestTimeout: s.cfg.Filter.RequestTimeout,
		// The host buffers a little more than the filter's limit, so
		// that the filter (not the host) explains an oversized body.
		MaxBodyBytes: s.cfg.Filter.MaxBodyBytes + 64<<10,
		Logger:       s.log,
		PluginName:   "aegis",
		Now:          s.deps.Now,
	})
	if err != nil {
		return fmt.Errorf("filter pool: %w", err)
	}
	s.inFilter.Store(&tenants)
	return nil
}

// pluginConfig builds the filter's configuration (docs/filter-config.md)
// from the config and the current verified bundles.
func (s *Server) pluginConfig() ([]byte, error) {
	c := s.cfg
	bundles := map[string]string{}
	for t, raw := range s.store.Bundles() {
		bundles[t] = base64.StdEncoding.EncodeToString(raw)
	}
	conf := map[string]any{
		"bundles": bundles,
		"jwks":    s.jwks,
		"token": map[string]any{
			"header": c.Filter.TokenHeader, "issuer": c.Filter.Issuer, "audience": c.Filter.Audience,
		},
		"node":          map[string]any{"id": c.Node.ID, "region": c.Node.Region},
		"limits":        map[string]any{"max_body_bytes": c.Filter.MaxBodyBytes},
		"control_plane": map[string]any{"cluster": ControlPlaneCluster, "authority": ControlPlaneCluster, "timeout_ms": c.ControlPlane.Timeout.Milliseconds()},
		"audit": map[string]any{"max_queue": c.Filter.AuditMaxQueue, "batch_size": 256,
			"flush_interval_ms": max(c.Filter.AuditFlush.Milliseconds(), 1)},
		"no_bundle":         map[string]any{"read": c.Filter.NoBundleRead, "write": "closed"},
		"on_audit_overflow": c.Filter.OnAuditOverflow,
	}
	st := map[string]any{}
	if s.statePEM != nil {
		// The last live state the edge kept is in force from the first
		// request: a restart without the control plane must not lift a
		// kill switch or a revocation until the first refresh.
		if inline := s.cachedStates(); len(inline) > 0 {
			st["inline"] = inline
		}
	}
	if c.Filter.StateRefresh > 0 {
		// Live state is fetched by the filter through its cluster: the
		// edge forwards it to the control plane and keeps the last copy.
		st["refresh_ms"] = c.Filter.StateRefresh.Milliseconds()
		if len(c.ControlPlane.Tenants) > 0 {
			// Token keys too: a rotated agent-token key must reach the
			// filter without a restart (the jwks file is the fallback
			// until the first good fetch).
			conf["fetch"] = map[string]any{"tenants": c.ControlPlane.Tenants, "jwks": true,
				"refresh_ms": c.Filter.StateRefresh.Milliseconds()}
		}
	}
	if len(st) > 0 {
		conf["state"] = st
	}
	return json.Marshal(conf)
}

// cachedStates reads the live-state copies the control-plane cluster
// kept, by tenant. Unreadable entries are left out (the filter verifies
// the rest).
func (s *Server) cachedStates() map[string]json.RawMessage {
	dir := filepath.Join(s.cfg.StateDir, "state")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := map[string]json.RawMessage{}
	for _, e := range ents {
		tenant, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || !tenantName.MatchString(tenant) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || !json.Valid(b) {
			s.log.Warn("cached live state unreadable; left out", "tenant", tenant, "err", err)
			continue
		}
		out[tenant] = b
	}
	return out
}

var tenantName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// reconfigure hands the current bundles to the filter (hot swap: in-flight
// requests finish on the old configuration).
func (s *Server) reconfigure(ctx context.Context) error {
	s.confMu.Lock()
	defer s.confMu.Unlock()
	tenants := s.store.Tenants()
	conf, err := s.pluginConfig()
	if err != nil {
		return err
	}
	if err := s.pool.UpdateConfig(ctx, conf); err != nil {
		return err
	}
	s.inFilter.Store(&tenants)
	return nil
}

// Handler is the proxy's HTTP handler (framing rejection, observability,
// CONNECT, the filter, the upstream proxy). Serve wraps a listener so that
// framing is checked; Handler alone is for in-process use.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler serves /metrics, /healthz and /readyz.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Store returns the bundle store (tests, embedders).
func (s *Server) Store() *distrib.Store { return s.store }

// WAL returns the audit WAL.
func (s *Server) WAL() *wal.WAL { return s.wal }

// Pool returns the filter pool, nil when running without a filter.
func (s *Server) Pool() *wasmhost.Pool { return s.pool }

func (s *Server) buildHandler() http.Handler {
	var h http.Handler = s.proxy.Handler()
	if s.pool != nil {
		h = s.pool.Handler(h)
	}
	h = s.proxy.Connect(h)
	h = s.observe(h)
	return s.countFraming(proxy.RejectFraming(h))
}

// Serve runs the proxy on l until Shutdown: HTTP/1.1 and HTTP/2 with
// prior knowledge (h2c), framing checked before net/http parses a request.
func (s *Server) Serve(l net.Listener) error {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           s.handler,
		Protocols:         &protos,
		ConnContext:       proxy.ConnContext,
		ReadHeaderTimeout: s.cfg.Timeouts.ReadHeader,
		ReadTimeout:       s.cfg.Timeouts.Read,
		WriteTimeout:      s.cfg.Timeouts.Write,
		IdleTimeout:       s.cfg.Timeouts.Idle,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.track(srv)
	err := srv.Serve(proxy.GuardListener(l, s.cfg.MaxHeaderBytes))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeAdmin runs the admin endpoints on l until Shutdown.
func (s *Server) ServeAdmin(l net.Listener) error {
	srv := &http.Server{Handler: s.admin, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	s.track(srv)
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) track(srv *http.Server) {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	s.servers = append(s.servers, srv)
}

// Shutdown stops accepting, lets in-flight requests finish (until ctx
// ends), then stops the shipper and the filter and closes the WAL.
func (s *Server) Shutdown(ctx context.Context) error {
	s.srvMu.Lock()
	servers := s.servers
	s.srvMu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			srv.Close()
		}
	}
	s.drainAudit(ctx)
	errs = append(errs, s.closeAll(ctx))
	return errors.Join(errs...)
}

// drainAudit gives the filter's ticks time to hand their queued audit
// events to the WAL before the VMs go: at least two flush intervals, and
// until the WAL head has not moved for one, at most ten intervals (or
// until ctx ends). Events still queued after that were never acknowledged
// and are lost with the VM, as in Envoy.
func (s *Server) drainAudit(ctx context.Context) {
	if s.pool == nil {
		return
	}
	tick := s.cfg.Filter.AuditFlush
	t := time.NewTicker(tick)
	defer t.Stop()
	last, _ := s.wal.Head()
	for i := 1; i <= 10; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		head, _ := s.wal.Head()
		if i >= 2 && head == last {
			return
		}
		last = head
	}
}

func (s *Server) closeAll(ctx context.Context) error {
	var errs []error
	if s.pool != nil {
		// The filter flushes nothing at close: its queued audit events are
		// the ones it has not been told are durable, and every event the
		// WAL acknowledged is already on disk.
		if err := s.pool.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.mod != nil {
		if err := s.mod.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.stop != nil {
		s.stop()
	}
	s.wg.Wait()
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.remote != nil {
		s.remote.CloseIdle()
	}
	if s.wal != nil {
		if err := s.wal.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
