package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/xds"
	"github.com/aegis-mesh/aegis/token"
)

const typeECDS = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"

// pluginConfigOf unpacks the filter plugin configuration from an ECDS
// response.
func pluginConfigOf(t *testing.T, resp *discovery.DiscoveryResponse) map[string]json.RawMessage {
	t.Helper()
	if len(resp.Resources) != 1 {
		t.Fatalf("%d ECDS resources", len(resp.Resources))
	}
	var tec corev3.TypedExtensionConfig
	if err := resp.Resources[0].UnmarshalTo(&tec); err != nil {
		t.Fatal(err)
	}
	var w wasmfilterv3.Wasm
	if err := tec.TypedConfig.UnmarshalTo(&w); err != nil {
		t.Fatal(err)
	}
	var sv wrapperspb.StringValue
	if err := w.Config.Configuration.UnmarshalTo(&sv); err != nil {
		t.Fatal(err)
	}
	var pc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(sv.Value), &pc); err != nil {
		t.Fatal(err)
	}
	return pc
}

func bundleRevision(t *testing.T, pc map[string]json.RawMessage, tenant string) int64 {
	t.Helper()
	var bundles map[string]string
	if err := json.Unmarshal(pc["bundles"], &bundles); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(bundles[tenant])
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(raw, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(bundles) != 1 {
		t.Fatalf("plugin configuration carries %d tenants' bundles", len(bundles))
	}
	return b.Manifest.Revision
}

func xdsOptions(t testing.TB) func(c *Config) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := token.MarshalJWKS(pub)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		c.Settings.XDSListen = "127.0.0.1:0"
		c.XDS = &XDSOptions{Wasm: []byte("\x00asm\x01\x00\x00\x00"), WasmURL: "https://127.0.0.1:8443/v1/filter.wasm", ControlPlane: xds.Endpoint{Host: "127.0.0.1", Port: 8443}}
		c.JWKS = func(context.Context, string) ([]byte, error) { return jwks, nil }
	}
}

// adsClient is an ADS stream of an enrolled node over mTLS.
type adsClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
}

func dialADS(t *testing.T, ctx context.Context, h *harness, n node, region, role string) *adsClient {
	t.Helper()
	tc := n.client.Transport.(*http.Transport).TLSClientConfig.Clone()
	conn, err := grpc.NewClient(h.s.XDSAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"role": role, "region": region})
	c := &adsClient{t: t, stream: stream, node: &corev3.Node{Id: n.id, Metadata: md}}
	c.send(nil)
	return c
}

// send requests the ECDS resource, ACKing resp when given.
func (c *adsClient) send(resp *discovery.DiscoveryResponse) {
	c.t.Helper()
	req := &discovery.DiscoveryRequest{Node: c.node, TypeUrl: typeECDS, ResourceNames: []string{xds.FilterName}}
	if resp != nil {
		req.VersionInfo, req.ResponseNonce = resp.VersionInfo, resp.Nonce
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// waitRevision ACKs responses until one carries the tenant's bundle at
// revision want (the stream's context bounds the wait).
func (c *adsClient) waitRevision(tenant string, want int64) map[string]json.RawMessage {
	c.t.Helper()
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.t.Fatalf("waiting for revision %d: %v", want, err)
		}
		c.send(resp)
		pc := pluginConfigOf(c.t, resp)
		if _, ok := pc["bundles"]; ok && bundleRevision(c.t, pc, tenant) == want {
			return pc
		}
	}
}

// A node enrolled over REST connects to xDS with its certificate and gets
// its tenant's published bundle and live state over ECDS; a new release
// reaches it on the open stream.
func TestXDSDelivery(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dsn, dir string) {
		h := startWith(t, dsn, dir, xdsOptions(t))
		h.tenant("acme", false, 1)
		author := h.token("alice", "acme", "author", "approver")
		publisher := h.token("pat", "acme", "publisher")
		src := examplePolicy(t)
		for v := 1; v <= 2; v++ {
			h.expect(h.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"payments.yaml": src}}), 201, "")
		}
		h.expect(h.do("POST", "/v1/tenants/acme/policies/1/approve", author, nil), 200, "")
		h.expect(h.do("POST", "/v1/tenants/acme/policies/2/approve", author, nil), 200, "")
		h.expect(h.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 1}), 201, "")
		n := h.enroll("acme", "eu", "edge")
		// The release event may have been handled before the node existed;
		// sync explicitly so the test does not depend on that ordering.
		if err := h.s.SyncTenant(context.Background(), "acme"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ads := dialADS(t, ctx, h, n, "eu", "edge")
		pc := ads.waitRevision("acme", 1)
		for _, k := range []string{"state", "jwks"} {
			if _, ok := pc[k]; !ok {
				t.Fatalf("plugin configuration lacks %s: %v", k, pc)
			}
		}
		h.expect(h.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 2}), 201, "")
		ads.waitRevision("acme", 2)
	})
}

// Scale-out: a node connected to replica b receives a release published
// on replica a, through Postgres NOTIFY alone.
func TestXDSAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := dbtest.NewDSN(t, db.Postgres)
	dir := t.TempDir()
	a := startWith(t, dsn, dir, xdsOptions(t))
	b := startWith(t, dsn, dir, xdsOptions(t))
	a.tenant("acme", false, 1)
	author := a.token("alice", "acme", "author", "approver")
	publisher := a.token("pat", "acme", "publisher")
	a.expect(a.do("POST", "/v1/tenants/acme/policies", author, map[string]any{"files": map[string]string{"payments.yaml": examplePolicy(t)}}), 201, "")
	a.expect(a.do("POST", "/v1/tenants/acme/policies/1/approve", author, nil), 200, "")
	n := a.enroll("acme", "eu", "gateway")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ads := dialADS(t, ctx, b, n, "eu", "gateway")
	first, err := ads.stream.Recv() // the deny-by-default config: no release yet
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pluginConfigOf(t, first)["bundles"]; ok {
		t.Fatal("a node got bundles before any release")
	}
	ads.send(first)
	published := time.Now()
	a.expect(a.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 1}), 201, "")
	ads.waitRevision("acme", 1)
	// Reported, not asserted: wall time is no test criterion here.
	t.Logf("publish on replica a to ECDS push from replica b: %v", time.Since(published))
}
