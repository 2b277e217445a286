package xds

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testRelease(tenant string, rev int64, marker string) TenantConfig {
	return TenantConfig{PluginConfigJSON: pluginJSON(tenant, marker), Version: "v-" + marker, Revision: rev}
}

// bundleOf returns the base64 bundle a plugin configuration carries for
// tenant, and how many tenants it carries.
func bundleOf(cfg map[string]any, tenant string) (string, int) {
	b, _ := cfg["bundles"].(map[string]any)
	s, _ := b[tenant].(string)
	return s, len(b)
}

func TestSotWReceivesECDSAcksAndNacks(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	c := sotw.NewADSClient(ctx, nodeProto("gw-1", map[string]any{"role": "edge", "region": "eu-west-1", "tenant": "acme"}), typeECDS)
	if err := c.InitConnect(env.dial("gw-1", "acme")); err != nil {
		t.Fatal(err)
	}

	// Before any release the node runs the deny configuration.
	resp, err := c.Fetch()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 1 {
		t.Fatalf("%d resources, want the one ECDS resource", len(resp.Resources))
	}
	cfg := ecdsConfig(t, resp.Resources[0])
	if _, n := bundleOf(cfg, "acme"); n != 0 {
		t.Fatalf("deny configuration carries %d bundles", n)
	}
	if node := cfg["node"].(map[string]any); node["id"] != "gw-1" || node["region"] != "eu-west-1" {
		t.Fatalf("node member %v", node)
	}
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	st := env.waitState("gw-1", StateSynced)
	if st.ExpectedRevision != 0 || st.Tenant != "acme" || st.Role != RoleEdge || !st.Connected {
		t.Fatalf("status %+v", st)
	}

	// A release reaches the node; its ACK is observed as propagation lag.
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 1, "one")); err != nil {
		t.Fatal(err)
	}
	if resp, err = c.Fetch(); err != nil {
		t.Fatal(err)
	}
	if b, n := bundleOf(ecdsConfig(t, resp.Resources[0]), "acme"); n != 1 || b == "" {
		t.Fatalf("release not delivered: %d bundles", n)
	}
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	st = env.waitState("gw-1", StateSynced)
	if st.AckedRevision != 1 || st.ExpectedRevision != 1 || st.AckedAt == nil {
		t.Fatalf("status %+v", st)
	}
	if got := histogramCount(t, env, "aegis_xds_propagation_seconds"); got != 1 {
		t.Fatalf("lag observations %d, want 1", got)
	}

	// A NACK shows in the node status and in drift with its reason.
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 2, "two")); err != nil {
		t.Fatal(err)
	}
	if _, err = c.Fetch(); err != nil {
		t.Fatal(err)
	}
	if err := c.Nack("wasm: plugin configuration rejected: limits.max_body_bytes"); err != nil {
		t.Fatal(err)
	}
	st = env.waitState("gw-1", StateNacked)
	if st.Nack == nil || st.Nack.Revision != 2 || st.Nack.Type != "ecds" || !strings.Contains(st.Nack.Error, "max_body_bytes") || st.AckedRevision != 1 {
		t.Fatalf("status after NACK %+v (nack %+v)", st, st.Nack)
	}
	d, err := env.srv.Drift(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if d.Counts[StateNacked] != 1 || len(d.Nodes) != 1 || d.Nodes[0].Nack.Error != st.Nack.Error || len(d.Published) != 1 || d.Published[0].Revision != 2 {
		t.Fatalf("drift %+v", d)
	}
	if v := counterValue(t, env.srv.metrics.nacks.WithLabelValues("ecds")); v != 1 {
		t.Fatalf("nacks metric %v", v)
	}

	// The next good release clears the NACK. go-control-plane resends a
	// NACKed version (the request names an older one), so the client, like
	// Envoy, rejects revision 2 until revision 3 arrives.
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 3, "three")); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if resp, err = c.Fetch(); err != nil {
			t.Fatal(err)
		}
		b, _ := bundleOf(ecdsConfig(t, resp.Resources[0]), "acme")
		if strings.HasSuffix(decodeB64(t, b), "three") {
			break
		}
		if i > 100 {
			t.Fatal("revision 3 never arrived")
		}
		if err := c.Nack("still rejected"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	if st = env.waitState("gw-1", StateSynced); st.AckedRevision != 3 || st.Nack != nil {
		t.Fatalf("status %+v", st)
	}
}

func histogramCount(t *testing.T, env *testEnv, name string) uint64 {
	t.Helper()
	mfs, err := env.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

func TestDeltaReceivesECDSAcksAndNacks(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 7, "seven")); err != nil {
		t.Fatal(err)
	}
	d := newDeltaClient(t, ctx, env.dial("sc-1", "acme"), nodeProto("sc-1", map[string]any{"role": "sidecar"}))
	resp, err := d.recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != FilterName {
		t.Fatalf("delta response %v", resp)
	}
	if b, n := bundleOf(ecdsConfig(t, resp.GetResources()[0].GetResource()), "acme"); n != 1 || b == "" {
		t.Fatal("release not delivered over delta")
	}
	if RevisionOf(resp.GetSystemVersionInfo()) != 7 {
		t.Fatalf("system version %q, resource version %q", resp.GetSystemVersionInfo(), resp.GetResources()[0].GetVersion())
	}
	if err := d.ack(resp); err != nil {
		t.Fatal(err)
	}
	if st := env.waitState("sc-1", StateSynced); st.AckedRevision != 7 || st.Role != RoleSidecar {
		t.Fatalf("status %+v", st)
	}

	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 8, "eight")); err != nil {
		t.Fatal(err)
	}
	if resp, err = d.recv(); err != nil {
		t.Fatal(err)
	}
	if err := d.nack(resp, "filter start failed: jwks: no keys"); err != nil {
		t.Fatal(err)
	}
	st := env.waitState("sc-1", StateNacked)
	if st.Nack.Revision != 8 || st.Nack.Error != "filter start failed: jwks: no keys" || st.Nack.Nonce != resp.GetNonce() {
		t.Fatalf("nack %+v", st.Nack)
	}
}

// TestStaleNonceIsNeitherAckNorNack: only a request answering the latest
// response of its type counts.
func TestStaleNonceIsNeitherAckNorNack(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	d := newDeltaClient(t, ctx, env.dial("n1", "acme"), nodeProto("n1", map[string]any{"role": "edge"}))
	resp, err := d.recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.stream.Send(mustDeltaNack(resp, "rejected")); err != nil {
		t.Fatal(err)
	}
	if err := d.ack(resp); err != nil {
		t.Fatal(err)
	}
	env.waitState("n1", StateSynced)
	if v := counterValue(t, env.srv.metrics.nacks.WithLabelValues("ecds")); v != 1 {
		t.Fatalf("nacks %v", v)
	}
	// The nonce is answered now; a NACK naming another nonce is stale.
	resp.Nonce = "999"
	if err := d.nack(resp, "late"); err != nil {
		t.Fatal(err)
	}
	// A second real ACK after the stale NACK is processed in order on the
	// stream, so once it is counted the stale one has been seen too.
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 1, "x")); err != nil {
		t.Fatal(err)
	}
	if resp, err = d.recv(); err != nil {
		t.Fatal(err)
	}
	// Failed once in a loaded CI run, waiting 20 s for this ACK; say which
	// response arrived if it is not the new revision.
	if rev := RevisionOf(resp.GetSystemVersionInfo()); rev != 1 {
		t.Fatalf("after the stale NACK the next response has system version %q (revision %d), want revision 1", resp.GetSystemVersionInfo(), rev)
	}
	if err := d.ack(resp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second ack", func() (bool, error) {
		st, _, err := env.nodeStatus("n1")
		return st.AckedRevision == 1, err
	})
	if v := counterValue(t, env.srv.metrics.nacks.WithLabelValues("ecds")); v != 1 {
		t.Fatalf("a stale nonce was counted as a NACK (%v)", v)
	}
	if st, _, _ := env.nodeStatus("n1"); st.State != StateSynced {
		t.Fatalf("state %s", st.State)
	}
}

func TestStreamsRefused(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name, certNode, certTenant, nodeID string
		md                                 map[string]any
		code                               codes.Code
		reason                             string
	}{
		{"metadata names another tenant", "a1", "acme", "a1", map[string]any{"role": "gateway", "tenant": "globex"}, codes.PermissionDenied, "identity_mismatch"},
		{"node id is not the enrolled one", "a1", "acme", "b1", map[string]any{"role": "gateway"}, codes.PermissionDenied, "identity_mismatch"},
		{"no role", "a1", "acme", "a1", map[string]any{}, codes.InvalidArgument, "bad_metadata"},
		{"unknown role", "a1", "acme", "a1", map[string]any{"role": "admin"}, codes.InvalidArgument, "bad_metadata"},
		{"bad region", "a1", "acme", "a1", map[string]any{"role": "edge", "region": "eu west"}, codes.InvalidArgument, "bad_metadata"},
		{"no node id", "a1", "acme", "", map[string]any{"role": "edge"}, codes.InvalidArgument, "no_node"},
		{"tenant in the certificate is malformed", "a1", "ac me", "a1", map[string]any{"role": "edge"}, codes.Unauthenticated, "unauthenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counterValue(t, env.srv.metrics.refused.WithLabelValues(tc.reason))
			c := sotw.NewADSClient(ctx, nodeProto(tc.nodeID, tc.md), typeECDS)
			// A stream refused at open may be gone before the first send
			// (io.EOF); its status comes with the next receive.
			if err := c.InitConnect(env.dial(tc.certNode, tc.certTenant)); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			_, err := c.Fetch()
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want code %v", err, tc.code)
			}
			if after := counterValue(t, env.srv.metrics.refused.WithLabelValues(tc.reason)); after != before+1 {
				t.Fatalf("refused{%s} %v → %v", tc.reason, before, after)
			}
		})
	}
	// Nothing was bound: no node of any of those streams is known.
	if nodes, err := env.srv.Nodes(ctx, ""); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes %v %v", nodes, err)
	}
}

func TestIdentityErrorRefusesStream(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.Identity = func(context.Context) (NodeIdentity, error) { return NodeIdentity{}, context.DeadlineExceeded }
	})
	ctx := testCtx(t)
	d, err := newDeltaStream(ctx, env.dial("a1", "acme"))
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if _, err := d.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("got %v, want Unauthenticated", err)
	}
}

// TestEnrolledRegionAndRole: a node enrolled with a region and role may
// repeat them in its metadata or leave them out, but not claim others,
// since they choose the releases it receives.
func TestEnrolledRegionAndRole(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.Identity = func(ctx context.Context) (NodeIdentity, error) {
			id, err := certIdentity(ctx)
			id.Region, id.Role = "eu-west-1", RoleGateway
			return id, err
		}
	})
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		md   map[string]any
		code codes.Code
	}{
		{"other region", map[string]any{"role": "gateway", "region": "us-east-1"}, codes.PermissionDenied},
		{"other role", map[string]any{"role": "edge", "region": "eu-west-1"}, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counterValue(t, env.srv.metrics.refused.WithLabelValues("identity_mismatch"))
			c := sotw.NewADSClient(ctx, nodeProto("a1", tc.md), typeECDS)
			if err := c.InitConnect(env.dial("a1", "acme")); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			if _, err := c.Fetch(); status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
			if after := counterValue(t, env.srv.metrics.refused.WithLabelValues("identity_mismatch")); after != before+1 {
				t.Fatalf("refused{identity_mismatch} %v → %v", before, after)
			}
		})
	}
	// Without region and role in its metadata, the node gets its enrolled
	// ones.
	c := sotw.NewADSClient(ctx, nodeProto("a1", map[string]any{}), typeECDS)
	if err := c.InitConnect(env.dial("a1", "acme")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(); err != nil {
		t.Fatal(err)
	}
	nodes, err := env.srv.Nodes(ctx, "acme")
	if err != nil || len(nodes) != 1 || nodes[0].Region != "eu-west-1" || nodes[0].Role != RoleGateway {
		t.Fatalf("nodes %+v %v, want a1 in eu-west-1 as gateway", nodes, err)
	}
}

// TestTenantIsolation: releases of one tenant never reach another
// tenant's node, whatever it claims.
func TestTenantIsolation(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	a := sotw.NewADSClient(ctx, nodeProto("a1", map[string]any{"role": "gateway"}), typeECDS)
	if err := a.InitConnect(env.dial("a1", "acme")); err != nil {
		t.Fatal(err)
	}
	b := newDeltaClient(t, ctx, env.dial("b1", "globex"), nodeProto("b1", map[string]any{"role": "edge"}))
	if _, err := a.Fetch(); err != nil {
		t.Fatal(err)
	}
	if err := a.Ack(); err != nil {
		t.Fatal(err)
	}
	first, err := b.recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ack(first); err != nil {
		t.Fatal(err)
	}
	env.waitState("a1", StateSynced)
	env.waitState("b1", StateSynced)

	// globex publishes first: had it reached a1, a1's next response
	// would be globex's.
	if err := env.srv.SetTenant(ctx, "globex", testRelease("globex", 1, "G")); err != nil {
		t.Fatal(err)
	}
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 1, "A")); err != nil {
		t.Fatal(err)
	}
	resp, err := a.Fetch()
	if err != nil {
		t.Fatal(err)
	}
	cfg := ecdsConfig(t, resp.Resources[0])
	if got, n := bundleOf(cfg, "acme"); n != 1 || got == "" {
		t.Fatalf("a1 got %v", cfg["bundles"])
	}
	if _, has := cfg["bundles"].(map[string]any)["globex"]; has {
		t.Fatal("a1 received globex's bundle")
	}
	bresp, err := b.recv()
	if err != nil {
		t.Fatal(err)
	}
	bcfg := ecdsConfig(t, bresp.GetResources()[0].GetResource())
	if got, n := bundleOf(bcfg, "globex"); n != 1 || got == "" {
		t.Fatalf("b1 got %v", bcfg["bundles"])
	}
	// The acme release did not produce a second response for b1: its
	// status still expects globex revision 1 and nothing newer was sent.
	if err := b.ack(bresp); err != nil {
		t.Fatal(err)
	}
	if st := env.waitState("b1", StateSynced); st.AckedRevision != 1 || st.Tenant != "globex" {
		t.Fatalf("b1 %+v", st)
	}
	// A tenant-scoped read sees only its own nodes.
	nodes, err := env.srv.Nodes(ctx, "acme")
	if err != nil || len(nodes) != 1 || nodes[0].NodeID != "a1" {
		t.Fatalf("acme nodes %+v %v", nodes, err)
	}
	// A configuration naming another tenant's bundle is refused outright.
	if err := env.srv.SetTenant(ctx, "acme", TenantConfig{PluginConfigJSON: pluginJSON("globex", "x"), Version: "v", Revision: 2}); err == nil {
		t.Fatal("acme release carrying globex's bundle accepted")
	}
}

func TestReleasesTargetRegionAndRole(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	eu := newDeltaClient(t, ctx, env.dial("eu1", "acme"), nodeProto("eu1", map[string]any{"role": "edge", "region": "eu"}))
	us := newDeltaClient(t, ctx, env.dial("us1", "acme"), nodeProto("us1", map[string]any{"role": "edge", "region": "us"}))
	for _, c := range []*deltaClient{eu, us} {
		r, err := c.recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ack(r); err != nil {
			t.Fatal(err)
		}
	}
	step := func(tc TenantConfig, expect map[string]int64, receivers ...*deltaClient) {
		t.Helper()
		if err := env.srv.SetTenant(ctx, "acme", tc); err != nil {
			t.Fatal(err)
		}
		for _, c := range receivers {
			r, err := c.recv()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.ack(r); err != nil {
				t.Fatal(err)
			}
		}
		for node, rev := range expect {
			waitFor(t, node, func() (bool, error) {
				st, _, err := env.nodeStatus(node)
				return st.State == StateSynced && st.AckedRevision == rev && st.ExpectedRevision == rev, err
			})
		}
	}
	step(testRelease("acme", 1, "all"), map[string]int64{"eu1": 1, "us1": 1}, eu, us)
	canary := testRelease("acme", 2, "eu-canary")
	canary.Regions = []string{"eu"}
	step(canary, map[string]int64{"eu1": 2, "us1": 1}, eu)
	d, err := env.srv.Drift(ctx, "acme")
	if err != nil || len(d.Published) != 2 {
		t.Fatalf("published %+v %v", d.Published, err)
	}
	gw := testRelease("acme", 3, "gateways")
	gw.Roles = []Role{RoleGateway}
	step(gw, map[string]int64{"eu1": 2, "us1": 1})
	step(testRelease("acme", 4, "all again"), map[string]int64{"eu1": 4, "us1": 4}, eu, us)
	if d, _ = env.srv.Drift(ctx, "acme"); len(d.Published) != 1 || d.Published[0].Revision != 4 {
		t.Fatalf("an untargeted release should replace the others: %+v", d.Published)
	}
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 3, "older")); err == nil {
		t.Fatal("an older revision was accepted")
	}
}

// TestVersionBumpReachesEveryConnectedNode mixes SotW and delta clients.
func TestVersionBumpReachesEveryConnectedNode(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	type client struct {
		fetch func() (map[string]any, error)
		ack   func() error
	}
	var clients []client
	for i := range 6 {
		id := "n" + string(rune('a'+i))
		if i%2 == 0 {
			c := sotw.NewADSClient(ctx, nodeProto(id, map[string]any{"role": "edge"}), typeECDS)
			if err := c.InitConnect(env.dial(id, "acme")); err != nil {
				t.Fatal(err)
			}
			clients = append(clients, client{
				fetch: func() (map[string]any, error) {
					r, err := c.Fetch()
					if err != nil {
						return nil, err
					}
					return ecdsConfig(t, r.Resources[0]), nil
				},
				ack: c.Ack,
			})
			continue
		}
		d := newDeltaClient(t, ctx, env.dial(id, "acme"), nodeProto(id, map[string]any{"role": "edge"}))
		var last any
		clients = append(clients, client{
			fetch: func() (map[string]any, error) {
				r, err := d.recv()
				if err != nil {
					return nil, err
				}
				last = r
				return ecdsConfig(t, r.GetResources()[0].GetResource()), nil
			},
			ack: func() error { return d.ack(last.(*discoveryDeltaResponse)) },
		})
	}
	for _, c := range clients {
		if _, err := c.fetch(); err != nil {
			t.Fatal(err)
		}
		if err := c.ack(); err != nil {
			t.Fatal(err)
		}
	}
	for rev := int64(1); rev <= 3; rev++ {
		marker := "m" + string(rune('0'+rev))
		if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", rev, marker)); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			cfg, err := c.fetch()
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := bundleOf(cfg, "acme"); !strings.HasSuffix(decodeB64(t, b), marker) {
				t.Fatalf("revision %d: got bundle %q", rev, decodeB64(t, b))
			}
			if err := c.ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "all synced on 3", func() (bool, error) {
		d, err := env.srv.Drift(ctx, "acme")
		return d.Counts[StateSynced] == 6 && len(d.Nodes) == 0, err
	})
	if got := histogramCount(t, env, "aegis_xds_propagation_seconds"); got != 18 {
		t.Fatalf("lag observations %d, want 18 (6 nodes × 3 releases)", got)
	}
}

// TestReconcileDeliversAnInterruptedPublish: a release whose SetTenant
// ended before reaching a node is still the published one, and
// reconciliation brings the node to it.
func TestReconcileDeliversAnInterruptedPublish(t *testing.T) {
	env := newEnv(t, nil)
	ctx := testCtx(t)
	d := newDeltaClient(t, ctx, env.dial("n1", "acme"), nodeProto("n1", map[string]any{"role": "edge"}))
	resp, err := d.recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ack(resp); err != nil {
		t.Fatal(err)
	}
	env.waitState("n1", StateSynced)
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if err := env.srv.SetTenant(gone, "acme", testRelease("acme", 1, "late")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if st, _, _ := env.nodeStatus("n1"); st.State != StatePending || st.ExpectedRevision != 1 || st.AckedRevision != 0 {
		t.Fatalf("before reconciling %+v", st)
	}
	if err := env.srv.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, err = d.recv(); err != nil {
		t.Fatal(err)
	}
	if err := d.ack(resp); err != nil {
		t.Fatal(err)
	}
	if st := env.waitState("n1", StateSynced); st.AckedRevision != 1 {
		t.Fatalf("after reconciling %+v", st)
	}
	// Reconciling an up-to-date fleet sends nothing: the next response the
	// node sees is the next release's.
	if err := env.srv.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.srv.SetTenant(ctx, "acme", testRelease("acme", 2, "next")); err != nil {
		t.Fatal(err)
	}
	if resp, err = d.recv(); err != nil || RevisionOf(resp.GetSystemVersionInfo()) != 2 {
		t.Fatalf("got %v %v", resp.GetSystemVersionInfo(), err)
	}
}
