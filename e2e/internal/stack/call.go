package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aegis-mesh/aegis/e2e/internal/tools"
)

// Reply is what an agent got back from a call through an edge.
type Reply struct {
	Status  int
	Header  http.Header
	Body    []byte
	Latency time.Duration
}

// JSON decodes the reply body.
func (r *Reply) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// Call sends one HTTP tool call through edge e as an agent would: to the
// edge's address with the tool's Host.
func (s *Stack) Call(ctx context.Context, e *Edge, method, host, path, token string, body any, extra http.Header) (*Reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+e.Addr+path, rd)
	if err != nil {
		return nil, err
	}
	req.Host = host
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, vs := range extra {
		req.Header[k] = vs
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s%s: %w", method, host, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return &Reply{Status: resp.StatusCode, Header: resp.Header, Body: b, Latency: time.Since(start)}, err
}

// hostTransport sends every request to the edge while keeping the tool's
// URL host as the Host header, which is how the MCP client reaches
// mcp-k8s.platform.internal through the gateway.
type hostTransport struct {
	edgeAddr string
	base     http.RoundTripper
}

func (t *hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = r.URL.Host
	r.URL.Host = t.edgeAddr
	r.URL.Scheme = "http"
	return t.base.RoundTrip(r)
}

// MCPSession connects the official MCP client to the k8s MCP server through
// edge e with the agent's token (and any extra headers, e.g. an override).
func (s *Stack) MCPSession(ctx context.Context, e *Edge, token string, extra http.Header) (*mcp.ClientSession, error) {
	h := http.Header{"Authorization": {"Bearer " + token}}
	for k, v := range extra {
		h[k] = v
	}
	hc := &http.Client{Transport: &tools.HeaderTransport{Base: &hostTransport{edgeAddr: e.Addr, base: http.DefaultTransport}, Headers: h}}
	client := mcp.NewClient(&mcp.Implementation{Name: "demo-agent", Version: "1.0.0"}, nil)
	return client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: "http://mcp-k8s.platform.internal/mcp", HTTPClient: hc, MaxRetries: -1,
	}, nil)
}

// Metric reads one sample from the edge's Prometheus endpoint: name with
// its labels exactly as exposed, e.g. `aegis_edge_bundle_revision{tenant="acme"}`.
func (s *Stack) Metric(ctx context.Context, e *Edge, sample string) (float64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.AdminAddr+"/metrics", nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte(sample+" "))
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(string(rest), &v); err != nil {
			return 0, false, fmt.Errorf("metric %s: %w", sample, err)
		}
		return v, true, nil
	}
	return 0, false, nil
}

// WaitMetric polls a metric until cond holds or timeout passes.
func (s *Stack) WaitMetric(ctx context.Context, e *Edge, sample string, timeout time.Duration, cond func(float64) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		v, ok, err := s.Metric(ctx, e, sample)
		if err == nil && ok && cond(v) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("edge %s: %s = %v (present %v, err %v) after %s", e.Name, sample, v, ok, err, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
