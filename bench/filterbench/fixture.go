package filterbench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aegis-mesh/aegis/bench/gen"
	"github.com/aegis-mesh/aegis/edge/wasmhost"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/policies"
	"github.com/aegis-mesh/aegis/token"
)

// Tenant is the tenant of generated policy sets.
const Tenant = "acme"

// Fixture is everything a filter needs to decide for one generated
// policy set: a signed runtime bundle, the keys and JWKS it trusts, an
// agent token, and the requests that take each path.
type Fixture struct {
	Size         int
	Env          map[string]string
	PluginConfig []byte
	Token        string
	// BundleBytes is the runtime bundle's size.
	BundleBytes int

	// What the edge and the ext_authz baseline are built from.
	Compiled      *policies.Compiled
	RuntimeBundle []byte
	BundlePubPEM  []byte
	JWKS          []byte
}

// NewFixture compiles a generated policy set of size n and signs its
// runtime bundle with fresh keys.
func NewFixture(ctx context.Context, n int) (*Fixture, error) {
	src, err := gen.PolicySet(n)
	if err != nil {
		return nil, err
	}
	ps, errs := policies.Load(fmt.Sprintf("generated-%d.yaml", n), src)
	if len(errs) > 0 {
		return nil, fmt.Errorf("generated set of %d: %w", n, errs)
	}
	c, err := policies.Compile(ctx, ps, policies.Options{SkipWasm: true})
	if err != nil {
		return nil, fmt.Errorf("compiling the generated set of %d: %w", n, err)
	}
	bundleKey, err := keys.Generate(rand.Reader)
	if err != nil {
		return nil, err
	}
	tokenKey, err := keys.Generate(rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	_, runtime, err := policies.BuildBundles(c, policies.BundleOptions{Revision: 1, CreatedAt: now.Add(-time.Hour),
		ExpiresAt: now.Add(24 * time.Hour), SignKey: bundleKey})
	if err != nil {
		return nil, fmt.Errorf("bundling the generated set of %d: %w", n, err)
	}
	pub, err := keys.MarshalPublicPEM(bundleKey.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	jwks, err := token.MarshalJWKS(tokenKey.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	sub, act := token.Delegate(gen.AgentName(0))
	tok, err := token.Mint(tokenKey, token.Claims{Subject: sub, Act: act, Tenant: Tenant, Region: "eu-west-1",
		IssuedAt: now.Add(-time.Minute).Unix(), ExpiresAt: now.Add(6 * time.Hour).Unix()})
	if err != nil {
		return nil, err
	}
	// Audit batches of up to 1,000 events go to the "cp" cluster every
	// 100 ms, ten times what one instance serves, so the queue never fills
	// during a run: a full queue refuses writes, which would change the
	// decisions.
	conf := map[string]any{
		"bundles":       map[string]string{Tenant: base64.StdEncoding.EncodeToString(runtime)},
		"jwks":          json.RawMessage(jwks),
		"node":          map[string]string{"id": "bench-node", "region": "eu-west-1"},
		"control_plane": map[string]any{"cluster": ControlPlaneCluster},
		"audit":         map[string]int{"max_queue": 1 << 20, "batch_size": 1000, "flush_interval_ms": 100},
	}
	raw, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	return &Fixture{Size: n, Env: map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": string(pub)}, PluginConfig: raw,
		Token: tok, BundleBytes: len(runtime), Compiled: c, RuntimeBundle: runtime, BundlePubPEM: pub, JWKS: jwks}, nil
}

// ControlPlaneCluster is the cluster name audit batches are sent to.
const ControlPlaneCluster = "cp"

// AuditSink stands in for the control plane's audit endpoint: it accepts
// every batch (200) and counts them, so the filter's queue drains.
type AuditSink struct {
	Batches atomic.Int64

	mu sync.Mutex
	// decideNS holds each shipped event's decision_ns by action: the
	// guest's own time inside the decision (input, policy, DLP), which
	// the latency series minus this leaves to the host calls, the audit
	// event and the reply.
	decideNS map[string][]int64
}

// RoundTrip implements http.RoundTripper.
func (a *AuditSink) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		_ = r.Body.Close()
	}
	status := http.StatusNotFound
	if r.Method == http.MethodPost && r.URL.Path == "/v1/audit/batches" {
		a.Batches.Add(1)
		a.record(body)
		status = http.StatusOK
	}
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{}`)), Request: r, ContentLength: 2}, nil
}

func (a *AuditSink) record(body []byte) {
	var batch struct {
		Events []struct {
			Action     string `json:"action"`
			DecisionNS int64  `json:"decision_ns"`
		} `json:"events"`
	}
	if json.Unmarshal(body, &batch) != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.decideNS == nil {
		a.decideNS = map[string][]int64{}
	}
	for _, ev := range batch.Events {
		a.decideNS[ev.Action] = append(a.decideNS[ev.Action], ev.DecisionNS)
	}
}

// DecideQuantiles returns, per action, the p50 and p99 of the shipped
// events' decision time in µs and how many events there were.
func (a *AuditSink) DecideQuantiles() map[string]map[string]float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]map[string]float64{}
	for action, ns := range a.decideNS {
		s := slices.Clone(ns)
		slices.Sort(s)
		q := func(p float64) float64 { return float64(s[int(p*float64(len(s)-1))]) / 1e3 }
		out[action] = map[string]float64{"p50_us": q(0.5), "p99_us": q(0.99), "events": float64(len(s))}
	}
	return out
}

// PoolConfig is the wasmhost configuration for f: one instance (requests
// run one at a time, as on one Envoy worker), quiet logs.
func (f *Fixture) PoolConfig(sink http.RoundTripper, size int) wasmhost.PoolConfig {
	return wasmhost.PoolConfig{
		Size:         size,
		PluginConfig: f.PluginConfig,
		Env:          f.Env,
		Clusters:     map[string]http.RoundTripper{ControlPlaneCluster: sink},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		LogLevel:     4,
	}
}

// Path is one kind of request and what the filter must do with it.
type Path struct {
	Name string
	Body []byte
	// Status is the status the client must get; Reached whether the
	// upstream must see the request; Forwarded, if set, is a substring
	// the forwarded body must contain (the redaction).
	Status    int
	Reached   bool
	Forwarded string
}

// Paths are the three outcomes measured: allowed as sent, allowed with
// the memo redacted, denied (amount over the tool's maximum).
var Paths = []Path{
	{Name: "allow", Body: []byte(`{"amount":12.5,"currency":"EUR","memo":"invoice 42"}`), Status: 200, Reached: true},
	{Name: "sanitize", Body: []byte(`{"amount":12.5,"currency":"EUR","memo":"card 4111 1111 1111 1111 thanks"}`), Status: 200, Reached: true, Forwarded: "[card]"},
	{Name: "deny", Body: []byte(`{"amount":60000,"currency":"EUR","memo":"x"}`), Status: 403},
}

// Request builds the request for p, calling tool 0 as agent 0.
func (f *Fixture) Request(ctx context.Context, base string, p Path) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+gen.Path(0), bytes.NewReader(p.Body))
	if err != nil {
		return nil, err
	}
	req.Host = gen.Host(0)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+f.Token)
	return req, nil
}
