package wasmhost_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/edge/wasmhost"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/policies"
	"github.com/aegis-mesh/aegis/token"
)

// aegisFixtures are a signed runtime bundle of the payments example, the
// keys, and the JWKS, built once (compiling a policy runs OPA).
var aegisFx struct {
	once      sync.Once
	err       error
	bundleKey ed25519.PrivateKey
	tokenKey  ed25519.PrivateKey
	pubPEM    string
	jwks      string
	acme      []byte
	bench     []byte
	platform  []byte
}

func fixtures(t testing.TB) {
	t.Helper()
	aegisFx.once.Do(func() { aegisFx.err = buildFixtures() })
	if aegisFx.err != nil {
		t.Fatal(aegisFx.err)
	}
}

func buildFixtures() error {
	fx := &aegisFx
	var err error
	if fx.bundleKey, err = keys.Generate(rand.Reader); err != nil {
		return err
	}
	if fx.tokenKey, err = keys.Generate(rand.Reader); err != nil {
		return err
	}
	pem, err := keys.MarshalPublicPEM(fx.bundleKey.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	fx.pubPEM = string(pem)
	jwks, err := token.MarshalJWKS(fx.tokenKey.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	fx.jwks = string(jwks)
	now := time.Now().UTC().Truncate(time.Second)
	build := func(path string) ([]byte, error) {
		ps, errs := policies.LoadPath(path)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: %v", path, errs)
		}
		c, err := policies.Compile(context.Background(), ps, policies.Options{SkipWasm: true})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		_, runtime, err := policies.BuildBundles(c, policies.BundleOptions{Revision: 1, CreatedAt: now.Add(-time.Hour),
			ExpiresAt: now.Add(24 * time.Hour), SignKey: fx.bundleKey})
		return runtime, err
	}
	if fx.acme, err = build("../../policies/examples/payments.yaml"); err != nil {
		return err
	}
	if fx.platform, err = build("../../policies/examples/mcp-devops.yaml"); err != nil {
		return err
	}
	fx.bench, err = build("../../filter/testdata/bench.yaml")
	return err
}

func aegisConfig(bundles map[string][]byte, extra string) []byte {
	enc := map[string]string{}
	for t, b := range bundles {
		enc[t] = base64.StdEncoding.EncodeToString(b)
	}
	bj, _ := json.Marshal(enc)
	s := `{"bundles":` + string(bj) + `,"jwks":` + aegisFx.jwks + `,"node":{"id":"node-1","region":"eu-west-1"}`
	if extra != "" {
		s += "," + extra
	}
	return []byte(s + "}")
}

func mintToken(t testing.TB, agent, tenant string) string {
	t.Helper()
	sub, act := token.Delegate(agent)
	tok, err := token.Mint(aegisFx.tokenKey, token.Claims{Subject: sub, Act: act, Tenant: tenant, Region: "eu-west-1",
		IssuedAt: time.Now().Add(-time.Minute).Unix(), ExpiresAt: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// upstreamRecorder is the tool behind the edge: it records what reached it.
type upstreamRecorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	header http.Header
	body   string
	length int64
}

func (u *upstreamRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, recorded{header: r.Header.Clone(), body: string(b), length: r.ContentLength})
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`)
}

func (u *upstreamRecorder) last() (recorded, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return recorded{}, 0
	}
	return u.reqs[len(u.reqs)-1], len(u.reqs)
}

func newAegisPool(t testing.TB, size int, conf []byte) *wasmhost.Pool {
	t.Helper()
	fixtures(t)
	ctx := context.Background()
	tt, _ := t.(*testing.T)
	var mod *wasmhost.Module
	if tt != nil {
		mod = compiled(tt, aegisWasm)
	} else {
		m, err := wasmhost.Compile(ctx, aegisWasm, wasmhost.CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(ctx) })
		mod = m
	}
	pool, err := wasmhost.NewPool(ctx, mod, wasmhost.PoolConfig{
		Size:         size,
		PluginConfig: conf,
		Env:          map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": aegisFx.pubPEM},
		Logger:       quietLogger(t),
		LogLevel:     3,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close(ctx) })
	return pool
}

const paymentsHost = "payments.acme.internal"

func TestAegisFilterRequests(t *testing.T) {
	fixtures(t)
	pool := newAegisPool(t, 2, aegisConfig(map[string][]byte{"acme": aegisFx.acme}, ""))
	up := &upstreamRecorder{}
	var infoMu sync.Mutex
	var lastInfo *wasmhost.StreamInfo
	h := pool.Handler(up)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, info := wasmhost.WithStreamInfo(r.Context())
		h.ServeHTTP(w, r.WithContext(ctx))
		infoMu.Lock()
		lastInfo = info
		infoMu.Unlock()
	}))
	defer front.Close()
	billing := mintToken(t, "billing-agent", "acme")

	type want struct {
		status    int
		reached   bool
		errorCode string
		action    string
	}
	cases := []struct {
		name    string
		method  string
		host    string
		path    string
		token   string
		headers map[string]string
		body    string
		want    want
		check   func(t *testing.T, got recorded)
	}{
		{name: "allow", method: "POST", host: paymentsHost, path: "/v1/payments", token: billing,
			headers: map[string]string{"X-Aegis-Intent": "pay_invoice", "X-Aegis-Decision-Id": "forged"},
			body:    `{"amount":120.5,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`,
			want:    want{status: 200, reached: true, action: "allow"},
			check: func(t *testing.T, got recorded) {
				if id := got.header.Get("X-Aegis-Decision-Id"); len(id) != 32 || id == "forged" {
					t.Errorf("decision id %q", id)
				}
				if got.header.Get("Authorization") != "" || got.header.Get("X-Aegis-Intent") != "" {
					t.Errorf("credential or aegis header forwarded: %v", got.header)
				}
			}},
		{name: "allow without body", method: "GET", host: "billing.acme.internal", path: "/v1/invoices/42", token: billing,
			want: want{status: 200, reached: true, action: "allow"}},
		{name: "missing token", method: "POST", host: paymentsHost, path: "/v1/payments",
			body: `{"amount":1,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`,
			want: want{status: 401, errorCode: "unauthorized"}},
		{name: "forged token", method: "GET", host: "billing.acme.internal", path: "/v1/invoices/1", token: billing[:len(billing)-4] + "AAAA",
			want: want{status: 401, errorCode: "unauthorized"}},
		{name: "deny", method: "POST", host: paymentsHost, path: "/v1/payments", token: billing,
			body: `{"amount":60000,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`,
			want: want{status: 403, errorCode: "policy_violation", action: "deny"}},
		{name: "approval needed", method: "POST", host: paymentsHost, path: "/v1/payments", token: billing,
			body: `{"amount":7500,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`,
			want: want{status: 403, errorCode: "approval_needed", action: "approval_needed"}},
		{name: "sanitize", method: "POST", host: paymentsHost, path: "/v1/payments", token: billing,
			body: `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000","memo":"card 4111 1111 1111 1111 thanks"}`,
			want: want{status: 200, reached: true, action: "sanitize"},
			check: func(t *testing.T, got recorded) {
				var fwd map[string]any
				if err := json.Unmarshal([]byte(got.body), &fwd); err != nil || fwd["memo"] != "card [card] thanks" {
					t.Errorf("forwarded body %s (%v)", got.body, err)
				}
				if got.length != int64(len(got.body)) {
					t.Errorf("content-length %d for %d bytes", got.length, len(got.body))
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, before := up.last()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, front.URL+tc.path, body)
			req.Host = tc.host
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			rb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want.status, rb)
			}
			got, after := up.last()
			if reached := after > before; reached != tc.want.reached {
				t.Fatalf("reached upstream: %v, want %v", reached, tc.want.reached)
			}
			if tc.want.errorCode != "" {
				var m map[string]any
				if err := json.Unmarshal(rb, &m); err != nil || m["error"] != tc.want.errorCode {
					t.Errorf("reply %s (%v), want error %s", rb, err, tc.want.errorCode)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("content-type %q", ct)
				}
			}
			infoMu.Lock()
			info := lastInfo
			infoMu.Unlock()
			if tc.want.action != "" {
				var st map[string]any
				if err := json.Unmarshal(info.FilterState["aegis.decision"], &st); err != nil || st["action"] != tc.want.action {
					t.Errorf("filter state %s (%v), want action %s", info.FilterState["aegis.decision"], err, tc.want.action)
				}
			}
			if info.Status != tc.want.status || info.Failure != "" {
				t.Errorf("stream info %+v", info)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
	m := pool.Metrics()
	for name, want := range map[string]uint64{"aegis.decisions.allow": 2, "aegis.decisions.deny": 1,
		"aegis.decisions.sanitize": 1, "aegis.decisions.approval_needed": 1, "aegis.requests.unauthorized": 2} {
		if got := m.Counters[name]; got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if m.Pool.Traps != 0 || m.Pool.Instances != 2 || len(m.Pool.Memory) != 2 {
		t.Errorf("pool stats %+v", m.Pool)
	}
}

// TestAegisToolsList: an MCP tools/list response, JSON or a streamed event
// stream, reaches the agent filtered to the tools it may call.
func TestAegisToolsList(t *testing.T) {
	fixtures(t)
	pool := newAegisPool(t, 1, aegisConfig(map[string][]byte{"platform": aegisFx.platform}, ""))
	tools := `{"jsonrpc":"2.0","id":10,"result":{"tools":[{"name":"get_pods"},{"name":"deploy"},{"name":"get_logs"},{"name":"undeclared"}]}}`
	cases := []struct {
		name, ct string
		chunks   []string // written and flushed one by one
		want     []string
		absent   []string
	}{
		{"json", "application/json", []string{tools[:40], tools[40:]}, []string{`"get_pods"`, `"get_logs"`}, []string{"deploy", "undeclared"}},
		{"event stream", "text/event-stream", []string{"event: message\n", "data: " + tools + "\n\n"}, []string{"data: ", `"get_logs"`}, []string{"deploy"}},
		{"hostile", "application/json", []string{`{"jsonrpc":"2.0","id":10,"result":{"tools":[]},"result":{"tools":[{"name":"deploy"}]}}`},
			[]string{`"error"`, "could not be checked"}, []string{"deploy"}},
	}
	oncall := mintToken(t, "oncall-assistant", "platform")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", tc.ct)
				w.Header().Set("Content-Length", strconv.Itoa(len(strings.Join(tc.chunks, ""))))
				for _, c := range tc.chunks {
					io.WriteString(w, c)
					w.(http.Flusher).Flush()
				}
			})
			front := httptest.NewServer(pool.Handler(up))
			defer front.Close()
			req, _ := http.NewRequest("POST", front.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":10,"method":"tools/list"}`))
			req.Host = "mcp-k8s.platform.internal"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+oncall)
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := string(b)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.ct {
				t.Fatalf("status %d, content-type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(b)) {
				t.Errorf("content-length %s for %d bytes", cl, len(b))
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("forwarded %s lacks %s", got, w)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("forwarded %s contains %s", got, a)
				}
			}
		})
	}
}
