package tools

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestPaymentsRecordsWhatItReceived(t *testing.T) {
	rec := &Recorder{}
	srv := httptest.NewServer(Payments(rec))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/payments", "application/json", bytes.NewBufferString(`{"amount":10,"memo":"[redacted:email]"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	resp, err = http.Post(srv.URL+"/v1/payments", "application/json", bytes.NewBufferString(`{not json`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad JSON accepted: %d", resp.StatusCode)
	}
	calls := rec.Calls()
	if len(calls) != 1 || string(calls[0].Body) != `{"amount":10,"memo":"[redacted:email]"}` || rec.Count("payments.create") != 1 {
		t.Fatalf("recorded %+v", calls)
	}
}

func TestMCPK8sOverStreamableHTTP(t *testing.T) {
	rec := &Recorder{}
	srv := httptest.NewServer(MCPK8s(rec))
	defer srv.Close()
	ctx := context.Background()
	hc := &http.Client{Transport: &HeaderTransport{Headers: http.Header{"X-Agent-Test": {"1"}}}}
	client := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	list, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"deploy", "get_logs", "get_pods", "read_secret"}) {
		t.Fatalf("tools = %v", names)
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "get_pods", Arguments: map[string]any{"namespace": "staging"}})
	if err != nil || res.IsError {
		t.Fatalf("call: %v %+v", err, res)
	}
	calls := rec.Calls()
	if len(calls) != 1 || calls[0].Tool != "k8s.get_pods" || string(calls[0].Body) != `{"namespace":"staging"}` {
		t.Fatalf("recorded %+v", calls)
	}
	if calls[0].Header.Get("X-Agent-Test") != "1" {
		t.Fatalf("headers not carried to the tool: %v", calls[0].Header)
	}
}
