package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testCA issues the certificates of one test: a server certificate for
// 127.0.0.1 and client certificates naming node (CN) and tenant (O), which
// is how the test Identity reads them.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t testing.TB, cn, org string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// certIdentity is the test's enrolled identity: node id in the CN, tenant
// in the organization of a verified client certificate.
func certIdentity(ctx context.Context) (NodeIdentity, error) {
	c, err := PeerCertificate(ctx)
	if err != nil {
		return NodeIdentity{}, err
	}
	if len(c.Subject.Organization) != 1 {
		return NodeIdentity{}, errors.New("certificate names no tenant")
	}
	return NodeIdentity{NodeID: c.Subject.CommonName, Tenant: c.Subject.Organization[0]}, nil
}

type testEnv struct {
	t    *testing.T
	ca   *testCA
	srv  *Server
	reg  *prometheus.Registry
	addr string
	wasm []byte
}

type slogWriter struct{ t testing.TB }

func (w slogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testConfig(t testing.TB) Config {
	wasm := []byte("\x00asm\x01\x00\x00\x00 test module bytes")
	return Config{
		Identity:     certIdentity,
		Registerer:   prometheus.NewRegistry(),
		Logger:       slog.New(slog.NewTextHandler(slogWriter{t}, nil)),
		Wasm:         wasm,
		WasmURL:      "https://cp.aegis.internal:8443/v1/filter.wasm",
		ControlPlane: Endpoint{Host: "cp.aegis.internal", Port: 8443},
		ControlPlaneTLS: &TLSFiles{
			ServerName: "cp.aegis.internal", CAFile: "/etc/aegis/ca.pem",
			CertFile: "/etc/aegis/node.pem", KeyFile: "/etc/aegis/node-key.pem",
		},
		Upstreams: []Upstream{
			{Name: "payments", Host: "payments.internal", Port: 8080, PathPrefix: "/payments"},
			{Name: "mcp", Host: "10.0.0.7", Port: 443, TLS: true},
		},
	}
}

// newEnv starts an xDS server with mTLS on a loopback port; modify may
// change the configuration first.
func newEnv(t *testing.T, modify func(*Config)) *testEnv {
	t.Helper()
	baseline := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if modify != nil {
		modify(&cfg)
	}
	srv, err := NewServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "cp", "aegis", true)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
		MinVersion:   tls.VersionTLS13,
	})))
	srv.RegisterGRPC(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		<-done
		cancel()
		if err := srv.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		// Every stream, watch and store goroutine ends with the server
		// (client connections were closed by their own cleanups, which
		// run first). The wait only bounds a leak's detection.
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > baseline {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return &testEnv{t: t, ca: ca, srv: srv, reg: reg, addr: lis.Addr().String(), wasm: cfg.Wasm}
}

// dial connects as node (CN) of tenant (O).
func (e *testEnv) dial(node, tenant string) *grpc.ClientConn {
	e.t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{e.ca.issue(e.t, node, tenant, false)},
		RootCAs:      e.ca.pool,
		MinVersion:   tls.VersionTLS13,
	})))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

func nodeProto(id string, md map[string]any) *corev3.Node {
	s, err := structpb.NewStruct(md)
	if err != nil {
		panic(err)
	}
	return &corev3.Node{Id: id, Metadata: s}
}

// pluginJSON is a tenant configuration as the control plane would ship
// it: the tenant's bundle and JWKS (placeholder bytes stand in for the
// bundle: the xDS server never opens it).
func pluginJSON(tenant, marker string) []byte {
	b, _ := json.Marshal(map[string]any{
		"bundles":       map[string]string{tenant: base64.StdEncoding.EncodeToString([]byte("bundle of " + tenant + " " + marker))},
		"jwks":          map[string]any{"keys": []any{map[string]string{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1"}}},
		"control_plane": map[string]any{"cluster": ClusterControlPlane},
	})
	return b
}

// ecdsConfig unpacks the plugin configuration JSON out of an ECDS
// resource.
func ecdsConfig(t testing.TB, a *anypb.Any) map[string]any {
	t.Helper()
	var tec corev3.TypedExtensionConfig
	if err := a.UnmarshalTo(&tec); err != nil {
		t.Fatalf("ECDS resource: %v", err)
	}
	if tec.GetName() != FilterName {
		t.Fatalf("ECDS resource named %q, want %q", tec.GetName(), FilterName)
	}
	var w wasmfilterv3.Wasm
	if err := tec.GetTypedConfig().UnmarshalTo(&w); err != nil {
		t.Fatalf("ECDS typed config: %v", err)
	}
	var sv wrapperspb.StringValue
	if err := w.GetConfig().GetConfiguration().UnmarshalTo(&sv); err != nil {
		t.Fatalf("plugin configuration: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(sv.GetValue()), &m); err != nil {
		t.Fatalf("plugin configuration JSON: %v", err)
	}
	return m
}

// deltaClient is a raw delta ADS stream subscribed to ECDS.
type deltaClient struct {
	t      testing.TB
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func newDeltaClient(t testing.TB, ctx context.Context, conn *grpc.ClientConn, node *corev3.Node) *deltaClient {
	t.Helper()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: typeECDS, ResourceNamesSubscribe: []string{FilterName}}); err != nil {
		t.Fatal(err)
	}
	return &deltaClient{t: t, stream: st}
}

func (d *deltaClient) recv() (*discovery.DeltaDiscoveryResponse, error) { return d.stream.Recv() }

func (d *deltaClient) ack(resp *discovery.DeltaDiscoveryResponse) error {
	return d.stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
}

func (d *deltaClient) nack(resp *discovery.DeltaDiscoveryResponse, msg string) error {
	return d.stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(), ErrorDetail: grpcstatus.New(codes.InvalidArgument, msg).Proto()})
}

// waitFor polls cond until it holds; the deadline only guards against a
// hung test (the ACK a stream sends is processed asynchronously).
func waitFor(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *testEnv) nodeStatus(id string) (NodeStatus, bool, error) {
	nodes, err := e.srv.Nodes(context.Background(), "")
	if err != nil {
		return NodeStatus{}, false, err
	}
	for _, n := range nodes {
		if n.NodeID == id {
			return n, true, nil
		}
	}
	return NodeStatus{}, false, nil
}

func (e *testEnv) waitState(id, state string) NodeStatus {
	e.t.Helper()
	var got NodeStatus
	waitFor(e.t, fmt.Sprintf("node %s %s", id, state), func() (bool, error) {
		n, ok, err := e.nodeStatus(id)
		got = n
		return ok && n.State == state, err
	})
	return got
}

type discoveryDeltaResponse = discovery.DeltaDiscoveryResponse

func mustDeltaNack(resp *discovery.DeltaDiscoveryResponse, msg string) *discovery.DeltaDiscoveryRequest {
	return &discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(), ErrorDetail: grpcstatus.New(codes.InvalidArgument, msg).Proto()}
}

// newDeltaStream opens a delta stream and sends a first request for a
// node named after nothing in particular (for streams refused before any
// node is bound).
func newDeltaStream(ctx context.Context, conn *grpc.ClientConn) (discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, error) {
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	return st, st.Send(&discovery.DeltaDiscoveryRequest{Node: nodeProto("a1", map[string]any{"role": "edge"}), TypeUrl: typeECDS})
}

func decodeB64(t testing.TB, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
