//go:build !wasm

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/filter/internal/audit"
	"github.com/aegis-mesh/aegis/filter/internal/plugin"
	"github.com/aegis-mesh/aegis/filter/internal/quota"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/policies"
	"github.com/aegis-mesh/aegis/token"
)

// fixtures are built once per test binary: compiling a policy runs OPA.
var fx struct {
	bundleKey, otherKey ed25519.PrivateKey
	tokenKey, rogueKey  ed25519.PrivateKey
	bundlePubPEM        string
	jwks                string
	acme, acme2         []byte // payments.yaml, revisions 1 and 2
	acmeExpired         []byte
	acmeRogue           []byte // signed by a key outside the trust root
	platform            []byte // mcp-devops.yaml
	shadow              []byte // testdata/observe.yaml
	bench               []byte // testdata/bench.yaml
}

func buildFixtures() error {
	var err error
	for _, k := range []*ed25519.PrivateKey{&fx.bundleKey, &fx.otherKey, &fx.tokenKey, &fx.rogueKey} {
		if *k, err = keys.Generate(rand.Reader); err != nil {
			return err
		}
	}
	pem, err := keys.MarshalPublicPEM(fx.bundleKey.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	fx.bundlePubPEM = string(pem)
	jwks, err := token.MarshalJWKS(fx.tokenKey.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	fx.jwks = string(jwks)

	now := time.Now().UTC().Truncate(time.Second)
	// Valid from before the wasm guest's clock (see guestEpoch) until a day
	// from now, so that one set of bundles serves both runs.
	from := guestEpoch.Add(-time.Hour)
	build := func(path string, rev int64, created, expires time.Time, key ed25519.PrivateKey) ([]byte, error) {
		ps, errs := policies.LoadPath(path)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: %v", path, errs)
		}
		c, err := policies.Compile(context.Background(), ps, policies.Options{SkipWasm: true})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		_, runtime, err := policies.BuildBundles(c, policies.BundleOptions{Revision: rev, CreatedAt: created, ExpiresAt: expires, SignKey: key})
		return runtime, err
	}
	day := 24 * time.Hour
	steps := []struct {
		dst  *[]byte
		path string
		rev  int64
		c, e time.Time
		key  ed25519.PrivateKey
	}{
		{&fx.acme, "../policies/examples/payments.yaml", 1, from, now.Add(day), fx.bundleKey},
		{&fx.acme2, "../policies/examples/payments.yaml", 2, from, now.Add(day), fx.bundleKey},
		{&fx.acmeExpired, "../policies/examples/payments.yaml", 3, from.Add(-2 * day), from.Add(-day), fx.bundleKey},
		{&fx.acmeRogue, "../policies/examples/payments.yaml", 4, from, now.Add(day), fx.otherKey},
		{&fx.platform, "../policies/examples/mcp-devops.yaml", 1, from, now.Add(day), fx.bundleKey},
		{&fx.shadow, "testdata/observe.yaml", 1, from, now.Add(day), fx.bundleKey},
		{&fx.bench, "testdata/bench.yaml", 1, from, now.Add(day), fx.bundleKey},
	}
	for _, s := range steps {
		if *s.dst, err = build(s.path, s.rev, s.c, s.e, s.key); err != nil {
			return err
		}
	}
	return nil
}

// guestEpoch is the wall clock a module sees under proxytest's wazero
// runtime: wazero's deterministic fake clock, which starts here and moves
// by a millisecond per reading. Envoy gives the guest the real clock.
var guestEpoch = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)

// guestNow is the time the filter under test sees, near enough for
// day and minute windows.
func guestNow(vm types.VMContext) time.Time {
	if _, ok := vm.(proxytest.WasmVMContext); ok {
		return guestEpoch
	}
	return time.Now()
}

// pluginConfig renders a plugin configuration; bundles maps tenant → bytes.
func pluginConfig(bundles map[string][]byte, extra string) []byte {
	enc := map[string]string{}
	for t, b := range bundles {
		enc[t] = base64.StdEncoding.EncodeToString(b)
	}
	bj, _ := json.Marshal(enc)
	s := `{"bundles":` + string(bj) + `,"jwks":` + fx.jwks + `,"node":{"id":"node-1","region":"eu-west-1"}`
	if extra != "" {
		s += "," + extra
	}
	return []byte(s + "}")
}

func vmConfig() []byte {
	b, _ := json.Marshal(map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": fx.bundlePubPEM})
	return b
}

func allBundles() map[string][]byte {
	return map[string][]byte{"acme": fx.acme, "platform": fx.platform, "shadow": fx.shadow}
}

// start runs the VM and plugin start with the given configurations.
func start(t *testing.T, vm types.VMContext, vmConf, conf []byte) (proxytest.HostEmulator, func()) {
	t.Helper()
	opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration(conf)
	if vmConf != nil {
		opt = opt.WithVMConfiguration(vmConf)
	}
	host, reset := proxytest.NewHostEmulator(opt)
	if !host.StartVM() {
		reset()
		t.Fatalf("StartVM failed: %q", host.GetCriticalLogs())
	}
	return host, reset
}

func startPlugin(t *testing.T, vm types.VMContext, conf []byte) (proxytest.HostEmulator, func()) {
	t.Helper()
	host, reset := start(t, vm, vmConfig(), conf)
	if got := host.StartPlugin(); got != types.OnPluginStartStatusOK {
		reset()
		t.Fatalf("StartPlugin = %v; logs %q %q", got, host.GetCriticalLogs(), host.GetErrorLogs())
	}
	return host, reset
}

type tokenOpts struct {
	agent, tenant, region string
	actingFor             []string
	key                   ed25519.PrivateKey
	exp                   time.Duration
}

func mint(t *testing.T, o tokenOpts) string {
	t.Helper()
	if o.key == nil {
		o.key = fx.tokenKey
	}
	if o.exp == 0 {
		o.exp = time.Hour
	}
	if o.region == "" {
		o.region = "eu-west-1"
	}
	// Issued before the guest clock starts, expiring relative to the real
	// one: valid in both runs. An expired token expires before both.
	iat, exp := guestEpoch.Add(-time.Minute), time.Now().Add(o.exp)
	if o.exp < 0 {
		iat, exp = guestEpoch.Add(-2*time.Hour), guestEpoch.Add(-time.Hour)
	}
	sub, act := token.Delegate(o.agent, o.actingFor...)
	tok, err := token.Mint(o.key, token.Claims{Subject: sub, Act: act, Tenant: o.tenant, Region: o.region,
		IssuedAt: iat.Unix(), ExpiresAt: exp.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) [2]string { return [2]string{"authorization", "Bearer " + tok} }

type request struct {
	method, authority, path string
	headers                 [][2]string
	body                    string // "" with hasBody false: headers only
	hasBody                 bool
	chunks                  []string // body delivered in these pieces instead
}

func (r request) headerList() [][2]string {
	hs := [][2]string{{":method", r.method}, {":scheme", "https"}, {":authority", r.authority}, {":path", r.path}}
	if r.hasBody || len(r.chunks) > 0 {
		hs = append(hs, [2]string{"content-type", "application/json"})
		n := len(r.body)
		for _, c := range r.chunks {
			n += len(c)
		}
		hs = append(hs, [2]string{"content-length", strconv.Itoa(n)})
	}
	return append(hs, r.headers...)
}

type result struct {
	id       uint32
	action   types.Action // the last callback's action
	local    *proxytest.LocalHttpResponse
	headers  [][2]string // request headers as forwarded
	body     []byte      // request body as forwarded
	decision map[string]any
}

func (res result) localJSON(t *testing.T) map[string]any {
	t.Helper()
	if res.local == nil {
		t.Fatalf("no local reply (action %v)", res.action)
	}
	var m map[string]any
	if err := json.Unmarshal(res.local.Data, &m); err != nil {
		t.Fatalf("local reply %q: %v", res.local.Data, err)
	}
	return m
}

func send(t *testing.T, host proxytest.HostEmulator, r request) result {
	t.Helper()
	id := host.InitializeHttpContext()
	res := result{id: id}
	bodyless := !r.hasBody && len(r.chunks) == 0
	res.action = host.CallOnRequestHeaders(id, r.headerList(), bodyless)
	if !bodyless && host.GetSentLocalResponse(id) == nil {
		if res.action != types.ActionPause {
			t.Errorf("headers with a body to check: action %v, want pause", res.action)
		}
		chunks := r.chunks
		if len(chunks) == 0 {
			chunks = []string{r.body}
		}
		for i, c := range chunks {
			res.action = host.CallOnRequestBody(id, []byte(c), i == len(chunks)-1)
			if host.GetSentLocalResponse(id) != nil {
				break
			}
		}
	}
	res.local = host.GetSentLocalResponse(id)
	res.headers = host.GetCurrentRequestHeaders(id)
	res.body = host.GetCurrentRequestBody(id)
	if raw, err := host.GetProperty([]string{plugin.PropertyDecision}); err == nil {
		if err := json.Unmarshal(raw, &res.decision); err != nil {
			t.Errorf("filter state %q: %v", raw, err)
		}
	}
	host.CompleteHttpContext(id)
	return res
}

func header(hs [][2]string, name string) (string, bool) {
	for _, h := range hs {
		if strings.EqualFold(h[0], name) {
			return h[1], true
		}
	}
	return "", false
}

func counter(t *testing.T, host proxytest.HostEmulator, name string) uint64 {
	t.Helper()
	v, err := host.GetCounterMetric(name)
	if err != nil {
		t.Fatalf("metric %s: %v", name, err)
	}
	return v
}

func reasonsContain(m map[string]any, sub string) bool {
	rs, _ := m["reasons"].([]any)
	for _, r := range rs {
		if s, _ := r.(string); strings.Contains(strings.ToLower(s), strings.ToLower(sub)) {
			return true
		}
	}
	return false
}

const payments = "payments.acme.internal"

func payment(tok string, body string, extra ...[2]string) request {
	return request{method: "POST", authority: payments, path: "/v1/payments", body: body, hasBody: true,
		headers: append([][2]string{bearer(tok)}, extra...)}
}

// TestDecisions covers the four decisions on plain HTTP tools, enforced on
// the forwarded request or answered locally.
func TestDecisions(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), ""))
		defer reset()
		billing := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})

		t.Run("allow", func(t *testing.T) {
			res := send(t, host, payment(billing, `{"amount":120.5,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`,
				[2]string{"x-aegis-intent", "pay_invoice"}, [2]string{"x-aegis-decision-id", "forged"}, [2]string{"X-Aegis-Anything", "x"}))
			if res.local != nil || res.action != types.ActionContinue {
				t.Fatalf("action %v, local %+v", res.action, res.local)
			}
			id, ok := header(res.headers, plugin.HeaderDecisionID)
			if !ok || len(id) != 32 || id == "forged" {
				t.Errorf("decision id header %q (%v)", id, ok)
			}
			for _, h := range res.headers {
				// The shadow decision may be set: payments.yaml's observe-mode
				// weekend rule fires when the guest clock is on a weekend.
				if h[0] == "authorization" || (strings.HasPrefix(strings.ToLower(h[0]), "x-aegis-") &&
					h[0] != plugin.HeaderDecisionID && h[0] != plugin.HeaderShadowDecision) {
					t.Errorf("header %q forwarded", h)
				}
			}
			if res.decision["action"] != "allow" || res.decision["id"] != id || res.decision["agent"] != "billing-agent" ||
				res.decision["tool"] != "payments.create" || res.decision["policy_version"] != "acme-payments@1" {
				t.Errorf("filter state %v", res.decision)
			}
		})

		t.Run("headers only", func(t *testing.T) {
			res := send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/42", headers: [][2]string{bearer(billing)}})
			if res.local != nil || res.action != types.ActionContinue {
				t.Fatalf("action %v, local %+v", res.action, res.local)
			}
			if _, ok := header(res.headers, plugin.HeaderDecisionID); !ok {
				t.Error("no decision id")
			}
		})

		t.Run("deny", func(t *testing.T) {
			res := send(t, host, payment(billing, `{"amount":60000,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`))
			m := res.localJSON(t)
			if res.local.StatusCode != 403 || m["error"] != "policy_violation" || !reasonsContain(m, "params.amount") ||
				m["policy_version"] != "acme-payments@1" || len(m["decision_id"].(string)) != 32 {
				t.Errorf("reply %d %s", res.local.StatusCode, res.local.Data)
			}
			if res.decision["action"] != "deny" || res.decision["id"] != m["decision_id"] {
				t.Errorf("filter state %v", res.decision)
			}
		})

		t.Run("deny ambiguous body", func(t *testing.T) {
			res := send(t, host, payment(billing, `{"amount":1,"amount":2,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`))
			if m := res.localJSON(t); res.local.StatusCode != 403 || !reasonsContain(m, "duplicate") {
				t.Errorf("reply %d %s", res.local.StatusCode, res.local.Data)
			}
		})

		t.Run("deny number out of range", func(t *testing.T) {
			// Valid JSON the engine cannot hold: refused, and named for
			// what it is rather than as malformed JSON.
			res := send(t, host, payment(billing, `{"amount":1e70000,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`))
			m := res.localJSON(t)
			if res.local.StatusCode != 403 || m["error"] != "policy_violation" || !reasonsContain(m, "params.amount: number out of range") {
				t.Errorf("reply %d %s", res.local.StatusCode, res.local.Data)
			}
			if ids, _ := res.decision["rule_ids"].([]any); len(ids) != 1 || ids[0] != "input.number_out_of_range" {
				t.Errorf("filter state %v", res.decision)
			}
		})

		t.Run("deny number too long", func(t *testing.T) {
			// In the engine's range, but a policy comparing it would
			// convert it to math/big in quadratic time: refused by its
			// length before the engine sees it.
			for _, n := range []int{257, 256 << 10} { // the test config allows 512 KiB bodies
				amount := "1" + strings.Repeat("0", n-1)
				res := send(t, host, payment(billing, `{"amount":`+amount+`,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`))
				m := res.localJSON(t)
				if res.local.StatusCode != 403 || m["error"] != "policy_violation" || !reasonsContain(m, "params.amount: number out of range: "+strconv.Itoa(n)+" bytes long, at most 256 allowed") {
					t.Errorf("%d bytes: reply %d %.300s", n, res.local.StatusCode, res.local.Data)
				}
				if ids, _ := res.decision["rule_ids"].([]any); len(ids) != 1 || ids[0] != "input.number_out_of_range" {
					t.Errorf("%d bytes: filter state %v", n, res.decision)
				}
			}
		})

		t.Run("sanitize", func(t *testing.T) {
			res := send(t, host, request{method: "POST", authority: payments, path: "/v1/payments", headers: [][2]string{bearer(billing)},
				chunks: []string{`{"amount":10,"currency":"EUR",`, `"beneficiary_iban":"DE89370400440532013000",`, `"memo":"card 4111 1111 1111 1111 thanks"}`}})
			if res.local != nil || res.action != types.ActionContinue {
				t.Fatalf("action %v, local %+v", res.action, res.local)
			}
			var fwd map[string]any
			if err := json.Unmarshal(res.body, &fwd); err != nil || fwd["memo"] != "card [card] thanks" || fwd["currency"] != "EUR" {
				t.Errorf("forwarded body %s (%v)", res.body, err)
			}
			if cl, _ := header(res.headers, "content-length"); cl != strconv.Itoa(len(res.body)) {
				t.Errorf("content-length %s for %d bytes", cl, len(res.body))
			}
			if res.decision["action"] != "sanitize" {
				t.Errorf("filter state %v", res.decision)
			}
		})

		t.Run("approval needed", func(t *testing.T) {
			res := send(t, host, payment(billing, `{"amount":7500,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`))
			m := res.localJSON(t)
			if res.local.StatusCode != 403 || m["error"] != "approval_needed" || m["retry_with"] != "x-aegis-override" || !reasonsContain(m, "params.amount") {
				t.Errorf("reply %d %s", res.local.StatusCode, res.local.Data)
			}
		})

		t.Run("delegation", func(t *testing.T) {
			// billing-agent acting for support-agent: the tool must be
			// allowed for both, and payments.create is not support's.
			tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme", actingFor: []string{"support-agent"}})
			res := send(t, host, payment(tok, `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`))
			if res.local == nil || res.local.StatusCode != 403 {
				t.Fatalf("delegated payment not denied: action %v", res.action)
			}
			res = send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}})
			if res.local != nil {
				t.Errorf("delegated invoice read refused: %s", res.local.Data)
			}
		})

		t.Run("unknown agent", func(t *testing.T) {
			tok := mint(t, tokenOpts{agent: "mallory", tenant: "acme"})
			res := send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}})
			if res.local == nil || res.local.StatusCode != 403 {
				t.Errorf("unknown agent: action %v", res.action)
			}
		})

		for name, want := range map[string]uint64{"aegis.decisions.allow": 3, "aegis.decisions.sanitize": 1,
			"aegis.decisions.approval_needed": 1, "aegis.decisions.deny": 7} {
			if got := counter(t, host, name); got != want {
				t.Errorf("%s = %d, want %d", name, got, want)
			}
		}
	})
}

// TestIdentity: every way the token can be wrong is a 401 before any policy
// runs.
func TestIdentity(t *testing.T) {
	good := func(t *testing.T) string { return mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"}) }
	cases := []struct {
		name    string
		headers func(t *testing.T) [][2]string
		want    string
	}{
		{"missing", func(*testing.T) [][2]string { return nil }, "missing agent token"},
		{"not bearer", func(t *testing.T) [][2]string { return [][2]string{{"authorization", "Basic " + good(t)}} }, "not a Bearer"},
		{"twice", func(t *testing.T) [][2]string { return [][2]string{bearer(good(t)), bearer(good(t))} }, "more than once"},
		{"garbage", func(*testing.T) [][2]string { return [][2]string{bearer("x.y.z")} }, "malformed"},
		{"unknown key", func(t *testing.T) [][2]string {
			return [][2]string{bearer(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme", key: fx.rogueKey}))}
		}, "unknown key"},
		{"expired", func(t *testing.T) [][2]string {
			return [][2]string{bearer(mint(t, tokenOpts{agent: "billing-agent", tenant: "acme", exp: -10 * time.Minute}))}
		}, "expired"},
		{"alg none", func(t *testing.T) [][2]string {
			parts := strings.Split(good(t), ".")
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
			return [][2]string{bearer(h + "." + parts[1] + ".")}
		}, "invalid agent token"},
		{"tampered claims", func(t *testing.T) [][2]string {
			parts := strings.Split(good(t), ".")
			claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
			forged := strings.Replace(string(claims), "billing-agent", "support-agent", 1)
			return [][2]string{bearer(parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2])}
		}, "signature"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), ""))
		defer reset()
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				res := send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: c.headers(t)})
				m := res.localJSON(t)
				if res.local.StatusCode != 401 || m["error"] != "unauthorized" || !strings.Contains(m["message"].(string), c.want) {
					t.Errorf("reply %d %s, want 401 mentioning %q", res.local.StatusCode, res.local.Data, c.want)
				}
			})
		}
		if got := counter(t, host, "aegis.requests.unauthorized"); got != uint64(len(cases)) {
			t.Errorf("unauthorized counter %d", got)
		}
	})
}

// TestTenantBoundKeys: with a JWKS whose keys are bound to tenants (as the
// control plane publishes them), a token naming one tenant but signed by
// another tenant's key is refused, on a gateway serving both.
func TestTenantBoundKeys(t *testing.T) {
	jwks, err := token.MarshalBoundJWKS(token.BoundKey{Tenant: "acme", Pub: fx.tokenKey.Public().(ed25519.PublicKey)},
		token.BoundKey{Tenant: "globex", Pub: fx.rogueKey.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(pluginConfig(allBundles(), "")), `"jwks":`+fx.jwks, `"jwks":`+string(jwks), 1)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, []byte(conf))
		defer reset()
		forged := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme", key: fx.rogueKey})
		res := send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(forged)}})
		if res.local == nil || res.local.StatusCode != 401 || !strings.Contains(string(res.local.Data), "tenant") {
			t.Fatalf("acme token signed by globex's key: %+v, want 401 naming the tenant", res.local)
		}
		own := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		res = send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(own)}})
		if res.local != nil && res.local.StatusCode == 401 {
			t.Fatalf("acme token signed by acme's key refused: %s", res.local.Data)
		}
	})
}

// TestCustomTokenHeader: with token.header set, the token comes from that
// header (and only from it), which is stripped; Authorization then belongs
// to the tool and is forwarded.
func TestCustomTokenHeader(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), `"token":{"header":"x-aegis-token"}`))
		defer reset()
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		res := send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1",
			headers: [][2]string{{"x-aegis-token", tok}, {"authorization", "Bearer tool-secret"}}})
		if res.local != nil {
			t.Fatalf("refused: %s", res.local.Data)
		}
		if _, ok := header(res.headers, "x-aegis-token"); ok {
			t.Error("token header forwarded")
		}
		if v, _ := header(res.headers, "authorization"); v != "Bearer tool-secret" {
			t.Errorf("tool's authorization header %q", v)
		}
		res = send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}})
		if res.local == nil || res.local.StatusCode != 401 {
			t.Error("a token in Authorization was accepted while token.header is x-aegis-token")
		}
	})
}

// TestMCP: tools/call decided per element; refusals answered as JSON-RPC
// isError results per id with HTTP 200.
func TestMCP(t *testing.T) {
	const k8s = "mcp-k8s.platform.internal"
	call := func(id int, tool, args string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, tool, args)
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), ""))
		defer reset()
		bot := mint(t, tokenOpts{agent: "deploy-bot", tenant: "platform"})
		post := func(body string) result {
			return send(t, host, request{method: "POST", authority: k8s, path: "/mcp", body: body, hasBody: true, headers: [][2]string{bearer(bot)}})
		}

		t.Run("allowed call", func(t *testing.T) {
			res := post(call(1, "get_pods", `{"namespace":"web"}`))
			if res.local != nil || res.action != types.ActionContinue {
				t.Fatalf("refused: %+v", res.local)
			}
		})
		t.Run("denied call", func(t *testing.T) {
			res := post(call(7, "get_pods", `{"namespace":"NOT valid"}`))
			m := res.localJSON(t)
			if res.local.StatusCode != 200 || m["id"] != 7.0 || m["jsonrpc"] != "2.0" {
				t.Fatalf("reply %d %s", res.local.StatusCode, res.local.Data)
			}
			r := m["result"].(map[string]any)
			meta := r["_meta"].(map[string]any)
			text := r["content"].([]any)[0].(map[string]any)["text"].(string)
			if r["isError"] != true || meta["action"] != "deny" || meta["decision_id"] == "" || !strings.Contains(text, "namespace") {
				t.Errorf("result %v", r)
			}
		})
		t.Run("batch with one denied element", func(t *testing.T) {
			res := post("[" + call(1, "get_pods", `{"namespace":"web"}`) + "," + call(2, "deploy", `{"namespace":"staging","image":"evil"}`) + "]")
			if res.local == nil || res.local.StatusCode != 200 {
				t.Fatalf("batch not refused: action %v", res.action)
			}
			var arr []map[string]any
			if err := json.Unmarshal(res.local.Data, &arr); err != nil || len(arr) != 2 {
				t.Fatalf("batch reply %s (%v)", res.local.Data, err)
			}
			for i, m := range arr {
				if m["id"] != float64(i+1) || m["result"].(map[string]any)["isError"] != true {
					t.Errorf("element %d: %v", i, m)
				}
			}
			text := arr[1]["result"].(map[string]any)["content"].([]any)[0].(map[string]any)["text"].(string)
			if !strings.Contains(text, "image") {
				t.Errorf("denied element's text %q does not say why", text)
			}
		})
		t.Run("approval", func(t *testing.T) {
			digest := "registry.platform.internal/web@sha256:" + strings.Repeat("a", 64)
			res := post(call(3, "deploy", `{"namespace":"production","image":"`+digest+`"}`))
			m := res.localJSON(t)
			meta := m["result"].(map[string]any)["_meta"].(map[string]any)
			if res.local.StatusCode != 200 || meta["action"] != "approval_needed" {
				t.Errorf("reply %d %s", res.local.StatusCode, res.local.Data)
			}
		})
		t.Run("tool granted to nobody", func(t *testing.T) {
			res := send(t, host, request{method: "POST", authority: "mcp-vault.platform.internal", path: "/mcp",
				body: call(4, "read_secret", `{}`), hasBody: true, headers: [][2]string{bearer(bot)}})
			if m := res.localJSON(t); res.local.StatusCode != 200 || m["id"] != 4.0 {
				t.Errorf("reply %d %s", res.local.StatusCode, res.local.Data)
			}
		})
		t.Run("tools/list filtered", func(t *testing.T) {
			oncall := mint(t, tokenOpts{agent: "oncall-assistant", tenant: "platform"})
			tools := `{"jsonrpc":"2.0","id":10,"result":{"tools":[{"name":"get_pods"},{"name":"deploy"},{"name":"get_logs"},{"name":"undeclared"}]}}`
			responses := []struct {
				name, ct, body string
				want           []string // substrings of the forwarded body
				absent         []string
			}{
				{"json", "application/json", tools, []string{`"get_pods"`, `"get_logs"`}, []string{"deploy", "undeclared"}},
				{"event stream", "text/event-stream", "event: message\ndata: " + tools + "\n\n", []string{"data: ", `"get_logs"`}, []string{"deploy"}},
				{"hostile", "application/json", `{"jsonrpc":"2.0","id":10,"result":{"tools":[]},"result":{"tools":[{"name":"deploy"}]}}`,
					[]string{`"error"`, "could not be checked"}, []string{"deploy"}},
			}
			for _, rc := range responses {
				t.Run(rc.name, func(t *testing.T) {
					r := request{method: "POST", authority: k8s, path: "/mcp", hasBody: true, headers: [][2]string{bearer(oncall)},
						body: `{"jsonrpc":"2.0","id":10,"method":"tools/list"}`}
					id := host.InitializeHttpContext()
					defer host.CompleteHttpContext(id)
					host.CallOnRequestHeaders(id, r.headerList(), false)
					if a := host.CallOnRequestBody(id, []byte(r.body), true); a != types.ActionContinue {
						t.Fatalf("tools/list request: %v %+v", a, host.GetSentLocalResponse(id))
					}
					rh := [][2]string{{":status", "200"}, {"content-type", rc.ct}, {"content-length", strconv.Itoa(len(rc.body))}}
					if a := host.CallOnResponseHeaders(id, rh, false); a != types.ActionPause {
						t.Fatalf("response headers not held: %v", a)
					}
					if _, ok := header(host.GetCurrentResponseHeaders(id), "content-length"); ok {
						t.Error("stale content-length kept")
					}
					if a := host.CallOnResponseBody(id, []byte(rc.body), true); a != types.ActionContinue {
						t.Fatalf("response body: %v", a)
					}
					got := string(host.GetCurrentResponseBody(id))
					for _, w := range rc.want {
						if !strings.Contains(got, w) {
							t.Errorf("forwarded %s lacks %s", got, w)
						}
					}
					for _, a := range rc.absent {
						if strings.Contains(got, a) {
							t.Errorf("forwarded %s contains %s", got, a)
						}
					}
				})
			}
		})
		t.Run("not JSON-RPC", func(t *testing.T) {
			res := post(`{"hello":"world"}`)
			if res.local == nil || res.local.StatusCode != 403 {
				t.Errorf("non-JSON-RPC body not denied: action %v", res.action)
			}
		})
	})
}

// TestObserveMode: an observe-mode policy lets the call through and reports
// what it would have done.
func TestObserveMode(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), ""))
		defer reset()
		tok := mint(t, tokenOpts{agent: "stranger", tenant: "shadow"})
		res := send(t, host, request{method: "GET", authority: "status.shadow.internal", path: "/status", headers: [][2]string{bearer(tok)}})
		if res.local != nil || res.action != types.ActionContinue {
			t.Fatalf("observe mode refused: %+v", res.local)
		}
		if v, _ := header(res.headers, plugin.HeaderShadowDecision); v != "deny" {
			t.Errorf("shadow decision header %q, want deny", v)
		}
		if res.decision["action"] != "allow" || res.decision["shadow_action"] != "deny" {
			t.Errorf("filter state %v", res.decision)
		}
	})
}

// TestBundleLoading: rejected bundles are logged and counted; the tenant
// falls back to no_bundle (or keeps its last good bundle).
func TestBundleLoading(t *testing.T) {
	cases := []struct {
		name   string
		bundle []byte
		tenant string
		log    string
	}{
		{"signed by another key", fx.acmeRogue, "acme", "signature"},
		{"expired", fx.acmeExpired, "acme", "expired"},
		{"wrong tenant", fx.platform, "acme", "tenant"},
		{"not a bundle", []byte("garbage"), "acme", "invalid bundle"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				host, reset := startPlugin(t, vm, pluginConfig(map[string][]byte{c.tenant: c.bundle}, ""))
				defer reset()
				logs := strings.Join(host.GetErrorLogs(), "\n")
				if !strings.Contains(logs, "bundle rejected") || !strings.Contains(logs, c.log) {
					t.Errorf("error logs %q, want a rejection mentioning %q", logs, c.log)
				}
				if got := counter(t, host, "aegis.bundles.rejected"); got != 1 {
					t.Errorf("rejected counter %d", got)
				}
				tok := mint(t, tokenOpts{agent: "billing-agent", tenant: c.tenant})
				res := send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}})
				if m := res.localJSON(t); res.local.StatusCode != 403 || m["error"] != "no_bundle" {
					t.Errorf("reply %d %s", res.local.StatusCode, res.local.Data)
				}
			})
		}
	})
}

// TestReconfiguration: a new plugin configuration on the same VM upgrades
// to a higher revision; a rejected or older bundle leaves the last good one
// in force.
func TestReconfiguration(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		version := func(t *testing.T, conf []byte, wantErr string) string {
			t.Helper()
			host, reset := startPlugin(t, vm, conf)
			defer reset()
			if logs := strings.Join(host.GetErrorLogs(), "\n"); !strings.Contains(logs, wantErr) {
				t.Errorf("error logs %q, want %q", logs, wantErr)
			}
			res := send(t, host, payment(tok, `{"amount":60000,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`))
			return res.localJSON(t)["policy_version"].(string)
		}
		steps := []struct {
			bundle  []byte
			wantErr string
			want    string
		}{
			{fx.acme, "", "acme-payments@1"},
			{fx.acme2, "", "acme-payments@2"},
			{fx.acme, "lower", "acme-payments@2"}, // downgrade refused
			{fx.acmeRogue, "signature", "acme-payments@2"},
			{fx.acme2, "", "acme-payments@2"}, // re-delivery
		}
		for i, s := range steps {
			if got := version(t, pluginConfig(map[string][]byte{"acme": s.bundle}, ""), s.wantErr); got != s.want {
				t.Errorf("step %d: policy %s, want %s", i, got, s.want)
			}
		}
	})
}

func TestNoBundle(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), `"no_bundle":{"read":"open"}`))
		defer reset()
		tok := mint(t, tokenOpts{agent: "a", tenant: "ghost"})
		for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
			res := send(t, host, request{method: m, authority: "x.ghost", path: "/", headers: [][2]string{bearer(tok)}})
			if res.local != nil || res.action != types.ActionContinue {
				t.Errorf("%s with read open: %+v", m, res.local)
			}
		}
		for _, m := range []string{"POST", "DELETE", "PUT"} {
			res := send(t, host, request{method: m, authority: "x.ghost", path: "/", body: "{}", hasBody: true, headers: [][2]string{bearer(tok)}})
			if res.localJSON(t)["error"] != "no_bundle" || res.local.StatusCode != 403 {
				t.Errorf("%s without bundle: %d %s", m, res.local.StatusCode, res.local.Data)
			}
		}
	})
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		// Default: closed for every method; no trust root: no bundle at all.
		host, reset := start(t, vm, nil, pluginConfig(allBundles(), ""))
		defer reset()
		if host.StartPlugin() != types.OnPluginStartStatusOK {
			t.Fatal("StartPlugin failed")
		}
		if logs := strings.Join(host.GetErrorLogs(), "\n"); !strings.Contains(logs, "AEGIS_BUNDLE_PUBLIC_KEY") {
			t.Errorf("error logs %q", logs)
		}
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		res := send(t, host, request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}})
		if res.localJSON(t)["error"] != "no_bundle" {
			t.Errorf("reply %s", res.local.Data)
		}
	})
}

func TestBadConfiguration(t *testing.T) {
	confs := map[string][]byte{
		"empty":         nil,
		"not json":      []byte("{"),
		"unknown field": pluginConfig(nil, `"bundle_public_key":"x"`),
		"bad jwks":      []byte(`{"jwks":{"keys":[{"kty":"RSA"}]},"node":{"id":"n"}}`),
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for name, conf := range confs {
			t.Run(name, func(t *testing.T) {
				host, reset := start(t, vm, vmConfig(), conf)
				defer reset()
				if host.StartPlugin() != types.OnPluginStartStatusFailed {
					t.Error("plugin started")
				}
				if logs := host.GetCriticalLogs(); len(logs) == 0 || !strings.Contains(logs[0], "configuration") {
					t.Errorf("critical logs %q", logs)
				}
			})
		}
		t.Run("bad trust root", func(t *testing.T) {
			host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm).
				WithVMConfiguration([]byte(`{"AEGIS_BUNDLE_PUBLIC_KEY":"not a key"}`)))
			defer reset()
			if host.StartVM() {
				t.Error("VM started with an invalid trust root")
			}
		})
	})
}

// TestBodyLimits: over max_body_bytes is denied with a reason, whether the
// body comes in one piece or many; compressed bodies cannot be checked.
func TestBodyLimits(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), `"limits":{"max_body_bytes":64}`))
		defer reset()
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		big := `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000","memo":"` + strings.Repeat("x", 100) + `"}`
		cases := []struct {
			name string
			req  request
			want string
		}{
			{"one piece", payment(tok, big), "larger than"},
			{"chunks", request{method: "POST", authority: payments, path: "/v1/payments", headers: [][2]string{bearer(tok)},
				chunks: []string{big[:50], big[50:100], big[100:]}}, "larger than"},
			{"gzip", payment(tok, `{}`, [2]string{"content-encoding", "gzip"}), "compressed"},
		}
		for _, c := range cases {
			res := send(t, host, c.req)
			if m := res.localJSON(t); res.local.StatusCode != 403 || !reasonsContain(m, c.want) {
				t.Errorf("%s: %d %s, want 403 mentioning %q", c.name, res.local.StatusCode, res.local.Data, c.want)
			}
		}
	})
}

// TestRateLimit: billing-agent may make 60 calls a minute; the 61st in the
// same minute is a 429. The counter lives in shared data.
func TestRateLimit(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), ""))
		defer reset()
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		get := request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}}
		// Start at the beginning of a minute's count, so that the window
		// cannot roll over halfway: pre-fill 55 calls into the current one.
		minute := quota.Minute(guestNow(vm))
		key := quota.RateKey("acme", "billing-agent")
		if err := proxywasm.SetSharedData(key, []byte(minute+" 55"), 0); err != nil {
			t.Fatal(err)
		}
		allowed, limited := 0, 0
		for range 10 {
			res := send(t, host, get)
			switch {
			case res.local == nil:
				allowed++
			case res.local.StatusCode == 429:
				limited++
				if m := res.localJSON(t); m["error"] != "rate_limited" || !reasonsContain(m, "per minute") {
					t.Errorf("429 body %s", res.local.Data)
				}
			default:
				t.Fatalf("unexpected reply %d %s", res.local.StatusCode, res.local.Data)
			}
		}
		if quota.Minute(guestNow(vm)) != minute {
			t.Skip("the minute rolled over during the test; counts are not comparable")
		}
		if allowed != 5 || limited != 5 {
			t.Errorf("allowed %d, limited %d; want 5 and 5", allowed, limited)
		}
	})
}

// TestBudget: spend is charged to the acting agent in shared data, and a
// call that would exceed the daily budget is denied.
func TestBudget(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, pluginConfig(allBundles(), ""))
		defer reset()
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		day := quota.Day(guestNow(vm))
		key := quota.SpendKey("acme", "billing-agent")
		// 19.90 USD spent: two 0.05 payments fit into 20, the third does not.
		if err := proxywasm.SetSharedData(key, []byte(day+" 19900000"), 0); err != nil {
			t.Fatal(err)
		}
		body := `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`
		for i, want := range []int{0, 0, 403} {
			res := send(t, host, payment(tok, body))
			got := 0
			if res.local != nil {
				got = int(res.local.StatusCode)
				if !reasonsContain(res.localJSON(t), "budget") {
					t.Errorf("call %d: reasons %s", i, res.local.Data)
				}
			}
			if got != want {
				t.Errorf("call %d: status %d, want %d", i, got, want)
			}
		}
		v, _, err := proxywasm.GetSharedData(key)
		if err != nil || string(v) != day+" 20000000" {
			t.Errorf("spend counter %q (%v), want %q", v, err, day+" 20000000")
		}
	})
}

// TestAudit: every decision is an event on this VM's hash chain; batches
// go to the control plane on tick, signed by the node key; a 409 resends
// from expected_seq; a full queue refuses writes (deny_writes).
func TestAudit(t *testing.T) {
	nodeKey, err := keys.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nodePEM, _ := keys.MarshalPrivatePEM(nodeKey)
	vmConf, _ := json.Marshal(map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": fx.bundlePubPEM, "AEGIS_NODE_SIGNING_KEY": string(nodePEM)})
	conf := pluginConfig(allBundles(), `"control_plane":{"cluster":"aegis-cp"},"audit":{"max_queue":3,"batch_size":2,"flush_interval_ms":100}`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := start(t, vm, vmConf, conf)
		defer reset()
		if host.StartPlugin() != types.OnPluginStartStatusOK {
			t.Fatalf("StartPlugin: %q", host.GetCriticalLogs())
		}
		if host.GetTickPeriod() != 100 {
			t.Errorf("tick period %d", host.GetTickPeriod())
		}
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		pay := payment(tok, `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`,
			[2]string{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
		read := request{method: "GET", authority: "billing.acme.internal", path: "/v1/invoices/1", headers: [][2]string{bearer(tok)}}
		var ids []string
		for range 3 {
			res := send(t, host, pay)
			if res.local != nil {
				t.Fatalf("payment refused: %s", res.local.Data)
			}
			ids = append(ids, res.decision["id"].(string))
		}
		// The queue holds 3: a fourth write is refused, a read goes
		// through with its event dropped and counted.
		if res := send(t, host, pay); res.local == nil || !reasonsContain(res.localJSON(t), "audit") {
			t.Errorf("write with a full audit queue: %+v", res.local)
		}
		if res := send(t, host, read); res.local != nil {
			t.Errorf("read with a full audit queue refused: %s", res.local.Data)
		}
		if got := counter(t, host, "aegis.audit.dropped"); got != 2 {
			t.Errorf("dropped %d, want 2 (the refused write's event and the read's)", got)
		}

		callouts := func() []proxytest.HttpCalloutAttribute {
			return host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
		}
		host.Tick()
		cs := callouts()
		if len(cs) != 1 {
			t.Fatalf("%d callouts after a tick", len(cs))
		}
		c := cs[0]
		if c.Upstream != "aegis-cp" || !hasHeader(c.Headers, ":path", plugin.AuditPath) || !hasHeader(c.Headers, ":method", "POST") {
			t.Errorf("callout %s %q", c.Upstream, c.Headers)
		}
		var b audit.Batch
		if err := json.Unmarshal(c.Body, &b); err != nil {
			t.Fatal(err)
		}
		if err := audit.VerifyBatch(b, nodeKey.Public().(ed25519.PublicKey)); err != nil {
			t.Errorf("batch does not verify: %v", err)
		}
		if b.SeqFirst != 1 || b.SeqLast != 2 || b.Events[0].ID != ids[0] || b.Events[0].Action != "allow" ||
			b.Events[0].Tool != "payments.create" || b.Events[0].TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" ||
			b.Events[0].PolicyRevision != 1 || len(b.Events[0].InputDigest) != 64 || b.Tenant != "acme" || b.NodeID != "node-1" {
			t.Errorf("batch %+v", b)
		}
		host.Tick() // one batch in flight at a time
		if len(callouts()) != 1 {
			t.Fatal("second batch sent before the first was answered")
		}

		// The control plane has seq 1 only: resend from 2.
		host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "409"}}, nil, []byte(`{"error":"gap","expected_seq":2}`))
		host.Tick()
		cs = callouts()
		var b2 audit.Batch
		if err := json.Unmarshal(cs[len(cs)-1].Body, &b2); err != nil || b2.SeqFirst != 2 || b2.SeqLast != 3 {
			t.Fatalf("batch after 409: %+v (%v)", b2, err)
		}
		host.CallOnHttpCallResponse(cs[len(cs)-1].CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{"accepted":2,"duplicates":0}`))
		n := len(callouts())
		host.Tick()
		if len(callouts()) != n {
			t.Error("a batch was sent with nothing queued")
		}
		// Drained: writes go through again.
		if res := send(t, host, pay); res.local != nil {
			t.Errorf("write after the queue drained: %s", res.local.Data)
		}
	})
}

// TestApprovals: approval_needed asks the control plane for an approval
// and holds the request; the reply carries the approval id. A control
// plane that fails applies the tool's fail mode (payments.create is a
// write: closed, 503).
func TestApprovals(t *testing.T) {
	conf := pluginConfig(allBundles(), `"control_plane":{"cluster":"aegis-cp","timeout_ms":300}`)
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startPlugin(t, vm, conf)
		defer reset()
		tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
		big := payment(tok, `{"amount":7500,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`)

		pending := func(r request) (uint32, proxytest.HttpCalloutAttribute) {
			t.Helper()
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, r.headerList(), !r.hasBody)
			action := types.ActionPause
			if r.hasBody {
				action = host.CallOnRequestBody(id, []byte(r.body), true)
			}
			if action != types.ActionPause || host.GetSentLocalResponse(id) != nil {
				t.Fatalf("request not held for the approval: %v", action)
			}
			cs := host.GetCalloutAttributesFromContext(id)
			if len(cs) != 1 {
				t.Fatalf("%d callouts", len(cs))
			}
			return id, cs[0]
		}

		t.Run("created", func(t *testing.T) {
			id, c := pending(big)
			var ar map[string]any
			if err := json.Unmarshal(c.Body, &ar); err != nil {
				t.Fatal(err)
			}
			if c.Upstream != "aegis-cp" || !hasHeader(c.Headers, ":path", plugin.ApprovalsPath) || ar["tool"] != "payments.create" ||
				ar["agent"] != "billing-agent" || ar["tenant"] != "acme" || len(ar["params_digest"].(string)) != 64 ||
				fmt.Sprint(ar["approvers"]) != "[payments-leads]" || ar["expires_in"] != 900.0 || ar["policy_revision"] != 1.0 {
				t.Errorf("approval request %s %q: %s", c.Upstream, c.Headers, c.Body)
			}
			host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "201"}}, nil, []byte(`{"approval_id":"ap-1","status":"pending"}`))
			r := host.GetSentLocalResponse(id)
			if r == nil || r.StatusCode != 403 {
				t.Fatalf("reply %+v", r)
			}
			var m map[string]any
			json.Unmarshal(r.Data, &m)
			if m["error"] != "approval_needed" || m["approval_id"] != "ap-1" || m["decision_id"] != ar["decision_id"] {
				t.Errorf("reply %s", r.Data)
			}
			host.CompleteHttpContext(id)
		})

		t.Run("same call, same digest", func(t *testing.T) {
			_, c1 := pending(big)
			_, c2 := pending(big)
			var a1, a2 map[string]any
			json.Unmarshal(c1.Body, &a1)
			json.Unmarshal(c2.Body, &a2)
			if a1["params_digest"] != a2["params_digest"] || a1["decision_id"] == a2["decision_id"] {
				t.Errorf("digests %v %v, ids %v %v", a1["params_digest"], a2["params_digest"], a1["decision_id"], a2["decision_id"])
			}
			_, c3 := pending(payment(tok, `{"amount":7501,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`))
			var a3 map[string]any
			json.Unmarshal(c3.Body, &a3)
			if a3["params_digest"] == a1["params_digest"] {
				t.Error("different parameters, same digest")
			}
		})

		t.Run("control plane fails, write closed", func(t *testing.T) {
			id, c := pending(big)
			host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "503"}}, nil, []byte(`{"error":"unavailable"}`))
			if r := host.GetSentLocalResponse(id); r == nil || r.StatusCode != 503 {
				t.Errorf("reply %+v", r)
			}
		})

		t.Run("MCP", func(t *testing.T) {
			bot := mint(t, tokenOpts{agent: "deploy-bot", tenant: "platform"})
			img := "registry.platform.internal/web@sha256:" + strings.Repeat("b", 64)
			id, c := pending(request{method: "POST", authority: "mcp-k8s.platform.internal", path: "/mcp", hasBody: true, headers: [][2]string{bearer(bot)},
				body: `{"jsonrpc":"2.0","id":"x1","method":"tools/call","params":{"name":"deploy","arguments":{"namespace":"production","image":"` + img + `"}}}`})
			host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{"approval_id":"ap-9","status":"pending"}`))
			r := host.GetSentLocalResponse(id)
			if r == nil || r.StatusCode != 200 {
				t.Fatalf("reply %+v", r)
			}
			var m map[string]any
			json.Unmarshal(r.Data, &m)
			meta := m["result"].(map[string]any)["_meta"].(map[string]any)
			if m["id"] != "x1" || meta["approval_id"] != "ap-9" || meta["action"] != "approval_needed" {
				t.Errorf("reply %s", r.Data)
			}
		})
	})
}
