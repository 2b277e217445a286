package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/controlplane/nodes"
)

// enrollShared enrolls a node of home that also serves the tenants in
// serves, with a join token from the global admin.
func (h *harness) enrollShared(home string, serves ...string) node {
	h.t.Helper()
	r := h.expect(h.do("POST", "/v1/tenants/"+home+"/join-tokens", h.admin, map[string]any{"region": "eu", "role": "gateway", "serves": serves}), 201, "")
	jt := r.json(h.t)["join_token"].(string)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		h.t.Fatal(err)
	}
	r = h.expect(h.do("POST", "/v1/nodes/enroll", "", map[string]any{"join_token": jt, "public_key": base64.StdEncoding.EncodeToString(pub),
		"proof": base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(nodes.EnrollProofPrefix+jt)))}), 201, "")
	m := r.json(h.t)
	want := append([]string{home}, serves...)
	slices.Sort(want)
	if got := toStrings(m["serves"]); m["tenant"] != home || !slices.Equal(got, want) {
		h.t.Fatalf("enrolled as %v, want home %s serving %v", m, home, want)
	}
	block, _ := pem.Decode([]byte(m["certificate"].(string)))
	if block == nil {
		h.t.Fatal("enrollment returned no certificate")
	}
	cert := tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: priv}
	return node{id: m["node_id"].(string), token: m["token"].(string), client: h.clientWith(&cert)}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, s := range l {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

// publish submits, approves and publishes the example policy for tenant.
func (h *harness) publish(tenant string) {
	h.t.Helper()
	tok := h.token("pub-"+tenant, tenant, "author", "approver", "publisher")
	src := strings.Replace(examplePolicy(h.t), "tenant: acme", "tenant: "+tenant, 1)
	h.expect(h.do("POST", "/v1/tenants/"+tenant+"/policies", tok, map[string]any{"files": map[string]string{"payments.yaml": src}}), 201, "")
	h.expect(h.do("POST", "/v1/tenants/"+tenant+"/policies/1/approve", tok, nil), 200, "")
	h.expect(h.do("POST", "/v1/tenants/"+tenant+"/releases", tok, map[string]any{"version": 1}), 201, "")
}

// TestSharedGateway: a node enrolled in acme to serve platform too fetches
// both tenants' bundles and states, by token and over mTLS; an ordinary
// acme node still cannot; only a global admin creates such a join token.
func TestSharedGateway(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dsn, dir string) {
		h := start(t, dsn, dir)
		for _, name := range []string{"acme", "platform", "globex"} {
			h.tenant(name, false, 1)
			h.publish(name)
		}
		acmeAdmin := h.token("ann", "acme", "admin")
		h.expect(h.do("POST", "/v1/tenants/acme/join-tokens", acmeAdmin, map[string]any{"region": "eu", "role": "gateway", "serves": []string{"platform"}}), 403, "forbidden")
		h.expect(h.do("POST", "/v1/tenants/acme/join-tokens", h.admin, map[string]any{"region": "eu", "role": "gateway", "serves": []string{"nosuch"}}), 404, "unknown_tenant")
		h.expect(h.do("POST", "/v1/tenants/acme/join-tokens", h.admin, map[string]any{"region": "eu", "role": "gateway", "serves": []string{"a b"}}), 400, "bad_request")

		gw := h.enrollShared("acme", "platform")
		plain := h.enroll("acme", "eu", "gateway")
		for _, c := range []struct {
			name   string
			client *http.Client
			token  string
		}{{"token", nil, gw.token}, {"mtls", gw.client, ""}} {
			for _, tenant := range []string{"acme", "platform"} {
				b := h.expect(h.req(c.client, "GET", "/v1/tenants/"+tenant+"/bundle", c.token, nil), 200, "")
				opened, err := bundle.Open(b.body, bundle.Limits{})
				if err != nil || opened.Manifest.Tenant != tenant {
					t.Fatalf("%s: bundle of %s: %v", c.name, tenant, err)
				}
				h.expect(h.req(c.client, "GET", "/v1/tenants/"+tenant+"/state", c.token, nil), 200, "")
			}
			h.expect(h.req(c.client, "GET", "/v1/tenants/globex/bundle", c.token, nil), 403, "forbidden")
			h.expect(h.req(c.client, "GET", "/v1/tenants/globex/state", c.token, nil), 403, "forbidden")
		}
		h.expect(h.do("GET", "/v1/tenants/acme/bundle", plain.token, nil), 200, "")
		h.expect(h.do("GET", "/v1/tenants/platform/bundle", plain.token, nil), 403, "forbidden")
		h.expect(h.req(plain.client, "GET", "/v1/tenants/platform/state", "", nil), 403, "forbidden")

		// Listings show what each node serves; the shared node is listed
		// under its home tenant only.
		ns := h.expect(h.do("GET", "/v1/tenants/acme/nodes", h.admin, nil), 200, "").json(t)["nodes"].([]any)
		found := false
		for _, n := range ns {
			m := n.(map[string]any)
			if m["node_id"] == gw.id {
				found = slices.Equal(toStrings(m["serves"]), []string{"acme", "platform"})
			} else if m["serves"] != nil {
				t.Errorf("ordinary node listed with serves: %v", m)
			}
		}
		if !found {
			t.Fatalf("shared node not listed with its serves: %v", ns)
		}
		// Disabling the node ends its reach into every tenant.
		h.expect(h.do("DELETE", "/v1/tenants/acme/nodes/"+gw.id, h.admin, nil), 204, "")
		h.expect(h.do("GET", "/v1/tenants/platform/bundle", gw.token, nil), 401, "unauthenticated")
	})
}
