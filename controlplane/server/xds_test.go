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

// A node enrolled over REST connects to xDS with its certificate and gets
// its tenant's published bundle and live state over ECDS; a new release
// reaches it on the open stream.
func TestXDSDelivery(t *testing.T) {
	eachDialect(t, func(t *testing.T, dsn, dir string) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		jwks, err := token.MarshalJWKS(pub)
		if err != nil {
			t.Fatal(err)
		}
		h := startWith(t, dsn, dir, func(c *Config) {
			c.Settings.XDSListen = "127.0.0.1:0"
			c.XDS = &XDSOptions{Wasm: []byte("\x00asm\x01\x00\x00\x00"), WasmURL: "https://127.0.0.1:8443/v1/filter.wasm", ControlPlane: xds.Endpoint{Host: "127.0.0.1", Port: 8443}}
			c.JWKS = func(context.Context, string) ([]byte, error) { return jwks, nil }
		})
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

		tc := n.client.Transport.(*http.Transport).TLSClientConfig.Clone()
		conn, err := grpc.NewClient(h.s.XDSAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		md, _ := structpb.NewStruct(map[string]any{"role": "edge", "region": "eu"})
		node := &corev3.Node{Id: n.id, Metadata: md}
		if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typeECDS, ResourceNames: []string{xds.FilterName}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		pc := pluginConfigOf(t, resp)
		if rev := bundleRevision(t, pc, "acme"); rev != 1 {
			t.Fatalf("ECDS bundle revision %d, want 1", rev)
		}
		for _, k := range []string{"state", "jwks"} {
			if _, ok := pc[k]; !ok {
				t.Fatalf("plugin configuration lacks %s: %v", k, pc)
			}
		}
		if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typeECDS, ResourceNames: []string{xds.FilterName},
			VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
			t.Fatal(err)
		}
		h.expect(h.do("POST", "/v1/tenants/acme/releases", publisher, map[string]any{"version": 2}), 201, "")
		for {
			resp, err = stream.Recv()
			if err != nil {
				t.Fatalf("no push after publishing: %v", err)
			}
			if bundleRevision(t, pluginConfigOf(t, resp), "acme") == 2 {
				break
			}
		}
	})
}
