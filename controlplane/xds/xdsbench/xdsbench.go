// Package xdsbench measures how long a published tenant configuration
// takes to reach a fleet: it starts the xDS server in-process (with its
// drift store on an embedded SQLite file, or none), connects N simulated
// nodes over mTLS on loopback — go-control-plane's SotW ADS client, raw
// delta streams, or both — publishes a new release and times each node's
// ACK of it.
package xdsbench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/xds"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/token"
)

// Modes of the simulated clients.
const (
	ModeSotW  = "sotw"
	ModeDelta = "delta"
	ModeMixed = "mixed" // even nodes SotW, odd nodes delta
)

// Options configure a run.
type Options struct {
	Nodes int
	Mode  string
	// Store is "sqlite" (drift store on an embedded SQLite file in a
	// temporary directory) or "none".
	Store string
	// BundleBytes sizes the runtime bundle in the published configuration.
	BundleBytes int
	// Timeout bounds waiting for the fleet (connect, and the publish).
	Timeout time.Duration
	// Logger receives the server's errors; nil discards them.
	Logger *slog.Logger
	// Profile, when set, receives a CPU profile of the publish phase only.
	Profile io.Writer
}

// Result is what a run measured. Latencies are from the start of SetTenant
// to each node's ACK, as the node saw it.
type Result struct {
	Nodes       int     `json:"nodes"`
	Acked       int     `json:"acked"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	SetTenantMs float64 `json:"set_tenant_ms"` // building and setting every node's snapshot
	// ServerSyncedMs is when the server had recorded every ACK (drift
	// shows the whole fleet synced).
	ServerSyncedMs float64 `json:"server_synced_ms"`
	ConnectMs      float64 `json:"connect_ms"` // TLS, streams, first configuration and ACK of all nodes
	// PublishCPUMs is the CPU time the whole process (server and simulated
	// nodes) used from the publish until every node had ACKed: on a shared
	// machine, what the run needed regardless of what it was given.
	PublishCPUMs float64 `json:"publish_cpu_ms"`
	Mode         string  `json:"mode"`
	Store        string  `json:"store"`
	BundleBytes  int     `json:"bundle_bytes"`
	ConfigBytes  int     `json:"config_bytes"`
	Cores        int     `json:"cores"`
	GOMAXPROCS   int     `json:"gomaxprocs"`
	GoVersion    string  `json:"go"`
	OS           string  `json:"os"`
	Arch         string  `json:"arch"`
}

// Validate checks o.
func (o Options) Validate() error {
	var errs []error
	if o.Nodes < 1 || o.Nodes > 100_000 {
		errs = append(errs, fmt.Errorf("nodes: %d outside [1, 100000]", o.Nodes))
	}
	if o.Mode != ModeSotW && o.Mode != ModeDelta && o.Mode != ModeMixed {
		errs = append(errs, fmt.Errorf("mode: %q: want sotw, delta or mixed", o.Mode))
	}
	if o.Store != "sqlite" && o.Store != "none" {
		errs = append(errs, fmt.Errorf("store: %q: want sqlite or none", o.Store))
	}
	if o.BundleBytes < 64 || o.BundleBytes > 16<<20 {
		errs = append(errs, fmt.Errorf("bundle-bytes: %d outside [64, 16777216]", o.BundleBytes))
	}
	if o.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be positive"))
	}
	return errors.Join(errs...)
}

const tenant = "bench"

// Run performs one measurement.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	res := Result{Nodes: o.Nodes, Mode: o.Mode, Store: o.Store, BundleBytes: o.BundleBytes,
		Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ca, err := newCA()
	if err != nil {
		return res, err
	}
	cfg := xds.Config{
		// The bench's certificates carry no enrollment record: region and
		// role come from each simulated node's metadata.
		Identity: func(ctx context.Context) (xds.NodeIdentity, error) {
			c, err := xds.PeerCertificate(ctx)
			if err != nil {
				return xds.NodeIdentity{}, err
			}
			if len(c.Subject.Organization) != 1 {
				return xds.NodeIdentity{}, errors.New("certificate names no tenant")
			}
			return xds.NodeIdentity{NodeID: c.Subject.CommonName, Tenant: c.Subject.Organization[0]}, nil
		},
		Registerer:   prometheus.NewRegistry(),
		Logger:       o.Logger,
		Wasm:         benchModule(),
		WasmURL:      "https://127.0.0.1:8443/v1/filter.wasm",
		ControlPlane: xds.Endpoint{Host: "127.0.0.1", Port: 8443},
		Upstreams:    []xds.Upstream{{Name: "tools", Host: "127.0.0.1", Port: 9000}},
	}
	if o.Store == "sqlite" {
		dir, err := os.MkdirTemp("", "aegis-bench-xds-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		d, err := db.Open(ctx, "sqlite:"+filepath.Join(dir, "xds.db"))
		if err != nil {
			return res, err
		}
		defer d.Close()
		cfg.Store = d
	}
	srv, err := xds.NewServer(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer srv.Close(context.Background())
	serverCert, err := ca.issue("127.0.0.1", "aegis", true)
	if err != nil {
		return res, err
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: ca.pool, MinVersion: tls.VersionTLS13,
	})))
	srv.RegisterGRPC(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	// Both releases exist before any node connects: the nodes only read
	// revs.
	revs := revisions{}
	first, err := tenantConfig(1, o.BundleBytes, revs)
	if err != nil {
		return res, err
	}
	second, err := tenantConfig(2, o.BundleBytes, revs)
	if err != nil {
		return res, err
	}
	if err := srv.SetTenant(ctx, tenant, first); err != nil {
		return res, err
	}

	// Connect the fleet; every node receives and ACKs revision 1.
	fleetCtx, fleetCancel := context.WithTimeout(ctx, o.Timeout)
	defer fleetCancel()
	start := time.Now()
	nodes := make([]*node, o.Nodes)
	var wg sync.WaitGroup
	errc := make(chan error, o.Nodes)
	sem := make(chan struct{}, 16)
	for i := range nodes {
		delta := o.Mode == ModeDelta || (o.Mode == ModeMixed && i%2 == 1)
		n := &node{id: "node-" + strconv.Itoa(i), delta: delta, revisions: revs}
		nodes[i] = n
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-fleetCtx.Done():
				errc <- fleetCtx.Err()
				return
			}
			err := n.connect(ctx, ca, lis.Addr().String())
			<-sem
			if err != nil {
				errc <- fmt.Errorf("%s: %w", n.id, err)
				return
			}
			go n.loop()
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return res, fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		for _, n := range nodes {
			n.close()
		}
	}()
	for _, n := range nodes {
		if err := n.waitRevision(fleetCtx, 1); err != nil {
			return res, fmt.Errorf("%s: first configuration: %w", n.id, err)
		}
	}
	if err := waitSynced(fleetCtx, srv, o.Nodes, 1); err != nil {
		return res, err
	}
	res.ConnectMs = ms(time.Since(start))

	// Publish revision 2 and time every node's ACK.
	res.ConfigBytes = len(second.PluginConfigJSON)
	pubCtx, pubCancel := context.WithTimeout(ctx, o.Timeout)
	defer pubCancel()
	if o.Profile != nil {
		if err := pprof.StartCPUProfile(o.Profile); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	t0 := time.Now()
	if err := srv.SetTenant(pubCtx, tenant, second); err != nil {
		return res, err
	}
	res.SetTenantMs = ms(time.Since(t0))
	lat := make([]float64, 0, o.Nodes)
	for _, n := range nodes {
		if err := n.waitRevision(pubCtx, 2); err != nil {
			continue
		}
		lat = append(lat, ms(n.ackAt(2).Sub(t0)))
	}
	res.Acked = len(lat)
	res.PublishCPUMs = ms(cpuTime() - cpu0)
	if res.Acked == o.Nodes {
		if err := waitSynced(pubCtx, srv, o.Nodes, 2); err != nil {
			return res, err
		}
		res.ServerSyncedMs = ms(time.Since(t0))
	}
	slices.Sort(lat)
	res.P50Ms, res.P90Ms, res.P99Ms = pct(lat, 0.50), pct(lat, 0.90), pct(lat, 0.99)
	if len(lat) > 0 {
		res.MaxMs = lat[len(lat)-1]
	}
	return res, nil
}

func waitSynced(ctx context.Context, srv *xds.Server, n int, rev int64) error {
	for {
		nodes, err := srv.Nodes(ctx, tenant)
		if err != nil {
			return err
		}
		synced := 0
		for _, s := range nodes {
			if s.State == xds.StateSynced && s.AckedRevision == rev {
				synced++
			}
		}
		if synced == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server saw %d of %d nodes synced on revision %d: %w", synced, n, rev, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// tenantConfig is a release as the control plane ships it: a real JWKS
// and a bundle-sized payload (the xDS server never opens bundles).
func tenantConfig(rev int64, bundleBytes int, revs revisions) (xds.TenantConfig, error) {
	priv, err := keys.Generate(rand.Reader)
	if err != nil {
		return xds.TenantConfig{}, err
	}
	jwks, err := token.MarshalJWKS(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return xds.TenantConfig{}, err
	}
	bundle := make([]byte, bundleBytes)
	if _, err := rand.Read(bundle); err != nil {
		return xds.TenantConfig{}, err
	}
	b64 := base64.StdEncoding.EncodeToString(bundle)
	revs[b64[:48]] = rev
	conf, err := json.Marshal(map[string]any{
		"bundles":       map[string]string{tenant: b64},
		"jwks":          json.RawMessage(jwks),
		"control_plane": map[string]any{"cluster": xds.ClusterControlPlane},
	})
	if err != nil {
		return xds.TenantConfig{}, err
	}
	sum := sha256.Sum256(bundle)
	return xds.TenantConfig{PluginConfigJSON: conf, Version: fmt.Sprintf("sha256:%x", sum[:8]), Revision: rev}, nil
}

func benchModule() []byte {
	m := make([]byte, 1<<20)
	copy(m, "\x00asm\x01\x00\x00\x00")
	return m
}

// node is one simulated data-plane node.
type node struct {
	id    string
	delta bool
	conn  *grpc.ClientConn
	sotw  sotw.ADSClient
	dst   discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	// revisions is shared by every node and written before any publish.
	revisions revisions

	mu   sync.Mutex
	cond *sync.Cond
	rev  int64
	acks map[int64]time.Time
	err  error
}

func (n *node) connect(ctx context.Context, ca *certAuthority, addr string) error {
	n.cond = sync.NewCond(&n.mu)
	n.acks = map[int64]time.Time{}
	cert, err := ca.issue(n.id, tenant, false)
	if err != nil {
		return err
	}
	n.conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13,
	})))
	if err != nil {
		return err
	}
	md, _ := structpb.NewStruct(map[string]any{"role": "gateway", "region": "bench-1"})
	nodeProto := &corev3.Node{Id: n.id, Metadata: md}
	if !n.delta {
		n.sotw = sotw.NewADSClient(ctx, nodeProto, resource.ExtensionConfigType)
		return n.sotw.InitConnect(n.conn)
	}
	n.dst, err = discovery.NewAggregatedDiscoveryServiceClient(n.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	return n.dst.Send(&discovery.DeltaDiscoveryRequest{Node: nodeProto, TypeUrl: resource.ExtensionConfigType, ResourceNamesSubscribe: []string{xds.FilterName}})
}

// loop receives configurations and ACKs each, recording when the ACK of
// each revision was sent.
func (n *node) loop() {
	for {
		rev, at, err := n.receiveAndAck()
		n.mu.Lock()
		if err != nil {
			n.err = err
			n.cond.Broadcast()
			n.mu.Unlock()
			return
		}
		if _, seen := n.acks[rev]; !seen {
			n.acks[rev] = at
		}
		n.rev = max(n.rev, rev)
		n.cond.Broadcast()
		n.mu.Unlock()
	}
}

// receiveAndAck takes the next configuration, ACKs it at once, and only
// then works out which revision it was.
func (n *node) receiveAndAck() (int64, time.Time, error) {
	if !n.delta {
		resp, err := n.sotw.Fetch()
		if err != nil {
			return 0, time.Time{}, err
		}
		if err := n.sotw.Ack(); err != nil {
			return 0, time.Time{}, err
		}
		at := time.Now()
		// The SotW client does not expose the response's version, so the
		// revision is recognised by its bundle.
		if len(resp.Resources) != 1 {
			return 0, at, fmt.Errorf("%d resources, want 1", len(resp.Resources))
		}
		rev, err := n.revisions.of(resp.Resources[0])
		return rev, at, err
	}
	resp, err := n.dst.Recv()
	if err != nil {
		return 0, time.Time{}, err
	}
	if err := n.dst.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
		return 0, time.Time{}, err
	}
	return xds.RevisionOf(resp.GetSystemVersionInfo()), time.Now(), nil
}

// revisions maps a marker of each published bundle (its first base64
// characters, random per release) to its revision.
type revisions map[string]int64

// of finds the revision in the raw resource: proto strings are embedded
// verbatim, so the marker is in the bytes without unpacking three levels
// of Any and parsing the configuration (which would add client time to
// what is measured).
func (r revisions) of(a *anypb.Any) (int64, error) {
	for marker, rev := range r {
		if bytes.Contains(a.GetValue(), []byte(marker)) {
			return rev, nil
		}
	}
	if bytes.Contains(a.GetValue(), []byte(`"bundles"`)) {
		return 0, errors.New("a bundle that was never published")
	}
	return 0, nil // the deny configuration
}

func (n *node) ackAt(rev int64) time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.acks[rev]
}

func (n *node) waitRevision(ctx context.Context, rev int64) error {
	stop := context.AfterFunc(ctx, func() {
		n.mu.Lock()
		n.cond.Broadcast()
		n.mu.Unlock()
	})
	defer stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	for n.rev < rev {
		if n.err != nil {
			return n.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n.cond.Wait()
	}
	return nil
}

func (n *node) close() {
	if n.conn != nil {
		n.conn.Close()
	}
}

// certAuthority issues the bench's node and server certificates: node id
// in the CN, tenant in the organization (the bench's stand-in for the
// control plane's enrollment certificates).
type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA() (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "aegis bench ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &certAuthority{cert: cert, key: key, pool: pool}, nil
}

func (ca *certAuthority) issue(cn, org string, server bool) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
