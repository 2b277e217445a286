package cplink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Remote is the real control plane: base URL, the node's credential and
// an HTTP client with timeouts. A nil *Remote means the edge runs offline.
type Remote struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// NewRemote checks base (http or https, no query or fragment) and builds a
// client whose every call is bounded by timeout.
func NewRemote(base, nodeToken string, timeout time.Duration) (*Remote, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("control plane URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("control plane URL %q: want http(s)://host[:port][/prefix]", base)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 nil, // never through an environment proxy: the node token would travel there
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ForceAttemptHTTP2:     true,
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Remote{base: u, token: nodeToken, hc: &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// URL returns the absolute URL of an API path.
func (r *Remote) URL(path string) string { return r.base.String() + path }

// Do sends one API call with the node's credential.
func (r *Remote) Do(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.URL(path), rd)
	if err != nil {
		return nil, fmt.Errorf("control plane %s %s: %w", method, path, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control plane %s %s: %w", method, path, err)
	}
	return resp, nil
}

// CloseIdle releases idle connections.
func (r *Remote) CloseIdle() { r.hc.CloseIdleConnections() }

// MaxForwardBytes bounds bodies forwarded between the filter and the
// control plane in either direction (approvals are small JSON).
const MaxForwardBytes = 1 << 20

// Cluster is the http.RoundTripper behind the filter's control-plane
// cluster. Audit batches are answered by the local WAL ingest; other
// calls (approvals) go to the control plane with the node's credential, or
// get 503 control_plane_unavailable when the edge is offline, so that the
// filter applies the tool's fail mode.
type Cluster struct {
	audit  http.Handler
	remote *Remote // nil: offline
	// stateDir, when set, keeps the last live-state document per tenant
	// (GET /v1/tenants/{tenant}/state) and serves it while the control
	// plane is unreachable, so that revocations and the kill switch stay
	// in force across restarts. The filter verifies its signature and
	// refuses a lower seq or an expired document, so an old copy never
	// weakens what it already holds.
	stateDir string
}

var _ http.RoundTripper = (*Cluster)(nil)

// NewCluster routes audit batches to audit and the rest to remote (nil:
// offline).
func NewCluster(audit http.Handler, remote *Remote) *Cluster {
	return &Cluster{audit: audit, remote: remote}
}

// WithStateCache keeps live-state documents in dir (see Cluster).
func (c *Cluster) WithStateCache(dir string) *Cluster {
	c.stateDir = dir
	return c
}

var statePath = regexp.MustCompile(`^/v1/tenants/([A-Za-z0-9._-]{1,128})/state$`)

// stateTenant returns the tenant of a live-state fetch, or "".
func (c *Cluster) stateTenant(req *http.Request) string {
	if c.stateDir == "" || req.Method != http.MethodGet {
		return ""
	}
	m := statePath.FindStringSubmatch(req.URL.Path)
	if m == nil {
		return ""
	}
	return m[1]
}

func (c *Cluster) cachedState(req *http.Request, tenant string) (*http.Response, bool) {
	b, err := os.ReadFile(filepath.Join(c.stateDir, tenant+".json"))
	if err != nil {
		return nil, false
	}
	return jsonResponse(req, http.StatusOK, string(b)), true
}

func (c *Cluster) keepState(tenant string, body []byte) {
	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		return
	}
	tmp := filepath.Join(c.stateDir, tenant+".json.tmp")
	if err := os.WriteFile(tmp, body, 0o600); err != nil {
		return
	}
	os.Rename(tmp, filepath.Join(c.stateDir, tenant+".json"))
}

// RoundTrip implements http.RoundTripper.
func (c *Cluster) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if req.URL.Path == AuditPath {
		return serveLocal(c.audit, req), nil
	}
	stateTenant := c.stateTenant(req)
	if c.remote == nil {
		if stateTenant != "" {
			if resp, ok := c.cachedState(req, stateTenant); ok {
				return resp, nil
			}
		}
		return jsonResponse(req, http.StatusServiceUnavailable,
			`{"error":"control_plane_unavailable","message":"the edge has no control plane configured"}`), nil
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(io.LimitReader(req.Body, MaxForwardBytes+1))
		if err != nil {
			return nil, fmt.Errorf("reading the filter's call: %w", err)
		}
		if len(b) > MaxForwardBytes {
			return jsonResponse(req, http.StatusRequestEntityTooLarge, `{"error":"too_large"}`), nil
		}
		body = b
	}
	path := req.URL.Path
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	hdr := http.Header{}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		hdr.Set("Content-Type", ct)
	}
	resp, err := c.remote.Do(req.Context(), req.Method, path, body, hdr)
	if err != nil {
		if stateTenant != "" {
			if resp, ok := c.cachedState(req, stateTenant); ok {
				return resp, nil
			}
		}
		// The caller sees a transport error, as an unreachable cluster
		// looks in Envoy; the filter then applies its fail mode.
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, MaxForwardBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the control plane's answer: %w", err)
	}
	if len(rb) > MaxForwardBytes {
		return nil, errors.New("control plane answer over the size limit")
	}
	if stateTenant != "" {
		if resp.StatusCode == http.StatusOK {
			c.keepState(stateTenant, rb)
		} else if resp.StatusCode >= 500 {
			if cached, ok := c.cachedState(req, stateTenant); ok {
				return cached, nil
			}
		}
	}
	out := jsonResponse(req, resp.StatusCode, string(rb))
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		out.Header.Set("Content-Type", ct)
	}
	return out, nil
}

// serveLocal runs h in-process and returns its answer as a response.
func serveLocal(h http.Handler, req *http.Request) *http.Response {
	rec := &recorder{hdr: http.Header{}, status: http.StatusOK}
	h.ServeHTTP(rec, req)
	resp := jsonResponse(req, rec.status, rec.body.String())
	resp.Header = rec.hdr
	return resp
}

func jsonResponse(req *http.Request, status int, body string) *http.Response {
	return &http.Response{
		Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// recorder is a minimal in-memory http.ResponseWriter.
type recorder struct {
	hdr     http.Header
	status  int
	wrote   bool
	body    bytes.Buffer
	written int
}

func (r *recorder) Header() http.Header { return r.hdr }
func (r *recorder) WriteHeader(s int) {
	if !r.wrote {
		r.status, r.wrote = s, true
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	if r.written+len(p) > MaxForwardBytes {
		return 0, errors.New("local answer over the size limit")
	}
	r.written += len(p)
	return r.body.Write(p)
}
