package edge

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/aegis-mesh/aegis/edge/internal/cptest"
	"github.com/aegis-mesh/aegis/edge/internal/testbundle"
	"github.com/aegis-mesh/aegis/edge/wal"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/state"
	"github.com/aegis-mesh/aegis/token"
)

type call struct {
	method, host, path string
	auth               string // Authorization header value ("" = none)
	header             map[string]string
	body               string
}

func do(t *testing.T, base string, c call) (int, string) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = c.host
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const payHost = "payments.acme.internal"

func payment(amount, currency, memo string) string {
	return fmt.Sprintf(`{"amount":%s,"currency":%q,"beneficiary_iban":"DE89370400440532013000","memo":%q}`, amount, currency, memo)
}

func TestEdgeEnforces(t *testing.T) {
	f := newFixture(t, "payments.yaml")
	cp := cptest.New(f.nodeKey.Public().(ed25519.PublicKey))
	defer cp.Close()
	cfg := f.config()
	cfg.ControlPlane.URL = cp.URL
	spans := tracetest.NewSpanRecorder()
	s, base, admin := startWith(t, cfg, Deps{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))})

	good := "Bearer " + f.mint(t, "billing-agent", "acme", 5*time.Minute)
	otherKey := &fixture{tokenKey: genKey(t)}
	expired := func() string {
		now := time.Now().Add(-time.Hour)
		tok, _ := token.Mint(f.tokenKey, token.Claims{Subject: "billing-agent", Tenant: "acme", Region: "eu-west-1",
			IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), ID: "old"})
		return "Bearer " + tok
	}()

	for _, tc := range []struct {
		name       string
		c          call
		wantStatus int
		wantBody   string
		reaches    bool // the upstream sees the request
		check      func(t *testing.T, r seenRequest)
	}{
		{"allow", call{method: "POST", host: payHost, path: "/v1/payments", auth: good, body: payment("120.5", "EUR", "invoice 7")},
			200, `"ok":true`, true, func(t *testing.T, r seenRequest) {
				if r.Header.Get("X-Aegis-Decision-Id") == "" || r.Header.Get("Authorization") != "" {
					t.Errorf("upstream headers %v: want a decision id and no token", r.Header)
				}
			}},
		{"no token", call{method: "POST", host: payHost, path: "/v1/payments", body: payment("1", "EUR", "")}, 401, "unauthorized", false, nil},
		{"alg none", call{method: "POST", host: payHost, path: "/v1/payments", auth: "Bearer " + algNone(t, "billing-agent", "acme"), body: payment("1", "EUR", "")}, 401, "unauthorized", false, nil},
		{"unknown key", call{method: "POST", host: payHost, path: "/v1/payments", auth: "Bearer " + otherKey.mint(t, "billing-agent", "acme", time.Minute), body: payment("1", "EUR", "")}, 401, "unauthorized", false, nil},
		{"expired", call{method: "POST", host: payHost, path: "/v1/payments", auth: expired, body: payment("1", "EUR", "")}, 401, "unauthorized", false, nil},
		{"other tenant", call{method: "POST", host: payHost, path: "/v1/payments", auth: "Bearer " + f.mint(t, "billing-agent", "globex", time.Minute), body: payment("1", "EUR", "")}, 403, "no_bundle", false, nil},
		{"identity headers do not override the token", call{method: "POST", host: "mail.acme.internal", path: "/send", auth: good,
			header: map[string]string{"X-Aegis-Agent": "support-agent", "X-Aegis-Tenant": "acme", "X-Aegis-Chain": "support-agent"},
			body:   `{"to":"a@acme.example","subject":"hi","body":"x"}`}, 403, "policy_violation", false, nil},
		{"deny", call{method: "POST", host: payHost, path: "/v1/payments", auth: good, body: payment("10", "JPY", "")}, 403, "params.currency", false, nil},
		{"sanitize", call{method: "POST", host: payHost, path: "/v1/payments", auth: good, body: payment("10", "EUR", "card 4111 1111 1111 1111")},
			200, `"ok":true`, true, func(t *testing.T, r seenRequest) {
				if strings.Contains(r.Body, "4111") || !strings.Contains(r.Body, "[card]") {
					t.Errorf("upstream body %s: want the card redacted", r.Body)
				}
			}},
		{"approval", call{method: "POST", host: payHost, path: "/v1/payments", auth: good, body: payment("7500", "EUR", "")}, 403, `"approval_id":"apr-1"`, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.up.seen())
			status, body := do(t, base, tc.c)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %s, want %d containing %s", status, body, tc.wantStatus, tc.wantBody)
			}
			seen := f.up.seen()[before:]
			if tc.reaches != (len(seen) == 1) {
				t.Fatalf("upstream saw %d requests, want reaches=%v", len(seen), tc.reaches)
			}
			for _, r := range seen {
				for k := range r.Header {
					if strings.HasPrefix(strings.ToLower(k), "x-aegis-") && !strings.EqualFold(k, "x-aegis-decision-id") {
						t.Errorf("upstream saw caller header %s", k)
					}
				}
				if tc.check != nil {
					tc.check(t, r)
				}
			}
		})
	}

	t.Run("HTTP/2 prior knowledge", func(t *testing.T) {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: &protos}
		defer tr.CloseIdleConnections()
		before := len(f.up.seen())
		for _, tc := range []struct {
			body   string
			status int
		}{{payment("8", "EUR", "h2"), 200}, {payment("8", "JPY", "h2"), 403}} {
			req, _ := http.NewRequest("POST", base+"/v1/payments", strings.NewReader(tc.body))
			req.Host = payHost
			req.Header.Set("Authorization", good)
			req.Header.Set("Content-Type", "application/json")
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != tc.status {
				t.Fatalf("h2c: %s %d %s, want %d", resp.Proto, resp.StatusCode, b, tc.status)
			}
		}
		if n := len(f.up.seen()) - before; n != 1 {
			t.Fatalf("upstream saw %d requests, want 1", n)
		}
	})

	t.Run("chunked body", func(t *testing.T) {
		before := len(f.up.seen())
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := payment("42", "EUR", "chunked")
		fmt.Fprintf(c, "POST /v1/payments HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n",
			payHost, good, 10, body[:10], len(body)-10, body[10:])
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("chunked: %d %s", resp.StatusCode, b)
		}
		seen := f.up.seen()[before:]
		if len(seen) != 1 || seen[0].Body != body {
			t.Fatalf("upstream saw %+v", seen)
		}
	})

	t.Run("smuggling", func(t *testing.T) {
		before := len(f.up.seen())
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := payment("1", "EUR", "")
		fmt.Fprintf(c, "POST /v1/payments HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /v1/payments HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s",
			payHost, good, len(body)+40, payHost, len(body), body)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "ambiguous_length") {
			t.Fatalf("smuggling: %d %s", resp.StatusCode, b)
		}
		if n := len(f.up.seen()) - before; n != 0 {
			t.Fatalf("upstream saw %d requests", n)
		}
	})

	t.Run("bad chunking", func(t *testing.T) {
		before := len(f.up.seen())
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := payment("3", "EUR", "")
		fmt.Fprintf(c, "POST /v1/payments HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%sXX0\r\n\r\n",
			payHost, good, len(body), body)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 {
			t.Fatalf("bad chunking: %d %s", resp.StatusCode, b)
		}
		if n := len(f.up.seen()) - before; n != 0 {
			t.Fatalf("upstream saw %d requests", n)
		}
	})

	// Every decision above (eight: refusals without a verified identity
	// are not audit events) is in the WAL and reaches the control plane,
	// signed by the node key (cptest verifies each batch).
	t.Run("audit", func(t *testing.T) {
		waitFor(t, "audit events shipped", func() bool {
			seq, _ := s.WAL().Head()
			return seq >= 8 && s.WAL().Shipped() == seq
		})
		seq, _ := s.WAL().Head()
		if got := len(cp.Events()); int64(got) != seq {
			t.Fatalf("control plane has %d events, WAL %d", got, seq)
		}
		actions := map[string]int{}
		for _, ev := range cp.Events() {
			var e struct{ Action, NodeID string }
			json.Unmarshal(ev, &e)
			actions[e.Action]++
		}
		for _, a := range []string{"allow", "deny", "sanitize", "approval_needed"} {
			if actions[a] == 0 {
				t.Errorf("no %s event among %v", a, actions)
			}
		}
	})

	t.Run("spans", func(t *testing.T) {
		byAction := map[string]map[string]string{}
		for _, sp := range spans.Ended() {
			attrs := map[string]string{}
			for _, kv := range sp.Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			byAction[attrs["aegis.action"]] = attrs
		}
		allow := byAction["allow"]
		if allow == nil || allow["aegis.agent_id"] != "billing-agent" || allow["aegis.tool"] != "payments.create" ||
			allow["aegis.policy_version"] == "" || allow["http.response.status_code"] != "200" {
			t.Fatalf("allow span attributes %v", allow)
		}
		if byAction["deny"] == nil || byAction["sanitize"] == nil || byAction["none"] == nil {
			t.Errorf("spans by action: %v", byAction)
		}
	})

	t.Run("metrics and health", func(t *testing.T) {
		for path, want := range map[string]string{
			"/metrics": `aegis_edge_decisions_total{action="allow"}`,
			"/readyz":  `"ready"`,
			"/healthz": `"ok"`,
		} {
			resp, err := http.Get(admin + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
				t.Errorf("%s: %d, want %s in %.300s", path, resp.StatusCode, want, b)
			}
		}
		resp, _ := http.Get(admin + "/metrics")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range []string{"aegis_edge_wal_depth", "aegis_edge_vm_pool_size 1", "aegis_edge_bundle_revision{tenant=\"acme\"} 1", "aegis_filter_decisions_allow_total",
			`aegis_edge_framing_rejected_total{code="ambiguous_length"} 1`} {
			if !strings.Contains(string(b), m) {
				t.Errorf("metrics lack %s", m)
			}
		}
	})
}

func TestTamperedBundle(t *testing.T) {
	f := newFixture(t, "payments.yaml")
	good, _ := os.ReadFile(f.bundlePath)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)/2] ^= 0x20
	writeFile(t, f.bundlePath, tampered)

	// No good bundle anywhere: the edge starts, is not ready, and fails
	// closed.
	cfg := f.config()
	s, base, admin := start(t, cfg)
	if ready, _ := s.Ready(); ready {
		t.Fatal("ready without a verified bundle")
	}
	resp, _ := http.Get(admin + "/readyz")
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("readyz %d", resp.StatusCode)
	}
	auth := "Bearer " + f.mint(t, "billing-agent", "acme", time.Minute)
	status, body := do(t, base, call{method: "POST", host: payHost, path: "/v1/payments", auth: auth, body: payment("1", "EUR", "")})
	if status != 403 || !strings.Contains(body, "no_bundle") || len(f.up.seen()) != 0 {
		t.Fatalf("tampered only: %d %s", status, body)
	}

	// A good bundle cached by an earlier run stays in force when the
	// file offered at start is tampered.
	cfg2 := f.config()
	cfg2.StateDir = filepath.Join(f.dir, "state2")
	os.MkdirAll(filepath.Join(cfg2.StateDir, "bundles"), 0o700)
	writeFile(t, filepath.Join(cfg2.StateDir, "bundles", "acme.bundle"), good)
	s2, base2, _ := start(t, cfg2)
	if ready, _ := s2.Ready(); !ready {
		t.Fatal("cached good bundle not used")
	}
	status, body = do(t, base2, call{method: "POST", host: payHost, path: "/v1/payments", auth: auth, body: payment("1", "EUR", "")})
	if status != 200 {
		t.Fatalf("with the cached bundle: %d %s", status, body)
	}

	// Offline, an approval cannot be created: the write tool's fail mode
	// (closed) answers 503 and nothing reaches the upstream.
	before := len(f.up.seen())
	status, body = do(t, base2, call{method: "POST", host: payHost, path: "/v1/payments", auth: auth, body: payment("7500", "EUR", "")})
	if status != 503 || !strings.Contains(body, "control_plane_unavailable") || len(f.up.seen()) != before {
		t.Fatalf("approval offline: %d %s", status, body)
	}
}

func TestHotSwapFromControlPlane(t *testing.T) {
	f := newFixture(t, "payments.yaml")
	cp := cptest.New(f.nodeKey.Public().(ed25519.PublicKey))
	defer cp.Close()
	cfg := f.config()
	cfg.Bundles = nil
	cfg.ControlPlane.URL = cp.URL
	cfg.ControlPlane.Tenants = []string{"acme"}
	cfg.ControlPlane.PollInterval = 20 * time.Millisecond
	s, base, _ := start(t, cfg)
	auth := "Bearer " + f.mint(t, "billing-agent", "acme", time.Minute)
	if status, _ := do(t, base, call{method: "POST", host: payHost, path: "/v1/payments", auth: auth, body: payment("1", "EUR", "")}); status != 403 {
		t.Fatalf("before any bundle: %d", status)
	}
	good, _ := os.ReadFile(f.bundlePath)
	cp.SetBundle("acme", good)
	waitFor(t, "bundle from the control plane", func() bool { ready, _ := s.Ready(); return ready })
	waitFor(t, "filter reconfigured", func() bool {
		status, _ := do(t, base, call{method: "POST", host: payHost, path: "/v1/payments", auth: auth, body: payment("1", "EUR", "")})
		return status == 200
	})
}

func TestConfigParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"ok", "listen: 127.0.0.1:8080\nnode: {id: n1}\ntimeouts: {idle: 30s}\n", ""},
		{"unknown field", "listen: x\nlisten_addr: y\n", "line 2: field listen_addr not found"},
		{"nested unknown", "node:\n  id: a\n  zone: b\n", "line 3: field zone not found"},
		{"wrong type", "filter:\n  pool_size: many\n", "line 2"},
		{"two documents", "listen: a\n---\nlisten: b\n", "more than one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
	var c Config
	err := c.Validate()
	for _, want := range []string{"listen", "node.id", "trust.bundle_key", "jwks", "upstream"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of an empty config does not name %s: %v", want, err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("listen: 127.0.0.1:8080\nnode: {id: n1}\n"))
	f.Add([]byte("routes: {a.example: http://127.0.0.1:1}\negress: {allow: ['*.x'], ports: [443]}\n"))
	f.Add([]byte("timeouts: {idle: -1s}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseConfig(in)
		if err != nil {
			return
		}
		c.Validate() // must not panic on anything ParseConfig accepts
	})
}

// TestCrashKeepsAcknowledgedEvents runs the edge as a child process under
// load and kills it with SIGKILL. Every audit event the WAL had
// acknowledged (its last seq, read from /metrics while the load ran) is
// on disk afterwards, the chain verifies, and a restarted edge ships the
// whole WAL to the control plane exactly once.
func TestCrashKeepsAcknowledgedEvents(t *testing.T) {
	f := newFixture(t, "payments.yaml")
	cfg := f.config()
	cfg.Audit.Sync = "always"
	cfgPath := filepath.Join(f.dir, "edge.yaml")
	writeFile(t, cfgPath, []byte(fmt.Sprintf(`listen: 127.0.0.1:0
node: {id: edge-test, region: eu-west-1, signing_key: %q}
trust: {bundle_key: %q}
jwks: %q
bundles: [%q]
state_dir: %q
upstream: %q
filter: {wasm: %q, cache_dir: %q, pool_size: 2, audit_flush: 10ms}
audit: {sync: always, segment_bytes: 65536}
log_level: warn
`, cfg.Node.SigningKey, cfg.Trust.BundleKey, cfg.JWKS, f.bundlePath, cfg.StateDir, cfg.Upstream, filterWasm, wasmCache)))

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+cfgPath)
	child.Stderr = testLogWriter{t}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child did not start: %v", err)
	}
	addrs := strings.Fields(line)
	base, admin := "http://"+addrs[0], "http://"+addrs[1]

	auth := "Bearer " + f.mint(t, "support-agent", "acme", 5*time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { load <- struct{}{} }()
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; ctx.Err() == nil; i++ {
				req, _ := http.NewRequestWithContext(ctx, "GET", base+fmt.Sprintf("/customers/%d-%d", w, i), nil)
				req.Host = "crm.acme.internal"
				req.Header.Set("Authorization", auth)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	// Read the WAL's acknowledged head while the load runs, then kill.
	var acked int64
	waitFor(t, "200 acknowledged audit events", func() bool {
		acked = walLastSeq(t, admin)
		return acked >= 200
	})
	if err := child.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	cancel()
	for range 4 {
		<-load
	}

	sum, err := wal.VerifyDir(filepath.Join(cfg.StateDir, "audit"))
	if err != nil {
		t.Fatalf("WAL after SIGKILL: %v", err)
	}
	if sum.LastSeq < acked {
		t.Fatalf("WAL ends at %d, but %d were acknowledged", sum.LastSeq, acked)
	}
	t.Logf("acknowledged %d before the kill; WAL holds %d (torn tail %d bytes)", acked, sum.LastSeq, sum.TornBytes)

	// Restart with a control plane: everything is shipped, once. (No
	// filter is needed for shipping.)
	cp := cptest.New(f.nodeKey.Public().(ed25519.PublicKey))
	defer cp.Close()
	cfg.ControlPlane.URL = cp.URL
	cfg.Filter.Wasm = "none"
	s, _, _ := start(t, cfg)
	waitFor(t, "the WAL shipped", func() bool { seq, _ := s.WAL().Head(); return s.WAL().Shipped() == seq })
	seq, _ := s.WAL().Head()
	if ids := cp.IDs(); int64(len(ids)) != seq || int64(len(cp.Events())) != seq {
		t.Fatalf("control plane has %d ids, %d events; WAL %d", len(ids), len(cp.Events()), seq)
	}
}

func walLastSeq(t *testing.T, admin string) int64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var v float64
		if n, _ := fmt.Sscanf(sc.Text(), "aegis_edge_wal_last_seq %g", &v); n == 1 {
			return int64(v)
		}
	}
	return 0
}

// TestKillSwitchSurvivesOutage: the control plane's signed live state (kill
// switch on) reaches the filter through the edge, and after the control
// plane is gone and the edge restarts, the edge's copy keeps it in force.
func TestKillSwitchSurvivesOutage(t *testing.T) {
	f := newFixture(t, "payments.yaml")
	stateKey := genKey(t)
	statePub, _ := keys.MarshalPublicPEM(stateKey.Public().(ed25519.PublicKey))
	cp := cptest.New(f.nodeKey.Public().(ed25519.PublicKey))
	now := time.Now().UTC().Truncate(time.Second)
	doc, err := state.Sign(stateKey, state.Document{Tenant: "acme", Seq: 1, IssuedAt: now, ExpiresAt: now.Add(time.Hour), KillSwitch: true})
	if err != nil {
		t.Fatal(err)
	}
	cp.SetState("acme", doc)
	cfg := f.config()
	cfg.Trust.StateKey = writeFile(t, filepath.Join(f.dir, "state.pub"), statePub)
	cfg.Filter.StateRefresh = 100 * time.Millisecond
	cfg.ControlPlane.URL = cp.URL
	s, base, _ := start(t, cfg)
	auth := "Bearer " + f.mint(t, "billing-agent", "acme", time.Minute)
	pay := call{method: "POST", host: payHost, path: "/v1/payments", auth: auth, body: payment("1", "EUR", "")}
	waitFor(t, "the kill switch", func() bool {
		status, body := do(t, base, pay)
		return status == 403 && strings.Contains(body, "kill_switch")
	})
	s.Shutdown(context.Background())
	cp.Close()

	// Restarted without a control plane, the edge hands its copy to the
	// filter inline: the very first request is refused.
	before := len(f.up.seen())
	_, base2, _ := start(t, cfg)
	for range 5 {
		if status, body := do(t, base2, pay); status != 403 || !strings.Contains(body, "kill_switch") {
			t.Fatalf("kill switch lifted while offline: %d %s", status, body)
		}
	}
	if n := len(f.up.seen()) - before; n != 0 {
		t.Fatalf("%d requests reached the upstream after the restart", n)
	}
}

// TestForwardProxyThroughFilter: in egress mode an agent's absolute-form
// call to a tool host is decided by the filter, and a CONNECT tunnel to
// that host (which would hide the parameters) is refused.
func TestForwardProxyThroughFilter(t *testing.T) {
	f := newFixture(t, "payments.yaml")
	cfg := f.config()
	cfg.Upstream = ""
	cfg.Forward = true
	cfg.Routes = map[string]string{payHost: f.up.URL}
	cfg.Egress.Allow = []string{payHost, "api.example.com"}
	_, base, _ := start(t, cfg)
	proxyURL, _ := url.Parse(base)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	auth := "Bearer " + f.mint(t, "billing-agent", "acme", time.Minute)
	post := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+payHost+"/v1/payments", strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := post(payment("5", "EUR", "")); status != 200 {
		t.Fatalf("allowed call: %d %s", status, body)
	}
	if status, body := post(payment("5", "JPY", "")); status != 403 || !strings.Contains(body, "policy_violation") {
		t.Fatalf("denied call: %d %s", status, body)
	}
	if n := len(f.up.seen()); n != 1 {
		t.Fatalf("upstream saw %d calls, want 1", n)
	}
	c, err := net.Dial("tcp", proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", payHost, payHost)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(b), "tunnel_to_tool_host") {
		t.Fatalf("CONNECT to a tool host: %d %s", resp.StatusCode, b)
	}
}

// TestShutdownKeepsQueuedAuditEvents: events the filter still queues when
// the edge is asked to stop reach the WAL before the VMs go.
func TestShutdownKeepsQueuedAuditEvents(t *testing.T) {
	f := newFixture(t, "payments.yaml")
	cfg := f.config()
	cfg.Filter.AuditFlush = 500 * time.Millisecond // longer than the requests below take
	s, base, _ := start(t, cfg)
	auth := "Bearer " + f.mint(t, "billing-agent", "acme", time.Minute)
	for i := range 3 {
		if status, body := do(t, base, call{method: "POST", host: payHost, path: "/v1/payments", auth: auth, body: payment("1", "EUR", fmt.Sprint(i))}); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	sum, err := wal.VerifyDir(filepath.Join(cfg.StateDir, "audit"))
	if err != nil || sum.LastSeq != 3 {
		t.Fatalf("WAL after shutdown: %+v, %v; want 3 events", sum, err)
	}
}

// TestBundleFileReplaced: an operator replacing the bundle file on an
// offline node gets the new revision into the filter; a tampered
// replacement is refused and the revision in force stays.
func TestBundleFileReplaced(t *testing.T) {
	f := newFixture(t, "payments.yaml")
	cfg := f.config()
	cfg.ControlPlane.PollInterval = 20 * time.Millisecond
	s, _, admin := start(t, cfg)
	rev2, err := testbundle.Build(testbundle.Example("payments.yaml"), 2, f.bundleKey, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), rev2...)
	tampered[len(tampered)/2] ^= 0x10
	writeFile(t, f.bundlePath+".tmp", tampered)
	os.Rename(f.bundlePath+".tmp", f.bundlePath)
	writeFile(t, f.bundlePath+".tmp", rev2)
	waitFor(t, "the tampered file refused", func() bool { return s.Store().Refused() == 1 })
	if !strings.Contains(metricsText(t, admin), `aegis_edge_bundle_revision{tenant="acme"} 1`) {
		t.Fatal("revision changed after a tampered file")
	}
	os.Rename(f.bundlePath+".tmp", f.bundlePath)
	waitFor(t, "revision 2 in the filter", func() bool {
		e, _ := s.Store().Get("acme")
		return e.Manifest.Revision == 2 && strings.Contains(metricsText(t, admin), "aegis_filter_bundle_revision_tenant_acme 2")
	})
}

func metricsText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestDocumentedConfigParses keeps the example in docs/edge.md current:
// it must parse strictly and validate.
func TestDocumentedConfigParses(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "edge.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	if !ok {
		t.Fatal("no yaml example in docs/edge.md")
	}
	example, _, _ := strings.Cut(rest, "```")
	cfg, err := ParseConfig([]byte(example))
	if err != nil {
		t.Fatalf("docs/edge.md example: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("docs/edge.md example: %v", err)
	}
}
