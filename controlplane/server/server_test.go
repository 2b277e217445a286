package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/nodes"
	"github.com/aegis-mesh/aegis/controlplane/notify"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/state"
)

func TestAuthAndTenants(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dsn, dir string) {
		h := start(t, dsn, dir)
		fi, err := os.Stat(filepath.Join(dir, "admin.token"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("admin token file: %v mode %v", err, fi.Mode())
		}
		h.expect(h.do("GET", "/healthz", "", nil), 200, "")
		h.expect(h.do("GET", "/readyz", "", nil), 200, "")
		h.expect(h.do("GET", "/v1/tenants", "", nil), 401, "unauthenticated")
		h.expect(h.do("GET", "/v1/tenants", "not-a-token", nil), 401, "unauthenticated")
		h.expect(h.do("GET", "/v1/tenants", h.admin[:len(h.admin)-4]+"AAAA", nil), 401, "unauthenticated")

		h.tenant("acme", false, 1)
		h.expect(h.do("POST", "/v1/tenants", h.admin, map[string]any{"name": "acme"}), 409, "tenant_exists")
		h.expect(h.do("POST", "/v1/tenants", h.admin, map[string]any{"name": "../etc"}), 400, "bad_request")
		h.expect(h.do("POST", "/v1/tenants", h.admin, map[string]any{"name": "x", "extra": 1}), 400, "bad_request")
		r := h.expect(h.do("GET", "/v1/tenants/nosuch", h.admin, nil), 404, "unknown_tenant")
		if !strings.Contains(string(r.body), "nosuch") {
			t.Fatalf("404 does not name the tenant: %s", r.body)
		}

		author := h.token("alice", "acme", "author")
		h.expect(h.do("POST", "/v1/tenants", author, map[string]any{"name": "evil"}), 403, "forbidden")
		h.expect(h.do("POST", "/v1/tokens/api", author, map[string]any{"subject": "x", "roles": []string{"admin"}}), 403, "forbidden")
		h.expect(h.do("POST", "/v1/tokens/api", h.admin, map[string]any{"subject": "n", "tenant": "acme", "roles": []string{"node"}}), 400, "bad_request")
		h.expect(h.do("POST", "/v1/tokens/api", h.admin, map[string]any{"subject": "n", "tenant": "nosuch", "roles": []string{"author"}}), 404, "unknown_tenant")
		h.expect(h.do("POST", "/v1/tokens/api", h.admin, map[string]any{"subject": "n", "tenant": "acme", "roles": []string{"approver"}, "groups": []string{"payments leads"}}), 400, "bad_request")
		who := h.expect(h.do("GET", "/v1/whoami", author, nil), 200, "").json(t)
		if who["subject"] != "alice" || who["tenant"] != "acme" {
			t.Fatalf("whoami %v", who)
		}
		// A tenant admin stays inside its tenant.
		tadmin := h.token("root-acme", "acme", "admin")
		h.expect(h.do("POST", "/v1/tokens/api", tadmin, map[string]any{"subject": "x", "tenant": "", "roles": []string{"admin"}}), 403, "forbidden")
		h.tenant("globex", false, 1)
		h.expect(h.do("GET", "/v1/tenants/globex", tadmin, nil), 403, "forbidden")

		toks := h.expect(h.do("GET", "/v1/tenants/acme/tokens", h.admin, nil), 200, "").json(t)["tokens"].([]any)
		if len(toks) != 2 || strings.Contains(string(h.do("GET", "/v1/tenants/acme/tokens", h.admin, nil).body), author) {
			t.Fatalf("token listing: %v", toks)
		}
		h.expect(h.do("GET", "/v1/tenants/acme/tokens", author, nil), 403, "forbidden")

		// Revocation takes effect on the next request.
		jti := who["jti"].(string)
		h.expect(h.do("DELETE", "/v1/tokens/api/"+jti, h.admin, nil), 204, "")
		h.expect(h.do("GET", "/v1/whoami", author, nil), 401, "unauthenticated")

		// The bootstrap credential is written once per database.
		h.stop()
		if err := os.Remove(filepath.Join(dir, "admin.token")); err != nil {
			t.Fatal(err)
		}
		h2 := start(t, dsn, dir)
		if _, err := os.Stat(filepath.Join(dir, "admin.token")); !os.IsNotExist(err) {
			t.Fatalf("bootstrap admin token written twice: %v", err)
		}
		h2.expect(h2.do("GET", "/v1/tenants/acme", h.admin, nil), 200, "")
	})
}

func TestEnrollment(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dsn, dir string) {
		h := start(t, dsn, dir)
		h.tenant("acme", false, 1)
		h.tenant("globex", false, 1)
		n := h.enroll("acme", "eu-west-1", "gateway")

		// The node authenticates with its token, or with its certificate
		// alone over mTLS; the tenant comes from enrollment.
		for _, c := range []struct {
			name   string
			client *http.Client
			token  string
		}{{"token", nil, n.token}, {"mtls", n.client, ""}, {"both", n.client, n.token}} {
			r := h.req(c.client, "GET", "/v1/tenants/acme/state", c.token, nil)
			if r.status != 200 {
				t.Fatalf("%s: state status %d: %s", c.name, r.status, r.body)
			}
			h.expect(h.req(c.client, "GET", "/v1/tenants/globex/state", c.token, nil), 403, "forbidden")
			h.expect(h.req(c.client, "GET", "/v1/tenants/acme/bundle", c.token, nil), 404, "no_release")
		}
		other := h.enroll("globex", "us", "edge")
		h.expect(h.req(n.client, "GET", "/v1/whoami", other.token, nil), 401, "unauthenticated")

		tenant, pub, err := h.s.Nodes.NodeKey(context.Background(), n.id)
		if err != nil || tenant != "acme" || len(pub) != ed25519.PublicKeySize {
			t.Fatalf("NodeKey: %s %v", tenant, err)
		}

		// Join tokens are single-use and expire.
		jt := h.expect(h.do("POST", "/v1/tenants/acme/join-tokens", h.admin, map[string]any{"region": "eu", "role": "edge"}), 201, "").json(t)["join_token"].(string)
		pub2, priv2, _ := ed25519.GenerateKey(rand.Reader)
		body := func(jt string) map[string]any {
			return map[string]any{"join_token": jt, "public_key": base64.StdEncoding.EncodeToString(pub2),
				"proof": base64.StdEncoding.EncodeToString(ed25519.Sign(priv2, []byte(nodes.EnrollProofPrefix+jt)))}
		}
		h.expect(h.do("POST", "/v1/nodes/enroll", "", body(jt)), 201, "")
		h.expect(h.do("POST", "/v1/nodes/enroll", "", body(jt)), 409, "join_token_used")
		h.expect(h.do("POST", "/v1/nodes/enroll", "", body("aegis-join-nope")), 401, "join_token_invalid")
		old, err := h.s.Nodes.CreateJoinToken(context.Background(), "acme", "eu", "edge", "test", time.Now().Add(-2*time.Hour), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		h.expect(h.do("POST", "/v1/nodes/enroll", "", body(old.Secret)), 410, "join_token_expired")
		// A proof by another key does not register this key.
		bad := body(old.Secret)
		bad["proof"] = base64.StdEncoding.EncodeToString(make([]byte, 64))
		h.expect(h.do("POST", "/v1/nodes/enroll", "", bad), 400, "bad_request")
		h.expect(h.do("POST", "/v1/tenants/acme/join-tokens", h.admin, map[string]any{"region": "eu", "role": "router"}), 400, "bad_request")
		h.expect(h.do("POST", "/v1/tenants/nosuch/join-tokens", h.admin, map[string]any{"region": "eu", "role": "edge"}), 404, "unknown_tenant")

		// Renewal keeps the enrolled identity and issues a new token.
		rn := h.expect(h.req(n.client, "POST", "/v1/nodes/renew", "", nil), 200, "").json(t)
		if rn["node_id"] != n.id || rn["tenant"] != "acme" || rn["token"] == n.token {
			t.Fatalf("renewal %v", rn)
		}
		h.expect(h.do("GET", "/v1/tenants/acme/state", rn["token"].(string), nil), 200, "")
		h.expect(h.do("POST", "/v1/nodes/renew", h.admin, nil), 403, "forbidden")

		// Disabling a node ends both of its credentials.
		h.expect(h.do("DELETE", "/v1/tenants/acme/nodes/"+n.id, h.admin, nil), 204, "")
		h.expect(h.do("GET", "/v1/tenants/acme/state", n.token, nil), 401, "unauthenticated")
		h.expect(h.req(n.client, "GET", "/v1/tenants/acme/state", "", nil), 401, "unauthenticated")
		h.expect(h.do("GET", "/v1/tenants/acme/state", rn["token"].(string), nil), 401, "unauthenticated")
		if _, _, err := h.s.Nodes.NodeKey(context.Background(), n.id); err == nil {
			t.Fatal("NodeKey still finds a disabled node")
		}
	})
}

func multipartBody(files map[string]string) (string, string) {
	var b strings.Builder
	const boundary = "aegisboundary"
	for name, content := range files {
		b.WriteString("--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name + "\"\r\nContent-Type: application/yaml\r\n\r\n" + content + "\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.String(), "multipart/form-data; boundary=" + boundary
}

func TestPolicyLifecycle(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dsn, dir string) {
		h := start(t, dsn, dir)
		h.tenant("acme", true, 1)
		h.tenant("globex", false, 1)
		author := h.token("alice", "acme", "author", "approver")
		approver := h.token("bob", "acme", "approver")
		publisher := h.token("pat", "acme", "publisher")
		globexAuthor := h.token("gus", "globex", "author")
		src := examplePolicy(t)

		// Bad input: every rejection names the problem and stores nothing.
		r := h.expect(h.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"p.yaml": "apiVersion: aegis.policy/v1\nkind: [\n"}}), 422, "invalid_policy")
		errs := r.json(t)["details"].(map[string]any)["errors"].([]any)
		first := errs[0].(map[string]any)
		if first["file"] != "p.yaml" || first["line"].(float64) < 1 {
			t.Fatalf("malformed YAML error does not locate the problem: %v", first)
		}
		r = h.expect(h.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"p.yaml": strings.Replace(src, "unknown_agent: deny", "unknown_agent: deny\n  bogus_field: 1", 1)}}), 422, "invalid_policy")
		if !strings.Contains(string(r.body), "bogus_field") {
			t.Fatalf("unknown field not named: %s", r.body)
		}
		h.expect(h.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"p.yaml": src + strings.Repeat("#", 3<<20)}}), 413, "too_large")
		h.expect(h.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"../p.yaml": src}}), 400, "bad_request")
		h.expect(h.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"a.yaml": src, "b.yaml": src}}), 400, "bad_request")
		h.expect(h.do("POST", "/v1/tenants/nosuch/policies", h.admin, map[string]any{"files": map[string]string{"p.yaml": src}}), 404, "unknown_tenant")
		r = h.expect(h.do("POST", "/v1/tenants/globex/policies", globexAuthor, map[string]any{"files": map[string]string{"p.yaml": src}}), 422, "invalid_policy")
		if !strings.Contains(string(r.body), "tenant_mismatch") {
			t.Fatalf("policy for another tenant accepted or not explained: %s", r.body)
		}
		h.expect(h.do("POST", "/v1/tenants/acme/policies", globexAuthor, map[string]any{"files": map[string]string{"p.yaml": src}}), 403, "forbidden")
		vs := h.expect(h.do("GET", "/v1/tenants/acme/policies", author, nil), 200, "").json(t)["versions"].([]any)
		if len(vs) != 0 {
			t.Fatalf("rejected submissions left %d versions", len(vs))
		}

		// Submit (multipart), approve under the two-person rule, publish.
		mp, ct := multipartBody(map[string]string{"payments.yaml": src, "payments_test.yaml": "cases: []\n"})
		v := h.expect(h.do("POST", "/v1/tenants/acme/policies", author, mp, "Content-Type", ct), 201, "").json(t)
		if v["version"].(float64) != 1 || v["approved"] != false {
			t.Fatalf("submitted %v", v)
		}
		h.expect(h.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 1}), 409, "not_approved")
		arch := h.expect(h.do("GET", "/v1/tenants/acme/policies/1/archive", approver, nil), 200, "")
		if ab, err := bundle.Open(arch.body, bundle.Limits{}); err != nil || ab.Manifest.Kind != bundle.KindArchive || len(ab.Files["policy.wasm"]) == 0 {
			t.Fatalf("archive bundle: %v", err)
		}
		h.expect(h.do("GET", "/v1/tenants/acme/policies/9/archive", approver, nil), 404, "unknown_version")
		h.expect(h.do("POST", "/v1/tenants/acme/policies/1/approve", author, nil), 403, "self_approval")
		h.expect(h.do("POST", "/v1/tenants/acme/policies/1/approve", publisher, nil), 403, "forbidden")
		h.expect(h.do("POST", "/v1/tenants/acme/policies/1/approve", approver, nil), 200, "")
		h.expect(h.do("POST", "/v1/tenants/acme/releases", author, map[string]any{"version": 1}), 403, "forbidden")
		rel := h.expect(h.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 1, "stage": "observe"}), 201, "").json(t)
		if rel["revision"].(float64) != 1 || rel["stage"] != "observe" {
			t.Fatalf("release %v", rel)
		}
		h.expect(h.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 1, "revision": 1}), 409, "revision_downgrade")

		// A node of the tenant fetches it, verifiable with the published
		// bundle key; ETag and If-None-Match work; other tenants' nodes
		// cannot fetch it.
		n := h.enroll("acme", "eu", "gateway")
		b := h.expect(h.do("GET", "/v1/tenants/acme/bundle", n.token, nil), 200, "")
		etag := b.header.Get("ETag")
		h.expect(h.do("GET", "/v1/tenants/acme/bundle", n.token, nil, "If-None-Match", etag), 304, "")
		keysDoc := h.expect(h.do("GET", "/v1/keys/bundle", "", nil), 200, "").json(t)
		pem := keysDoc["keys"].([]any)[0].(map[string]any)["public_key_pem"].(string)
		pub, err := keys.ParsePublicPEM([]byte(pem))
		if err != nil {
			t.Fatal(err)
		}
		opened, err := bundle.Open(b.body, bundle.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := opened.Verify(pub, time.Now()); err != nil {
			t.Fatalf("served bundle does not verify: %v", err)
		}
		if m := opened.Manifest; m.Tenant != "acme" || m.Revision != 1 || m.Kind != bundle.KindRuntime || m.Release.Stage != "observe" || m.Release.Approvers[0] != "bob" {
			t.Fatalf("served manifest %+v", m)
		}
		g := h.enroll("globex", "eu", "gateway")
		h.expect(h.do("GET", "/v1/tenants/acme/bundle", g.token, nil), 403, "forbidden")
		h.expect(h.req(g.client, "GET", "/v1/tenants/acme/bundle", "", nil), 403, "forbidden")
		h.expect(h.do("GET", "/v1/tenants/acme/state", g.token, nil), 403, "forbidden")
		h.expect(h.do("GET", "/v1/tenants/globex/bundle", g.token, nil), 404, "no_release")

		// Live state is signed with the state key.
		st := h.expect(h.do("GET", "/v1/tenants/acme/state", n.token, nil), 200, "")
		skeys := h.expect(h.do("GET", "/v1/keys/state", "", nil), 200, "").json(t)
		spub, err := keys.ParsePublicPEM([]byte(skeys["keys"].([]any)[0].(map[string]any)["public_key_pem"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := state.Open(st.body, spub)
		if err != nil || doc.Tenant != "acme" || doc.Budgets["billing-agent"] != 20 {
			t.Fatalf("state %+v err %v", doc, err)
		}

		// Second version to enforce, then a rollback to revision 1.
		h.expect(h.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"payments.yaml": src}}), 201, "")
		h.expect(h.do("POST", "/v1/tenants/acme/policies/2/approve", approver, nil), 200, "")
		h.expect(h.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 2}), 201, "")
		h.expect(h.do("POST", "/v1/tenants/acme/releases/rollback", publisher, map[string]any{"to_revision": 2}), 409, "bad_rollback_target")
		h.expect(h.do("POST", "/v1/tenants/acme/releases/rollback", publisher, map[string]any{"to_revision": 9}), 409, "bad_rollback_target")
		rb := h.expect(h.do("POST", "/v1/tenants/acme/releases/rollback", publisher, map[string]any{"to_revision": 1}), 201, "").json(t)
		if rb["revision"].(float64) != 1 || rb["replaces"].(float64) != 2 || rb["seq"].(float64) != 3 {
			t.Fatalf("rollback %v", rb)
		}
		events := h.expect(h.do("GET", "/v1/tenants/acme/policy-events", h.admin, nil), 200, "").json(t)["events"].([]any)
		if len(events) != 7 {
			t.Fatalf("%d lifecycle events, want 7: %v", len(events), events)
		}

		metrics := string(h.expect(h.do("GET", "/metrics", "", nil), 200, "").body)
		for _, want := range []string{
			`aegis_policy_transitions_total{result="ok",transition="publish"} 2`,
			`aegis_policy_transitions_total{result="self_approval",transition="approve"} 1`,
			`aegis_cp_http_requests_total{code="422",route="POST /v1/tenants/{tenant}/policies"} 3`,
			`aegis_cp_http_requests_total{code="304",route="GET /v1/tenants/{tenant}/bundle"} 1`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s", want)
			}
		}

		// Restart: releases, state seq and credentials come back.
		seq := doc.Seq
		h.stop()
		h2 := start(t, dsn, dir)
		h2.admin = h.admin
		rs := h2.expect(h2.do("GET", "/v1/tenants/acme/releases", publisher, nil), 200, "").json(t)["releases"].([]any)
		if len(rs) != 3 {
			t.Fatalf("%d releases after restart", len(rs))
		}
		b2 := h2.expect(h2.do("GET", "/v1/tenants/acme/bundle", n.token, nil), 200, "")
		opened2, err := bundle.Open(b2.body, bundle.Limits{})
		if err != nil || opened2.Manifest.Revision != 1 || opened2.Manifest.Release.Replaces != 2 {
			t.Fatalf("bundle after restart: %v %+v", err, opened2.Manifest.Release)
		}
		st2 := h2.expect(h2.do("GET", "/v1/tenants/acme/state", n.token, nil), 200, "")
		doc2, err := state.Open(st2.body, spub)
		if err != nil || doc2.Seq < seq {
			t.Fatalf("state after restart: seq %d (was %d) err %v", doc2.Seq, seq, err)
		}
	})
}

// Two replicas on one Postgres: a release published on one reaches the
// other's subscribers through LISTEN/NOTIFY, and either serves it.
func TestReplicasNotify(t *testing.T) {
	t.Parallel()
	dsn := dbtest.NewDSN(t, db.Postgres)
	dir := t.TempDir()
	a := start(t, dsn, dir)
	b := start(t, dsn, dir) // same data dir: same CA and keys
	a.tenant("acme", false, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := b.s.Notifier.Subscribe(ctx)
	author := a.token("alice", "acme", "author", "approver")
	publisher := a.token("pat", "acme", "publisher")
	a.expect(a.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"payments.yaml": examplePolicy(t)}}), 201, "")
	a.expect(a.do("POST", "/v1/tenants/acme/policies/1/approve", author, nil), 200, "")
	a.expect(a.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 1}), 201, "")
	guard := time.After(20 * time.Second)
	for got := false; !got; {
		select {
		case e := <-events:
			got = e.Tenant == "acme" && e.Kind == notify.KindRelease
		case <-guard:
			t.Fatal("replica b never heard of the release")
		}
	}
	n := a.enroll("acme", "eu", "edge")
	r := b.expect(b.do("GET", "/v1/tenants/acme/bundle", n.token, nil), 200, "")
	if r.header.Get("X-Aegis-Revision") != "1" {
		t.Fatalf("replica b serves revision %q", r.header.Get("X-Aegis-Revision"))
	}
}
