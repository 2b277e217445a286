// Package tools holds the tool servers the demo and the end-to-end tests put
// behind Aegis: a payments/billing HTTP API and a Kubernetes-flavoured MCP
// server built with the official MCP Go SDK over streamable HTTP. Each one
// records what it received, so a test can prove what reached the tool (the
// redacted body of a sanitize, nothing at all for a deny).
package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Call is one request a tool server received.
type Call struct {
	Tool   string          // payments.create, k8s.deploy, ...
	Method string          // HTTP method, or "tools/call"
	Path   string          // HTTP path (empty for MCP)
	Body   json.RawMessage // JSON body or MCP arguments
	Header http.Header     // request headers as the tool saw them
}

// Recorder keeps the calls a server received, safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	calls []Call
}

func (r *Recorder) add(c Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// Calls returns a copy of every call received so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Count returns how many calls of tool were received.
func (r *Recorder) Count(tool string) int {
	n := 0
	for _, c := range r.Calls() {
		if c.Tool == tool {
			n++
		}
	}
	return n
}

// Payments serves the payments and billing APIs of the payments example
// policy (payments.acme.internal and billing.acme.internal).
func Payments(rec *Recorder) http.Handler {
	mux := http.NewServeMux()
	var mu sync.Mutex
	next := 0
	mux.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || !json.Valid(body) {
			http.Error(w, `{"error":"bad_request"}`, http.StatusBadRequest)
			return
		}
		rec.add(Call{Tool: "payments.create", Method: r.Method, Path: r.URL.Path, Body: body, Header: r.Header.Clone()})
		mu.Lock()
		next++
		id := next
		mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"id": fmt.Sprintf("pay_%04d", id), "status": "created", "received": json.RawMessage(body)})
	})
	mux.HandleFunc("GET /v1/invoices", func(w http.ResponseWriter, r *http.Request) {
		rec.add(Call{Tool: "invoices.list", Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
		writeJSON(w, http.StatusOK, map[string]any{"invoices": []map[string]any{
			{"id": "inv_1001", "amount": 420.50, "currency": "EUR"},
			{"id": "inv_1002", "amount": 99.00, "currency": "EUR"},
		}})
	})
	mux.HandleFunc("GET /v1/invoices/{id}", func(w http.ResponseWriter, r *http.Request) {
		rec.add(Call{Tool: "invoices.read", Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
		writeJSON(w, http.StatusOK, map[string]any{"id": r.PathValue("id"), "amount": 420.50, "currency": "EUR"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type podsArgs struct {
	Namespace string `json:"namespace" jsonschema:"the namespace to list"`
}

type logsArgs struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Tail      int    `json:"tail,omitempty"`
}

type deployArgs struct {
	Namespace string `json:"namespace"`
	Image     string `json:"image"`
}

type secretArgs struct {
	Path string `json:"path"`
}

// MCPK8s is the "k8s" MCP server of the mcp-devops example policy, served
// over streamable HTTP at whatever path the caller mounts it (the policy
// says /mcp). It also offers vault-style read_secret, which the policy never
// grants, so tools/list filtering has something to hide.
func MCPK8s(rec *Recorder) http.Handler {
	s := mcp.NewServer(&mcp.Implementation{Name: "k8s", Version: "1.0.0"}, nil)
	record := func(tool string, args any, req *mcp.CallToolRequest) {
		b, _ := json.Marshal(args)
		var h http.Header
		if req != nil && req.Extra != nil {
			h = req.Extra.Header
		}
		rec.add(Call{Tool: tool, Method: "tools/call", Body: b, Header: h})
	}
	text := func(format string, a ...any) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, a...)}}}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "get_pods", Description: "List the pods of a namespace"},
		func(_ context.Context, req *mcp.CallToolRequest, in podsArgs) (*mcp.CallToolResult, any, error) {
			record("k8s.get_pods", in, req)
			return text("pods in %s: api-7f9c (Running), worker-2b1d (Running)", in.Namespace), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "get_logs", Description: "Tail the logs of a pod"},
		func(_ context.Context, req *mcp.CallToolRequest, in logsArgs) (*mcp.CallToolResult, any, error) {
			record("k8s.get_logs", in, req)
			return text("%s/%s: last %d lines: ready", in.Namespace, in.Pod, max(in.Tail, 1)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "deploy", Description: "Deploy an image to a namespace"},
		func(_ context.Context, req *mcp.CallToolRequest, in deployArgs) (*mcp.CallToolResult, any, error) {
			record("k8s.deploy", in, req)
			return text("deployed %s to %s", in.Image, in.Namespace), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "read_secret", Description: "Read a secret"},
		func(_ context.Context, req *mcp.CallToolRequest, in secretArgs) (*mcp.CallToolResult, any, error) {
			record("k8s.read_secret", in, req)
			return text("secret %s: hunter2", in.Path), nil, nil
		})
	// The gateway forwards the agent's Host (mcp-k8s.platform.internal), so
	// the SDK's localhost-only guard would refuse every proxied request.
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{DisableLocalhostProtection: true})
}

// HeaderTransport adds fixed headers to every request: how an agent's MCP
// client carries its Aegis token (and an override token on a retry).
type HeaderTransport struct {
	Base    http.RoundTripper
	Headers http.Header
}

// RoundTrip implements http.RoundTripper.
func (t *HeaderTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, vs := range t.Headers {
		r.Header[k] = append([]string(nil), vs...)
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}
