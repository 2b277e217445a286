package xds

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"
)

// Node states in the API and the aegis_xds_nodes metric.
const (
	StateSynced  = "synced"  // runs the configuration it should, no outstanding NACK
	StatePending = "pending" // connected, its configuration is on its way
	StateNacked  = "nacked"  // rejected a configuration (see Nack)
	StateOffline = "offline" // not connected and not known to run what it should
)

var states = []string{StateSynced, StatePending, StateNacked, StateOffline}

// NodeStatus is what the control plane knows about one node.
type NodeStatus struct {
	NodeID    string `json:"node_id"`
	Tenant    string `json:"tenant"`
	Region    string `json:"region,omitempty"`
	Role      Role   `json:"role"`
	Connected bool   `json:"connected"`
	State     string `json:"state"`
	// ExpectedVersion is the ECDS version of the newest release targeting
	// the node (r0-… when its tenant has none: the deny configuration).
	ExpectedVersion  string     `json:"expected_version"`
	ExpectedRevision int64      `json:"expected_revision"`
	AckedVersion     string     `json:"acked_version,omitempty"`
	AckedRevision    int64      `json:"acked_revision"`
	AckedAt          *time.Time `json:"acked_at,omitempty"`
	Nack             *Nack      `json:"nack,omitempty"`
	LastSeen         time.Time  `json:"last_seen"`
}

// Nack is the node's latest rejection of a configuration that it has not
// since accepted a configuration of the same type over.
type Nack struct {
	Type     string    `json:"type"` // ecds, listener, route, cluster
	Version  string    `json:"version"`
	Revision int64     `json:"revision,omitempty"`
	Nonce    string    `json:"nonce"`
	Error    string    `json:"error"`
	At       time.Time `json:"at"`
}

// Release is a published tenant configuration as the drift API shows it.
type Release struct {
	Tenant      string    `json:"tenant"`
	Version     string    `json:"version"`
	Revision    int64     `json:"revision"`
	Regions     []string  `json:"regions,omitempty"`
	Roles       []Role    `json:"roles,omitempty"`
	PublishedAt time.Time `json:"published_at"`
}

// Drift is the answer of GET /v1/drift.
type Drift struct {
	Published []Release      `json:"published"`
	Counts    map[string]int `json:"counts"`
	// Nodes are the nodes not in state synced.
	Nodes []NodeStatus `json:"nodes"`
}

const typeECDS = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"

// rowLocked is the persisted part of a node's status. Caller holds s.mu.
func (s *Server) rowLocked(ns *nodeState) NodeStatus {
	r := NodeStatus{
		NodeID: ns.info.id, Tenant: ns.info.tenant, Region: ns.info.region, Role: ns.info.role,
		Connected: ns.connected, AckedVersion: ns.acked[typeECDS], LastSeen: ns.lastSeen,
	}
	if !ns.ackedAt.IsZero() {
		t := ns.ackedAt
		r.AckedAt = &t
	}
	if ns.nack != nil {
		n := *ns.nack
		r.Nack = &n
	}
	return r
}

// complete fills in what depends on the current releases. Caller holds s.mu.
func (s *Server) completeLocked(r *NodeStatus) {
	info := nodeInfo{id: r.NodeID, tenant: r.Tenant, region: r.Region, role: r.Role}
	r.ExpectedVersion = s.build.ecdsVersion(info, s.releaseFor(info))
	r.ExpectedRevision = RevisionOf(r.ExpectedVersion)
	r.AckedRevision = RevisionOf(r.AckedVersion)
	switch {
	case r.Nack != nil:
		r.State = StateNacked
	case r.AckedVersion == r.ExpectedVersion:
		r.State = StateSynced
	case !r.Connected:
		r.State = StateOffline
	default:
		r.State = StatePending
	}
}

// Nodes returns the status of every node of tenant ("" for all), sorted by
// node id. With a store it reads the store, which also holds nodes served
// by other replicas and before a restart.
func (s *Server) Nodes(ctx context.Context, tenant string) ([]NodeStatus, error) {
	var rows []NodeStatus
	if s.store != nil {
		if err := s.store.flush(ctx); err != nil {
			return nil, err
		}
		var err error
		if rows, err = s.store.nodes(ctx); err != nil {
			return nil, err
		}
	} else {
		s.mu.Lock()
		for _, ns := range s.nodes {
			rows = append(rows, s.rowLocked(ns))
		}
		s.mu.Unlock()
	}
	out := rows[:0]
	s.mu.Lock()
	for _, r := range rows {
		if tenant != "" && r.Tenant != tenant {
			continue
		}
		s.completeLocked(&r)
		out = append(out, r)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out, nil
}

// Drift returns the published releases of tenant ("" for all) and its
// nodes that do not run them.
func (s *Server) Drift(ctx context.Context, tenant string) (Drift, error) {
	nodes, err := s.Nodes(ctx, tenant)
	if err != nil {
		return Drift{}, err
	}
	d := Drift{Published: []Release{}, Counts: map[string]int{}, Nodes: []NodeStatus{}}
	for _, st := range states {
		d.Counts[st] = 0
	}
	for _, n := range nodes {
		d.Counts[n.State]++
		if n.State != StateSynced {
			d.Nodes = append(d.Nodes, n)
		}
	}
	s.mu.Lock()
	for t, rs := range s.releases {
		if tenant != "" && t != tenant {
			continue
		}
		for _, r := range rs {
			d.Published = append(d.Published, Release{
				Tenant: t, Version: r.cfg.Version, Revision: r.cfg.Revision,
				Regions: r.cfg.Regions, Roles: r.cfg.Roles, PublishedAt: r.published.UTC(),
			})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(d.Published, func(a, b Release) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return cmp.Compare(a.Revision, b.Revision)
	})
	return d, nil
}

// countStates counts this replica's nodes by state, for the metric.
func (s *Server) countStates() map[string]int {
	counts := map[string]int{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ns := range s.nodes {
		r := s.rowLocked(ns)
		s.completeLocked(&r)
		counts[r.State]++
	}
	return counts
}
