package xds

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"

	"github.com/aegis-mesh/aegis/controlplane/auth"
)

// httpEnv serves the xDS server's routes on loopback behind a stand-in for
// the control plane's authentication: the test header names the principal.
func httpEnv(t *testing.T, env *testEnv) *httptest.Server {
	t.Helper()
	principals := map[string]auth.Principal{
		"admin":         {Subject: "root", Roles: []auth.Role{auth.RoleAdmin}},
		"auditor-acme":  {Subject: "aud", Tenant: "acme", Roles: []auth.Role{auth.RoleAuditor}},
		"author-acme":   {Subject: "auth", Tenant: "acme", Roles: []auth.Role{auth.RoleAuthor}},
		"node-acme":     {Subject: "gw-1", Tenant: "acme", Roles: []auth.Role{auth.RoleNode}},
		"auditor-other": {Subject: "aud2", Tenant: "globex", Roles: []auth.Role{auth.RoleAuditor}},
	}
	mux := http.NewServeMux()
	env.srv.Register(mux)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := principals[r.Header.Get("X-Test-Principal")]; ok {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, url, principal string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if principal != "" {
		req.Header.Set("X-Test-Principal", principal)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func TestServeWasm(t *testing.T) {
	env := newEnv(t, nil)
	ts := httpEnv(t, env)
	resp, body := get(t, ts.URL+WasmPath, "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, env.wasm) || resp.Header.Get("Content-Type") != "application/wasm" {
		t.Fatalf("%d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	etag := resp.Header.Get("ETag")
	if etag != `"`+env.srv.build.wasmSHA256+`"` {
		t.Fatalf("etag %q", etag)
	}
	if resp, _ := get(t, ts.URL+WasmPath, "", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	if resp, body := get(t, ts.URL+WasmPath, "", map[string]string{"Range": "bytes=0-3"}); resp.StatusCode != http.StatusPartialContent || string(body) != "\x00asm" {
		t.Fatalf("range: %d %q", resp.StatusCode, body)
	}
}

func TestDriftAPI(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	ts := httpEnv(t, env)
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 1, "one")); err != nil {
		t.Fatal(err)
	}
	c := sotw.NewADSClient(ctx, nodeProto("gw-1", map[string]any{"role": "edge"}), typeECDS)
	if err := c.InitConnect(env.dial("gw-1", "acme")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(); err != nil {
		t.Fatal(err)
	}
	if err := c.Nack("wasm: failed to load"); err != nil {
		t.Fatal(err)
	}
	env.waitState("gw-1", StateNacked)

	for _, tc := range []struct {
		name, path, principal string
		status                int
		code                  string
	}{
		{"no principal", "/v1/drift", "", 401, "unauthorized"},
		{"author may not read drift", "/v1/drift", "author-acme", 403, "forbidden"},
		{"node may not read drift", "/v1/nodes", "node-acme", 403, "forbidden"},
		{"other tenant's auditor", "/v1/drift?tenant=acme", "auditor-other", 403, "forbidden"},
		{"bad tenant", "/v1/nodes?tenant=a%20b", "admin", 400, "bad_request"},
		{"bad state", "/v1/nodes?state=weird", "admin", 400, "bad_request"},
		{"history needs a store", "/v1/nodes/gw-1/history", "admin", 501, "no_store"},
		{"history of an unknown node", "/v1/nodes/nope/history", "admin", 404, "not_found"},
		{"history of another tenant's node", "/v1/nodes/gw-1/history", "auditor-other", 404, "not_found"},
		{"bad history limit", "/v1/nodes/gw-1/history?limit=0", "admin", 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, ts.URL+tc.path, tc.principal, nil)
			var e struct{ Error, Message string }
			if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || e.Error != tc.code || e.Message == "" {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}

	// The tenant's auditor sees its drift: the node NACKed revision 1.
	resp, body := get(t, ts.URL+"/v1/drift", "auditor-acme", nil)
	var d Drift
	if resp.StatusCode != 200 || json.Unmarshal(body, &d) != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if len(d.Nodes) != 1 || d.Nodes[0].State != StateNacked || d.Nodes[0].Nack.Error != "wasm: failed to load" || d.Nodes[0].Nack.Revision != 1 ||
		len(d.Published) != 1 || d.Published[0].Version != "v-one" || d.Counts[StateNacked] != 1 {
		t.Fatalf("drift %s", body)
	}
	// Another tenant's auditor reading without ?tenant= is scoped to its own.
	_, body = get(t, ts.URL+"/v1/drift", "auditor-other", nil)
	if err := json.Unmarshal(body, &d); err != nil || len(d.Nodes) != 0 || len(d.Published) != 0 {
		t.Fatalf("globex auditor sees %s", body)
	}
	_, body = get(t, ts.URL+"/v1/nodes?state=nacked", "admin", nil)
	var nodes struct{ Nodes []NodeStatus }
	if err := json.Unmarshal(body, &nodes); err != nil || len(nodes.Nodes) != 1 || nodes.Nodes[0].NodeID != "gw-1" {
		t.Fatalf("nodes %s", body)
	}
	_, body = get(t, ts.URL+"/v1/nodes?state=synced", "admin", nil)
	if err := json.Unmarshal(body, &nodes); err != nil || len(nodes.Nodes) != 0 {
		t.Fatalf("synced nodes %s", body)
	}
}
