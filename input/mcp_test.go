package input

import (
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/engine"
)

func getPath(t *testing.T, v engine.Value, path ...string) engine.Value {
	t.Helper()
	for _, k := range path {
		o, ok := v.(*engine.Object)
		if !ok {
			t.Fatalf("%v is not an object at %q", v, k)
		}
		if v, ok = o.Get(k); !ok {
			return nil
		}
	}
	return v
}

func TestMCPToolsCall(t *testing.T) {
	res := mustBuild(t, mcpRequest(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_pods","arguments":{"namespace":"payments"},"_meta":{"progressToken":"p"}}}`))
	if len(res.Calls) != 1 || res.Batch {
		t.Fatalf("calls = %d batch = %v", len(res.Calls), res.Batch)
	}
	c := res.Calls[0]
	if c.MCP == nil || c.MCP.Kind != KindRequest || c.MCP.Method != "tools/call" || c.MCP.Tool != "get_pods" ||
		c.MCP.Server != "k8s" || string(c.MCP.ID) != "1" || c.MCP.Index != 0 {
		t.Fatalf("MCPCall = %+v", c.MCP)
	}
	if got, want := jsonOf(t, getPath(t, c.Input, "mcp")), `{"batch":false,"id":1,"index":0,"kind":"request","method":"tools/call","server":"k8s","tool":"get_pods"}`; got != want {
		t.Errorf("mcp = %s, want %s", got, want)
	}
	if got := jsonOf(t, getPath(t, c.Input, "params")); got != `{"namespace":"payments"}` {
		t.Errorf("params = %s", got)
	}
	if got := jsonOf(t, getPath(t, c.Input, "request", "body_type")); got != `"json"` {
		t.Errorf("body_type = %s", got)
	}
}

func TestMCPMessages(t *testing.T) {
	tests := []struct {
		name, body             string
		kind, method, tool, id string
		params                 string // JSON of input.params, "" when absent
	}{
		{"tools/call without arguments", `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get_pods"}}`, KindRequest, "tools/call", "get_pods", `"a"`, `{}`},
		{"tools/list", `{"jsonrpc":"2.0","id":10,"method":"tools/list"}`, KindRequest, "tools/list", "", `10`, ""},
		{"initialize keeps its params", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`, KindRequest, "initialize", "", `0`, `{"protocolVersion":"2025-06-18"}`},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, KindNotification, "notifications/initialized", "", "", ""},
		{"response with result", `{"jsonrpc":"2.0","id":5,"result":{}}`, KindResponse, "", "", `5`, ""},
		{"response with error and null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`, KindResponse, "", "", `null`, ""},
		{"negative integer id", `{"jsonrpc":"2.0","id":-3,"method":"ping"}`, KindRequest, "ping", "", `-3`, ""},
		{"array params", `{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}`, KindRequest, "x", "", `1`, `[1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustBuild(t, mcpRequest(tt.body))
			c := res.Calls[0]
			if c.MCP.Kind != tt.kind || c.MCP.Method != tt.method || c.MCP.Tool != tt.tool || string(c.MCP.ID) != tt.id {
				t.Errorf("MCPCall = %+v", c.MCP)
			}
			if got := getPath(t, c.Input, "mcp", "kind"); jsonOf(t, got) != `"`+tt.kind+`"` {
				t.Errorf("mcp.kind = %v", got)
			}
			p := getPath(t, c.Input, "params")
			switch {
			case tt.params == "" && p != nil:
				t.Errorf("params = %s, want none", jsonOf(t, p))
			case tt.params != "" && (p == nil || jsonOf(t, p) != tt.params):
				t.Errorf("params = %v, want %s", p, tt.params)
			}
		})
	}
}

func TestMCPBatch(t *testing.T) {
	body := `[
	  {"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get_pods","arguments":{"namespace":"payments"}}},
	  {"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"deploy","arguments":{"namespace":"production"}}},
	  {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}},
	  {"jsonrpc":"2.0","id":"6","result":{}}
	]`
	res := mustBuild(t, mcpRequest(body))
	if !res.Batch || len(res.Calls) != 4 {
		t.Fatalf("batch = %v, calls = %d", res.Batch, len(res.Calls))
	}
	want := []struct{ kind, tool, id string }{{KindRequest, "get_pods", "6"}, {KindRequest, "deploy", "7"}, {KindNotification, "", ""}, {KindResponse, "", `"6"`}}
	for i, w := range want {
		c := res.Calls[i]
		if c.MCP.Index != i || c.MCP.Kind != w.kind || c.MCP.Tool != w.tool || string(c.MCP.ID) != w.id {
			t.Errorf("call %d: %+v, want %+v", i, c.MCP, w)
		}
		if got := jsonOf(t, getPath(t, c.Input, "mcp", "index")); got != jsonOf(t, engine.Int(int64(i))) {
			t.Errorf("call %d: mcp.index = %s", i, got)
		}
		if got := jsonOf(t, getPath(t, c.Input, "mcp", "batch")); got != "true" {
			t.Errorf("call %d: mcp.batch = %s", i, got)
		}
		if getPath(t, c.Input, "agent", "id") == nil || getPath(t, c.Input, "context", "time") == nil {
			t.Errorf("call %d: shared parts missing", i)
		}
	}
	if got := jsonOf(t, getPath(t, res.Calls[1].Input, "params")); got != `{"namespace":"production"}` {
		t.Errorf("second element params = %s", got)
	}
}

func TestMCPStreamAndSessionEnd(t *testing.T) {
	for method, kind := range map[string]string{"GET": KindStream, "DELETE": KindSessionEnd} {
		t.Run(method, func(t *testing.T) {
			req := mcpRequest("")
			req.Method = method
			req.Authority = "MCP-K8S.platform.internal:443"
			res := mustBuild(t, req)
			c := res.Calls[0]
			if c.MCP == nil || c.MCP.Kind != kind || c.MCP.Server != "k8s" || c.MCP.ID != nil {
				t.Fatalf("MCPCall = %+v", c.MCP)
			}
			if getPath(t, c.Input, "params") != nil || getPath(t, c.Input, "mcp", "method") != nil {
				t.Errorf("unexpected params or method in %s", jsonOf(t, c.Input))
			}
		})
	}
}

func TestNonMCPPathOnMCPHost(t *testing.T) {
	req := mcpRequest(`{"anything":1}`)
	req.Path = "/mcp/other"
	res := mustBuild(t, req)
	if res.Calls[0].MCP != nil || getPath(t, res.Calls[0].Input, "mcp") != nil {
		t.Fatal("request to another path treated as MCP")
	}
}

func TestMCPViolations(t *testing.T) {
	mcp := func(body string) Request { return mcpRequest(body) }
	call := func(extra string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_pods","arguments":{}}` + extra + `}`
	}
	put := mcpRequest(`{}`)
	put.Method = "PUT"
	getWithBody := mcpRequest(call(""))
	getWithBody.Method = "GET"
	form := mcpRequest(`jsonrpc=2.0`)
	form.Headers[0][1] = "application/x-www-form-urlencoded"
	tests := []violationCase{
		{"malformed (contract case)", mcp(`{"jsonrpc": "2.0", "method": "tools/call", "params": `), CodeInvalidJSON, "body.params"},
		{"empty POST", mcp(``), CodeInvalidJSONRPC, "body"},
		{"form body", form, CodeInvalidJSONRPC, "body"},
		{"PUT", put, CodeMCPHTTPMethod, "request.method"},
		{"GET with body", getWithBody, CodeInvalidJSONRPC, "body"},
		{"not an object", mcp(`"hello"`), CodeInvalidJSONRPC, "body"},
		{"missing jsonrpc", mcp(`{"id":1,"method":"ping"}`), CodeInvalidJSONRPC, "body.jsonrpc"},
		{"jsonrpc 1.0", mcp(`{"jsonrpc":"1.0","id":1,"method":"ping"}`), CodeInvalidJSONRPC, "body.jsonrpc"},
		{"jsonrpc number", mcp(`{"jsonrpc":2.0,"id":1,"method":"ping"}`), CodeInvalidJSONRPC, "body.jsonrpc"},
		{"unknown member", mcp(call(`,"extra":true`)), CodeInvalidJSONRPC, "body.extra"},
		{"method not a string", mcp(`{"jsonrpc":"2.0","id":1,"method":7}`), CodeInvalidJSONRPC, "body.method"},
		{"empty method", mcp(`{"jsonrpc":"2.0","id":1,"method":""}`), CodeInvalidJSONRPC, "body.method"},
		{"null id on request", mcp(`{"jsonrpc":"2.0","id":null,"method":"ping"}`), CodeInvalidJSONRPC, "body.id"},
		{"fractional id", mcp(`{"jsonrpc":"2.0","id":1.5,"method":"ping"}`), CodeInvalidJSONRPC, "body.id"},
		{"exponent id", mcp(`{"jsonrpc":"2.0","id":1e3,"method":"ping"}`), CodeInvalidJSONRPC, "body.id"},
		{"object id", mcp(`{"jsonrpc":"2.0","id":{},"method":"ping"}`), CodeInvalidJSONRPC, "body.id"},
		{"bool id on response", mcp(`{"jsonrpc":"2.0","id":true,"result":{}}`), CodeInvalidJSONRPC, "body.id"},
		{"request with result", mcp(call(`,"result":{}`)), CodeInvalidJSONRPC, "body"},
		{"scalar params", mcp(`{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}`), CodeInvalidJSONRPC, "body.params"},
		{"tools/call without params", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`), CodeInvalidJSONRPC, "body.params"},
		{"tools/call array params", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["get_pods"]}`), CodeInvalidJSONRPC, "body.params"},
		{"tools/call without name", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`), CodeInvalidJSONRPC, "body.params.name"},
		{"tools/call empty name", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}`), CodeInvalidJSONRPC, "body.params.name"},
		{"tools/call name not string", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["deploy"]}}`), CodeInvalidJSONRPC, "body.params.name"},
		{"tools/call arguments array", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[]}}`), CodeInvalidJSONRPC, "body.params.arguments"},
		{"tools/call arguments null", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null}}`), CodeInvalidJSONRPC, "body.params.arguments"},
		{"duplicate argument", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{"namespace":"staging","namespace":"production"}}}`), CodeDuplicateKey, "body.params.arguments.namespace"},
		{"duplicate tool name", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_pods","name":"deploy"}}`), CodeDuplicateKey, "body.params.name"},
		{"duplicate method", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`), CodeDuplicateKey, "body.method"},
		{"argument out of range", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"scale","arguments":{"replicas":1e70000}}}`), CodeNumberOutOfRange, "body.params.arguments.replicas"},
		{"id out of range", mcp(`{"jsonrpc":"2.0","id":1e70000,"method":"ping"}`), CodeNumberOutOfRange, "body.id"},
		// Batches compare ids (duplicate_id): a long id would make that slow.
		{"argument too long", mcp(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"scale","arguments":{"replicas":1` + strings.Repeat("0", 256) + `}}}`), CodeNumberOutOfRange, "body.params.arguments.replicas"},
		{"id too long", mcp(`[{"jsonrpc":"2.0","id":1` + strings.Repeat("0", 256) + `,"method":"ping"}]`), CodeNumberOutOfRange, "body[0].id"},
		{"response without result or error", mcp(`{"jsonrpc":"2.0","id":1}`), CodeInvalidJSONRPC, "body"},
		{"response with both", mcp(`{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`), CodeInvalidJSONRPC, "body"},
		{"response with params", mcp(`{"jsonrpc":"2.0","id":1,"result":{},"params":{}}`), CodeInvalidJSONRPC, "body.params"},
		{"neither method nor id", mcp(`{"jsonrpc":"2.0"}`), CodeInvalidJSONRPC, "body"},
		{"empty batch", mcp(`[]`), CodeEmptyBatch, "body"},
		{"nested batch", mcp(`[` + call("") + `,[` + call("") + `]]`), CodeNestedBatch, "body[1]"},
		{"bad element in batch", mcp(`[` + call("") + `,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{}}]`), CodeInvalidJSONRPC, "body[1].params.name"},
		{"scalar in batch", mcp(`[` + call("") + `,1]`), CodeInvalidJSONRPC, "body[1]"},
		{"duplicate ids in batch", mcp(`[` + call("") + `,{"jsonrpc":"2.0","id":1,"method":"ping"}]`), CodeDuplicateID, "body[1].id"},
		{"duplicate string ids", mcp(`[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"a","method":"ping"}]`), CodeDuplicateID, "body[1].id"},
		{"duplicate key in batch element", mcp(`[` + call("") + `,{"jsonrpc":"2.0","id":2,"id":3,"method":"ping"}]`), CodeDuplicateKey, "body[1].id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkViolation(t, tt) })
	}
}

func TestMCPBatchAllowsSameIDAcrossKinds(t *testing.T) {
	// A response to the server's request 1 and our own request 1 are
	// different id spaces.
	res := mustBuild(t, mcpRequest(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"result":{}}]`))
	if len(res.Calls) != 2 {
		t.Fatalf("calls = %d", len(res.Calls))
	}
	// And 1 and "1" are different ids.
	mustBuild(t, mcpRequest(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":"1","method":"ping"}]`))
}

func TestViolationFieldsNameThePlace(t *testing.T) {
	res, err := Build(withPath("/v1/payments?limit=1&limit=2&x=%zz"), testIdentity(), testContext(), testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) == 0 || !strings.Contains(res.Violations[0].Error(), "request.query") {
		t.Errorf("violations = %v", res.Violations)
	}
}

// TestMCPDocuments compares whole MCP documents; the tests above look at
// their parts.
func TestMCPDocuments(t *testing.T) {
	shared := `"version": 1,
	  "agent": {"id": "billing-agent", "tenant": "acme", "chain": ["billing-agent"], "region": "eu-west-1",
	            "scope": ["payments"], "claims": {}},
	  "context": {"region": "eu-west-1", "time": "2026-11-24T10:00:00Z", "time_ns": 1795514400000000000,
	              "intent": "", "budget": {"spent_micro_usd_today": 19980000, "spent_usd_today": 19.98},
	              "state_seq": 0},`
	request := func(method, bodyType string) string {
		return `"request": {"method": "` + method + `", "scheme": "https", "host": "mcp-k8s.platform.internal", "path": "/mcp",
	              "query": {}, "body_type": "` + bodyType + `",
	              "headers": {"content-type": "application/json", "accept": "application/json, text/event-stream"}}`
	}
	stream := mcpRequest("")
	stream.Method = "GET"
	for _, tt := range []struct {
		name string
		req  Request
		want string
	}{
		{"tools/call", mcpRequest(`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get_pods","arguments":{"namespace":"payments"}}}`),
			`{` + shared + request("POST", "json") + `,
			  "mcp": {"batch": false, "id": "a", "index": 0, "kind": "request", "method": "tools/call", "server": "k8s", "tool": "get_pods"},
			  "params": {"namespace": "payments"}}`},
		{"notification", mcpRequest(`{"jsonrpc":"2.0","method":"notifications/initialized"}`),
			`{` + shared + request("POST", "json") + `,
			  "mcp": {"batch": false, "index": 0, "kind": "notification", "method": "notifications/initialized", "server": "k8s"}}`},
		{"stream", stream,
			`{` + shared + request("GET", "none") + `,
			  "mcp": {"batch": false, "index": 0, "kind": "stream", "server": "k8s"}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := mustBuild(t, tt.req)
			if got, want := jsonOf(t, res.Calls[0].Input), canon(t, tt.want); got != want {
				t.Errorf("document:\n got %s\nwant %s", got, want)
			}
		})
	}
}
