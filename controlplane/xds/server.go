package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server is the ADS server (state of the world and delta) of the fleet. It
// keeps one snapshot per enrolled node, built from the newest release of
// the node's tenant that targets the node's region and role, and records
// what each node ACKs and NACKs.
//
// # Notes
//
// All methods are safe for concurrent use. The server stops with the
// context given to NewServer; Close flushes the drift store.
type Server struct {
	ctx     context.Context
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	build   *builder
	cache   cache.SnapshotCache
	xds     serverv3.Server
	metrics *metrics
	store   *store

	mu       sync.Mutex
	releases map[string][]*release // per tenant, oldest first
	nodes    map[string]*nodeState
	streams  map[streamKey]*streamState
}

// streamKey tells SotW and delta streams apart: their ids are counted
// separately by go-control-plane.
type streamKey struct {
	delta bool
	id    int64
}

type streamState struct {
	nodeID, tenant string // the enrolled identity
	region         string // enrolled; empty: from metadata
	role           Role   // enrolled; empty: from metadata
	node           *nodeState
	sent           map[string]sent // type URL → the last response
}

// sent is the last response of a type on a stream: only a request naming
// its nonce is an ACK or NACK of it (older nonces are stale).
type sent struct {
	nonce, version string
}

// nodeState is what the server knows about one node. Fields other than
// setMu are guarded by Server.mu.
type nodeState struct {
	// setMu serialises snapshot changes of this node, so the last one set
	// always reflects the newest inputs.
	setMu sync.Mutex
	built string // versions of the snapshot set in the cache, "" for none
	envoy *envoyResources

	info      nodeInfo
	streams   int
	connected bool
	lastSeen  time.Time
	acked     map[string]string // type URL → acked version
	ackedAt   time.Time         // of the ECDS version
	nack      *Nack             // outstanding: cleared by an ACK of its type
	// pending are the ECDS versions published to the node while it was
	// connected and not yet ACKed, oldest first, for the lag metric. An ACK
	// of one settles it and every older one (superseded).
	pending []pendingVersion
}

type pendingVersion struct {
	version string
	since   time.Time
}

// maxPending bounds the versions in flight per node.
const maxPending = 16

// NewServer checks cfg, loads node state from the store (if any) and
// returns a server ready for RegisterGRPC and Register.
func NewServer(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("xds config: %w", err)
	}
	cfg.Wasm = slices.Clone(cfg.Wasm)
	cfg.Upstreams = slices.Clone(cfg.Upstreams)
	b, err := newBuilder(&cfg)
	if err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	if err := b.validateRelease("tenant", nil); err != nil {
		return nil, fmt.Errorf("xds: deny configuration: %w", err)
	}
	s := &Server{
		ctx:      ctx,
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Now,
		build:    b,
		releases: map[string][]*release{},
		nodes:    map[string]*nodeState{},
		streams:  map[streamKey]*streamState{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	m, err := newMetrics(cfg.Registerer, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if cfg.Store != nil {
		st, err := openStore(ctx, cfg.Store, s.log, m)
		if err != nil {
			return nil, err
		}
		s.store = st
		rows, err := st.nodes(ctx)
		if err != nil {
			return nil, err
		}
		// What nodes ran before a restart stays visible; none is connected
		// to this process yet.
		for _, r := range rows {
			ns := &nodeState{info: nodeInfo{id: r.NodeID, tenant: r.Tenant, region: r.Region, role: r.Role}, acked: map[string]string{}, lastSeen: r.LastSeen, nack: r.Nack}
			if r.AckedVersion != "" {
				ns.acked[typeECDS] = r.AckedVersion
			}
			if r.AckedAt != nil {
				ns.ackedAt = *r.AckedAt
			}
			s.nodes[r.NodeID] = ns
		}
		go st.run(ctx)
	}
	logger := log.LoggerFuncs{
		DebugFunc: func(string, ...any) {},
		InfoFunc:  func(string, ...any) {},
		WarnFunc:  func(f string, a ...any) { s.log.Warn(fmt.Sprintf(f, a...), "component", "xds") },
		ErrorFunc: func(f string, a ...any) { s.log.Error(fmt.Sprintf(f, a...), "component", "xds") },
	}
	s.cache = cache.NewSnapshotCache(true, cache.IDHash{}, logger)
	s.xds = serverv3.NewServer(ctx, s.cache, callbacks{s})
	go s.reconcileLoop(ctx)
	return s, nil
}

// reconcileInterval is how often connected nodes are checked against the
// current releases.
const reconcileInterval = 10 * time.Second

// reconcileLoop gives every connected node what it should have, in case a
// publish did not reach it (SetTenant's context ended, a snapshot failed to
// build). A node already up to date costs two small hashes.
func (s *Server) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("xds: reconciling nodes", "err", err)
			}
		}
	}
}

func (s *Server) reconcile(ctx context.Context) error {
	s.mu.Lock()
	var connected []*nodeState
	for _, ns := range s.nodes {
		if ns.streams > 0 {
			connected = append(connected, ns)
		}
	}
	s.mu.Unlock()
	return s.refreshAll(ctx, connected)
}

// RegisterGRPC adds the aggregated discovery service (SotW and delta) to g.
// g should require client certificates: Identity reads the node from them.
func (s *Server) RegisterGRPC(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Close writes pending drift records to the store.
func (s *Server) Close(ctx context.Context) error {
	if s.store == nil {
		return nil
	}
	return s.store.flush(ctx)
}

// SetTenant publishes tc to the tenant's nodes that it targets and returns
// once every connected one has its new snapshot (the push itself is
// asynchronous: ACKs arrive later and show in Nodes and the lag metric).
// A release targeting all regions and roles replaces every earlier one.
//
// A release that fails its checks is refused whole. Once accepted it is
// the published one even if SetTenant then returns an error (ctx ended, or
// a node's snapshot could not be built): such nodes keep what they run,
// show as pending in Nodes, and get the release when they reconnect or
// with the next SetTenant.
func (s *Server) SetTenant(ctx context.Context, tenant string, tc TenantConfig) error {
	members, err := checkTenantConfig(tenant, tc)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", tenant, err)
	}
	now := s.now()
	rel, err := newRelease(tenant, tc, members, now)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", tenant, err)
	}
	if err := s.build.validateRelease(tenant, rel); err != nil {
		return fmt.Errorf("tenant %s: %w", tenant, err)
	}
	s.mu.Lock()
	if cur := s.releases[tenant]; len(cur) > 0 && cur[len(cur)-1].cfg.Revision > tc.Revision {
		// Revisions only grow; a rollback is a new release with a new
		// revision that carries the old content.
		s.mu.Unlock()
		return fmt.Errorf("tenant %s: revision %d is older than the published %d", tenant, tc.Revision, cur[len(cur)-1].cfg.Revision)
	}
	kept := s.releases[tenant][:0:0]
	for _, r := range s.releases[tenant] {
		if !rel.covers(r) {
			kept = append(kept, r)
		}
	}
	s.releases[tenant] = append(kept, rel)
	var affected []*nodeState
	for _, ns := range s.nodes {
		if ns.info.tenant != tenant || ns.streams == 0 || !rel.matches(ns.info.region, ns.info.role) {
			continue
		}
		if v := s.build.ecdsVersion(ns.info, rel); len(ns.pending) == 0 || ns.pending[len(ns.pending)-1].version != v {
			if len(ns.pending) == maxPending {
				ns.pending = ns.pending[1:]
			}
			ns.pending = append(ns.pending, pendingVersion{version: v, since: now})
		}
		affected = append(affected, ns)
	}
	s.mu.Unlock()
	return s.refreshAll(ctx, affected)
}

// refreshAll rebuilds the snapshots of nodes on every core.
func (s *Server) refreshAll(ctx context.Context, nodes []*nodeState) error {
	work := make(chan *nodeState)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(1, len(nodes))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ns := range work {
				if err := s.refresh(ns); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	var ctxErr error
feed:
	for _, ns := range nodes {
		if ctxErr = ctx.Err(); ctxErr != nil {
			break
		}
		select {
		case work <- ns:
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctxErr
	}
}

// refresh sets the node's snapshot from the current releases. A node whose
// snapshot cannot be built keeps the one it has (fail closed: it never
// gets a resource that did not validate).
func (s *Server) refresh(ns *nodeState) error {
	ns.setMu.Lock()
	defer ns.setMu.Unlock()
	s.mu.Lock()
	if ns.streams == 0 {
		s.mu.Unlock()
		return nil
	}
	info := ns.info
	rel := s.releaseFor(info)
	s.mu.Unlock()
	key := s.build.ecdsVersion(info, rel) + "/" + s.build.listenerVersion(info) + "/" + string(info.role)
	if key == ns.built {
		return nil
	}
	if ns.envoy == nil || ns.envoy.version != s.build.listenerVersion(info) {
		env, err := s.build.envoy(info)
		if err != nil {
			s.metrics.buildErrors.Inc()
			s.log.Error("xds: building a node's listener", "node", info.id, "tenant", info.tenant, "err", err)
			return fmt.Errorf("node %s: %w", info.id, err)
		}
		ns.envoy = env
	}
	snap, err := s.build.snapshot(info, rel, ns.envoy)
	if err != nil {
		s.metrics.buildErrors.Inc()
		s.log.Error("xds: building a node snapshot", "node", info.id, "tenant", info.tenant, "err", err)
		return fmt.Errorf("node %s: %w", info.id, err)
	}
	if err := s.cache.SetSnapshot(s.ctx, info.id, snap); err != nil {
		return fmt.Errorf("node %s: set snapshot: %w", info.id, err)
	}
	ns.built = key
	return nil
}

// releaseFor is the newest release of the node's tenant targeting it, or
// nil. Caller holds s.mu.
func (s *Server) releaseFor(n nodeInfo) *release {
	rs := s.releases[n.tenant]
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].matches(n.region, n.role) {
			return rs[i]
		}
	}
	return nil
}

// callbacks adapts go-control-plane's stream callbacks to the server.
type callbacks struct{ s *Server }

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.s.open(ctx, streamKey{id: id})
}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.s.open(ctx, streamKey{delta: true, id: id})
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.s.closed(streamKey{id: id}) }

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.s.closed(streamKey{delta: true, id: id})
}

func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	return c.s.request(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	return c.s.request(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.s.responded(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.responded(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

func (c callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "REST fetch is not served: use ADS")
}

func (c callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// open authenticates a new stream from its peer.
func (s *Server) open(ctx context.Context, key streamKey) error {
	id, err := s.cfg.Identity(ctx)
	if err != nil {
		s.metrics.refused.WithLabelValues("unauthenticated").Inc()
		return status.Errorf(codes.Unauthenticated, "node identity: %v", err)
	}
	if !validName(id.NodeID) || !validName(id.Tenant) || (id.Region != "" && !validName(id.Region)) || (id.Role != "" && !id.Role.valid()) {
		s.metrics.refused.WithLabelValues("unauthenticated").Inc()
		return status.Error(codes.Unauthenticated, "node identity: malformed node id, tenant, region or role")
	}
	s.mu.Lock()
	s.streams[key] = &streamState{nodeID: id.NodeID, tenant: id.Tenant, region: id.Region, role: id.Role, sent: map[string]sent{}}
	s.mu.Unlock()
	return nil
}

// request checks every request against the stream's identity, binds the
// node on the first one, and turns a request that answers the stream's
// latest response of its type into an ACK or NACK.
func (s *Server) request(key streamKey, node *corev3.Node, typeURL, nonce, errMsg string, isNack bool) error {
	s.mu.Lock()
	st := s.streams[key]
	if st == nil {
		s.mu.Unlock()
		return status.Error(codes.Internal, "unknown stream")
	}
	if st.node == nil {
		ns, err := s.bindLocked(st, node)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if err := s.refresh(ns); err != nil {
			return status.Error(codes.Internal, "building the node configuration failed")
		}
		return nil
	}
	if node != nil {
		if err := s.checkSameNode(st, node); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	ns := st.node
	ns.lastSeen = s.now()
	last, ok := st.sent[typeURL]
	if nonce == "" || !ok || last.nonce != nonce {
		s.mu.Unlock()
		return nil
	}
	var ev *event
	if isNack {
		ev = s.nackLocked(ns, typeURL, last, errMsg)
	} else {
		ev = s.ackLocked(ns, typeURL, last)
	}
	row := s.rowLocked(ns)
	s.mu.Unlock()
	if s.store != nil {
		s.store.record(row, ev)
	}
	return nil
}

// bindLocked ties a stream to its node on its first request. The node id
// must be the enrolled one, and a tenant in the metadata must be the
// enrolled tenant: a node never chooses what it receives.
func (s *Server) bindLocked(st *streamState, node *corev3.Node) (*nodeState, error) {
	info, err := s.nodeInfo(st, node)
	if err != nil {
		return nil, err
	}
	ns := s.nodes[info.id]
	if ns != nil && ns.streams > 0 && ns.info != info {
		s.metrics.refused.WithLabelValues("conflict").Inc()
		return nil, status.Errorf(codes.FailedPrecondition, "node %s is connected with other metadata (tenant, region or role)", info.id)
	}
	if ns == nil {
		ns = &nodeState{acked: map[string]string{}}
		s.nodes[info.id] = ns
	}
	if ns.info != info {
		// Re-enrolled or moved: what it acknowledged before was for
		// another configuration.
		ns.info = info
		ns.acked = map[string]string{}
		ns.ackedAt = time.Time{}
		ns.nack = nil
	}
	ns.streams++
	ns.connected = true
	ns.lastSeen = s.now()
	// The first configuration of a (re)connecting node is not propagation
	// of a release: only SetTenant starts a lag measurement.
	ns.pending = nil
	st.node = ns
	if s.store != nil {
		s.store.record(s.rowLocked(ns), nil)
	}
	return ns, nil
}

func (s *Server) nodeInfo(st *streamState, node *corev3.Node) (nodeInfo, error) {
	if node.GetId() == "" {
		s.metrics.refused.WithLabelValues("no_node").Inc()
		return nodeInfo{}, status.Error(codes.InvalidArgument, "the first request must name the node")
	}
	if node.GetId() != st.nodeID {
		s.metrics.refused.WithLabelValues("identity_mismatch").Inc()
		return nodeInfo{}, status.Errorf(codes.PermissionDenied, "node id %q is not the enrolled identity of this connection", node.GetId())
	}
	md := node.GetMetadata().GetFields()
	if t, ok := md["tenant"]; ok && t.GetStringValue() != st.tenant {
		s.metrics.refused.WithLabelValues("identity_mismatch").Inc()
		return nodeInfo{}, status.Error(codes.PermissionDenied, "metadata tenant is not the enrolled tenant of this node")
	}
	r, err := s.bindEnrolled("role", md["role"].GetStringValue(), string(st.role))
	if err != nil {
		return nodeInfo{}, err
	}
	role := Role(r)
	if !role.valid() {
		s.metrics.refused.WithLabelValues("bad_metadata").Inc()
		return nodeInfo{}, status.Errorf(codes.InvalidArgument, "metadata role %q: want gateway, sidecar or edge", role)
	}
	region, err := s.bindEnrolled("region", md["region"].GetStringValue(), st.region)
	if err != nil {
		return nodeInfo{}, err
	}
	if region != "" && !validName(region) {
		s.metrics.refused.WithLabelValues("bad_metadata").Inc()
		return nodeInfo{}, status.Error(codes.InvalidArgument, "metadata region: want 1-128 characters of [A-Za-z0-9._-]")
	}
	return nodeInfo{id: st.nodeID, tenant: st.tenant, region: region, role: role}, nil
}

// bindEnrolled holds what a node's metadata says of field to its
// enrollment: nothing enrolled, the metadata says; nothing in the metadata,
// the enrolled value; a different value is refused.
func (s *Server) bindEnrolled(field, claimed, enrolled string) (string, error) {
	switch {
	case enrolled == "":
		return claimed, nil
	case claimed == "":
		return enrolled, nil
	case claimed != enrolled:
		s.metrics.refused.WithLabelValues("identity_mismatch").Inc()
		return "", status.Errorf(codes.PermissionDenied, "metadata %s %q is not the enrolled %s %q of this node", field, claimed, field, enrolled)
	}
	return claimed, nil
}

// checkSameNode refuses a later request that names another node or other
// metadata than the stream was bound with.
func (s *Server) checkSameNode(st *streamState, node *corev3.Node) error {
	info, err := s.nodeInfo(st, node)
	if err != nil {
		return err
	}
	if info != st.node.info {
		s.metrics.refused.WithLabelValues("conflict").Inc()
		return status.Error(codes.FailedPrecondition, "node metadata changed on an open stream")
	}
	return nil
}

func (s *Server) ackLocked(ns *nodeState, typeURL string, last sent) *event {
	now := s.now()
	s.metrics.acks.WithLabelValues(typeName(typeURL)).Inc()
	prev := ns.acked[typeURL]
	ns.acked[typeURL] = last.version
	if ns.nack != nil && ns.nack.Type == typeName(typeURL) {
		ns.nack = nil
	}
	if typeURL != typeECDS {
		return nil
	}
	ns.ackedAt = now
	for i, p := range ns.pending {
		if p.version == last.version {
			s.metrics.lag.Observe(now.Sub(p.since).Seconds())
			ns.pending = ns.pending[i+1:]
			break
		}
	}
	if prev == last.version {
		return nil // a re-ACK (e.g. after a NACK of another type): nothing new to keep
	}
	return &event{NodeID: ns.info.id, Tenant: ns.info.tenant, Type: typeName(typeURL), Kind: "ack", Version: last.version, Nonce: last.nonce, At: now}
}

func (s *Server) nackLocked(ns *nodeState, typeURL string, last sent, msg string) *event {
	now := s.now()
	s.metrics.nacks.WithLabelValues(typeName(typeURL)).Inc()
	msg = truncate(msg, 2048)
	ns.nack = &Nack{Type: typeName(typeURL), Version: last.version, Revision: RevisionOf(last.version), Nonce: last.nonce, Error: msg, At: now}
	if typeURL != typeECDS {
		ns.nack.Revision = 0
	}
	return &event{NodeID: ns.info.id, Tenant: ns.info.tenant, Type: typeName(typeURL), Kind: "nack", Version: last.version, Nonce: last.nonce, Error: msg, At: now}
}

func (s *Server) responded(key streamKey, typeURL, nonce, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[key]; st != nil {
		st.sent[typeURL] = sent{nonce: nonce, version: version}
	}
}

func (s *Server) closed(key streamKey) {
	s.mu.Lock()
	st := s.streams[key]
	delete(s.streams, key)
	s.mu.Unlock()
	if st == nil || st.node == nil {
		return
	}
	ns := st.node
	ns.setMu.Lock()
	defer ns.setMu.Unlock()
	s.mu.Lock()
	ns.streams--
	last := ns.streams == 0
	var row NodeStatus
	if last {
		ns.connected = false
		ns.pending = nil
		ns.built = ""
		ns.lastSeen = s.now()
		row = s.rowLocked(ns)
	}
	s.mu.Unlock()
	if last {
		// Snapshots live only while a node is connected; a reconnect
		// rebuilds from the current releases.
		s.cache.ClearSnapshot(ns.info.id)
		if s.store != nil {
			s.store.record(row, nil)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// errNoStore is returned by history queries without a store.
var errNoStore = errors.New("no drift store configured")
