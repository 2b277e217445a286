package input

import (
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input/internal/strictjson"
)

// FuzzBuild throws arbitrary request lines, headers and bodies at Build, at
// a plain endpoint and at an MCP endpoint, and checks the contract: no
// panic, violations and documents never together, every document is valid
// strict JSON within the depth bound, and paths come out normalised.
func FuzzBuild(f *testing.F) {
	f.Add("POST", "/v1/payments?limit=1", "content-type", "application/json", []byte(`{"amount":1,"memo":"x"}`))
	f.Add("POST", "/mcp", "content-type", "application/json", []byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"b":[1,{"c":null}]}}},{"jsonrpc":"2.0","method":"n"}]`))
	f.Add("GET", "/a/./b/../%2e%2E/c%41?x=%41+b&y", "x-aegis-intent", "pay", []byte(nil))
	f.Add("DELETE", "/mcp", "accept", "*/*", []byte(nil))
	f.Add("POST", "/v1//x;y?a=1&a=2", "content-encoding", "gzip", []byte(`{"a":1,"a":2}`))
	f.Add("post", "/mcp", "content-type", "application/json; charset=utf-8", []byte(`{"jsonrpc":"2.0","id":null,"error":{}}`))
	f.Fuzz(func(t *testing.T, method, path, hname, hvalue string, body []byte) {
		opts := Options{MaxBodyBytes: 2048, MaxDepth: 8, MCPEndpoints: []MCPEndpoint{{Server: "s", Host: "mcp.example", Path: "/mcp"}}}
		for _, host := range []string{"api.example", "MCP.example:443"} {
			req := Request{Method: method, Scheme: "https", Authority: host, Path: path,
				Headers: [][2]string{{"content-type", "application/json"}, {hname, hvalue}}, Body: body}
			res, err := Build(req, testIdentity(), testContext(), opts)
			if err != nil {
				t.Fatalf("Build returned a caller error for request input: %v", err)
			}
			if len(res.Violations) > 0 {
				if res.Calls != nil || res.Body != nil {
					t.Fatalf("documents returned with violations %v", res.Violations)
				}
				for _, v := range res.Violations {
					if v.Code == "" || v.Field == "" || v.Message == "" {
						t.Fatalf("incomplete violation %#v", v)
					}
				}
				continue
			}
			if len(res.Calls) == 0 {
				t.Fatal("no violations and no calls")
			}
			for _, c := range res.Calls {
				checkDocument(t, c.Input, opts.MaxDepth)
			}
		}
	})
}

func checkDocument(t *testing.T, doc engine.Value, maxDepth int) {
	t.Helper()
	js, err := engine.ToJSON(doc)
	if err != nil {
		t.Fatalf("document does not encode: %v", err)
	}
	// The document itself must survive our own strict parser: no
	// duplicate keys, valid UTF-8. Params sit 1 level down, MCP
	// arguments are shallower than the body they came from.
	if _, err := strictjson.Parse(js, maxDepth+1); err != nil {
		t.Fatalf("document is not strict JSON within depth %d: %v\n%s", maxDepth+1, err, js)
	}
	o := doc.(*engine.Object)
	req, _ := o.Get("request")
	pv, _ := req.(*engine.Object).Get("path")
	p, _ := engine.AsString(pv)
	if again, _, v := normalizePath(p); v != nil || again != p {
		t.Fatalf("path %q is not normalised (%q, %v)", p, again, v)
	}
	for _, bad := range []string{"//", "/./", "/../", "%2F", "%2f", "\\"} {
		if strings.Contains(p, bad) {
			t.Fatalf("path %q contains %q", p, bad)
		}
	}
	hv, _ := req.(*engine.Object).Get("host")
	if h, _ := engine.AsString(hv); h != strings.ToLower(h) || strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		t.Fatalf("host %q not normalised", h)
	}
}
