// Package proxy is the edge's HTTP data path around the filter: framing
// checks on client connections (GuardListener, RejectFraming), the
// gateway reverse proxy (routes by Host), the egress forward proxy
// (absolute-form requests) and CONNECT tunnels with a host/SNI allowlist.
//
// The filter runs between RejectFraming/Connect and Handler, so every
// request that reaches an upstream has been decided; CONNECT tunnels are
// opaque to the filter and so are refused to any host that has declared
// tools.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Config configures a Proxy.
type Config struct {
	// Routes maps a request host (lower case, without port) to its
	// upstream: in gateway mode by Host, in forward mode also for
	// absolute-form requests to that host.
	Routes map[string]*url.URL
	// Default receives requests no route matches; nil answers 404.
	Default *url.URL
	// Forward accepts absolute-form requests to hosts Egress allows
	// (sidecar/egress mode) and CONNECT tunnels.
	Forward bool
	// Egress lists hosts the forward proxy may reach: exact names, or
	// "*.example.com" for any subdomain. Ports limits CONNECT ports
	// (default 443).
	Egress []string
	Ports  []int
	// ToolHosts reports whether a host has declared tools in the
	// current policy: CONNECT to it is refused.
	ToolHosts func(host string) bool
	// Timeouts (defaults: dial 5s, TLS handshake 5s, response header
	// 30s, idle upstream connections 90s, CONNECT ClientHello 10s, a
	// tunnel without traffic either way 5m).
	DialTimeout, TLSHandshakeTimeout, ResponseHeaderTimeout, IdleConnTimeout, HelloTimeout, TunnelIdleTimeout time.Duration
	// MaxIdleConnsPerHost to upstreams (default 64).
	MaxIdleConnsPerHost int
	Logger              *slog.Logger
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	for h, u := range c.Routes {
		if h != strings.ToLower(h) || strings.Contains(h, ":") || h == "" {
			errs = append(errs, fmt.Errorf("route %q: host must be lower case, without port", h))
		}
		if err := checkUpstream(u); err != nil {
			errs = append(errs, fmt.Errorf("route %q: %w", h, err))
		}
	}
	if c.Default != nil {
		if err := checkUpstream(c.Default); err != nil {
			errs = append(errs, fmt.Errorf("default upstream: %w", err))
		}
	}
	for _, e := range c.Egress {
		if _, ok := normPattern(e); !ok {
			errs = append(errs, fmt.Errorf("egress %q: want host or *.domain", e))
		}
	}
	for _, p := range c.Ports {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("egress port %d out of range", p))
		}
	}
	return errors.Join(errs...)
}

func checkUpstream(u *url.URL) error {
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("upstream must be http(s)://host[:port][/prefix]")
	}
	return nil
}

func normPattern(p string) (string, bool) {
	p = strings.ToLower(strings.TrimSpace(p))
	rest := strings.TrimPrefix(p, "*.")
	if rest == "" || strings.ContainsAny(rest, "*:/ ") {
		return "", false
	}
	return p, true
}

// Proxy forwards decided requests to upstreams.
type Proxy struct {
	cfg      Config
	egress   []string
	rp       *httputil.ReverseProxy
	tr       *http.Transport
	tunnels  atomic.Int64
	refusals atomic.Int64
}

type targetKey struct{}

// New builds a Proxy from a valid config.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.TLSHandshakeTimeout <= 0 {
		cfg.TLSHandshakeTimeout = 5 * time.Second
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 30 * time.Second
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 90 * time.Second
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.TunnelIdleTimeout <= 0 {
		cfg.TunnelIdleTimeout = 5 * time.Minute
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 64
	}
	if len(cfg.Ports) == 0 {
		cfg.Ports = []int{443}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ToolHosts == nil {
		cfg.ToolHosts = func(string) bool { return false }
	}
	p := &Proxy{cfg: cfg}
	for _, e := range cfg.Egress {
		n, _ := normPattern(e)
		p.egress = append(p.egress, n)
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	p.tr = &http.Transport{
		Proxy:                 nil, // never chain to an environment proxy
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.TLSHandshakeTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := pr.In.Context().Value(targetKey{}).(*url.URL)
			host := pr.In.Host
			pr.SetURL(target)
			// The upstream sees the host the agent called (tools are
			// matched by it), not the upstream's address.
			pr.Out.Host = host
			pr.SetXForwarded()
		},
		Transport: p.tr,
		// 0: responses of unknown length and event streams are still
		// flushed after every write (ReverseProxy detects them); sized
		// bodies are not flushed piecemeal.
		FlushInterval: 0,
		ErrorHandler:  p.upstreamError,
	}
	return p, nil
}

// Close releases idle upstream connections.
func (p *Proxy) Close() { p.tr.CloseIdleConnections() }

// Tunnels counts CONNECT tunnels opened; Refusals counts forward and
// CONNECT requests refused by the egress rules.
func (p *Proxy) Tunnels() int64  { return p.tunnels.Load() }
func (p *Proxy) Refusals() int64 { return p.refusals.Load() }

// Handler forwards requests (already decided by the filter) to their
// upstream: absolute-form requests to their own host when Forward is on,
// the rest by Host to a route or the default upstream.
func (p *Proxy) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, code, msg := p.target(r)
		if target == nil {
			p.refusals.Add(1)
			status := http.StatusForbidden
			if code == "no_route" {
				status = http.StatusNotFound
			}
			WriteError(w, status, code, msg)
			return
		}
		p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
	})
}

func (p *Proxy) target(r *http.Request) (*url.URL, string, string) {
	host := hostOnly(r.Host)
	if r.URL.IsAbs() {
		if !p.cfg.Forward {
			// A gateway does not act as an open proxy: absolute-form is
			// routed like any request, by its host.
			return p.route(host)
		}
		if r.URL.Scheme != "http" && r.URL.Scheme != "https" {
			return nil, "egress_denied", "scheme " + r.URL.Scheme
		}
		if u, ok := p.cfg.Routes[host]; ok {
			// A configured route says where this name lives (a sidecar's
			// internal tools): explicit, so no allowlist entry is needed.
			return u, "", ""
		}
		if !p.allowed(host) {
			return nil, "egress_denied", "host " + host + " is not in the egress allowlist"
		}
		return &url.URL{Scheme: r.URL.Scheme, Host: r.URL.Host}, "", ""
	}
	return p.route(host)
}

func (p *Proxy) route(host string) (*url.URL, string, string) {
	if u, ok := p.cfg.Routes[host]; ok {
		return u, "", ""
	}
	if p.cfg.Default != nil {
		return p.cfg.Default, "", ""
	}
	return nil, "no_route", "no upstream for host " + host
}

func (p *Proxy) allowed(host string) bool {
	for _, e := range p.egress {
		if rest, ok := strings.CutPrefix(e, "*."); ok {
			if strings.HasSuffix(host, "."+rest) {
				return true
			}
		} else if host == e {
			return true
		}
	}
	return false
}

// hostOnly lower-cases host and drops a port and IPv6 brackets.
func hostOnly(hostport string) string {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if v := ConnViolation(r); v != nil {
		w.Header().Set("Connection", "close")
		WriteError(w, v.Status, v.Code, v.Message)
		return
	}
	var ne net.Error
	switch {
	case errors.Is(r.Context().Err(), context.Canceled):
		// The client went away: nobody reads an answer.
		return
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		p.cfg.Logger.Warn("upstream timeout", "host", r.Host, "err", err)
		WriteError(w, http.StatusGatewayTimeout, "upstream_timeout", "the upstream did not answer in time")
	default:
		p.cfg.Logger.Warn("upstream error", "host", r.Host, "err", err)
		WriteError(w, http.StatusBadGateway, "upstream_unavailable", "the upstream could not be reached")
	}
}

// connectTarget checks a CONNECT request: host:port form, allowed port,
// no declared tools on the host, host in the egress allowlist.
func (p *Proxy) connectTarget(r *http.Request) (host string, port int, status int, code, msg string) {
	h, ps, err := net.SplitHostPort(r.Host)
	if err != nil || h == "" {
		return "", 0, http.StatusBadRequest, "bad_request", "CONNECT needs host:port"
	}
	port, err = strconv.Atoi(ps)
	if err != nil || !slices.Contains(p.cfg.Ports, port) {
		return "", 0, http.StatusForbidden, "egress_denied", "CONNECT port " + ps + " is not allowed"
	}
	host = hostOnly(h)
	if p.cfg.ToolHosts(host) {
		return "", 0, http.StatusForbidden, "tunnel_to_tool_host",
			"host " + host + " has declared tools: call it through the proxy (absolute-form HTTP), not through an opaque tunnel, so that parameters are checked"
	}
	if !p.allowed(host) {
		return "", 0, http.StatusForbidden, "egress_denied", "host " + host + " is not in the egress allowlist"
	}
	return host, port, 0, "", ""
}
