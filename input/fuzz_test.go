package input

import (
	"net/url"
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

// FuzzNormalize checks path and host normalisation on their own: what is
// accepted keeps its meaning (the percent-decoded, dot-resolved path is the
// same before and after) and normalising again changes nothing.
func FuzzNormalize(f *testing.F) {
	for _, s := range [][2]string{
		{"/a/./b/../c%41%2e?x", "Example.COM.:8080"},
		{"/%2e%2E/x", "[::1]:1"},
		{"/a/b/c/../../d/", "a_b.c"},
		{"/x%C3%a9%7E", "h:0"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, raw, authority string) {
		if p, q, v := normalizePath(raw); v == nil {
			if !strings.HasPrefix(raw, p[:1]) || strings.Contains(q, "#") {
				t.Fatalf("normalizePath(%q) = %q, %q", raw, p, q)
			}
			again, _, v2 := normalizePath(p)
			if v2 != nil || again != p {
				t.Fatalf("not idempotent: %q -> %q -> %q (%v)", raw, p, again, v2)
			}
			rawPath, _, _ := strings.Cut(raw, "?")
			want, ok1 := referenceResolve(rawPath)
			got, ok2 := referenceResolve(p)
			if !ok1 || !ok2 || want != got {
				t.Fatalf("meaning changed: %q (%q) -> %q (%q)", raw, want, p, got)
			}
		}
		if h, v := normalizeHost(authority); v == nil {
			if h == "" || h != strings.ToLower(h) || strings.HasSuffix(h, ".") {
				t.Fatalf("normalizeHost(%q) = %q", authority, h)
			}
			if again, v2 := normalizeHost(h); v2 != nil || again != h {
				t.Fatalf("host not idempotent: %q -> %q -> %q (%v)", authority, h, again, v2)
			}
		}
	})
}

// referenceResolve is an independent, slow statement of what a path means:
// fully percent-decoded, then "." and ".." removed by url.URL's reference
// resolution, trailing slash kept.
func referenceResolve(p string) (string, bool) {
	dec, err := url.PathUnescape(p)
	if err != nil {
		return "", false
	}
	base, _ := url.Parse("http://h/")
	ref := &url.URL{Path: dec}
	return base.ResolveReference(ref).Path, true
}
