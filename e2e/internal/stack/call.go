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
