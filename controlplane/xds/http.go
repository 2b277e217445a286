package xds

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
)

// Register adds the server's HTTP routes to mux:
//
//	GET /v1/filter.wasm             the filter module (public: it is not secret,
//	                                Envoy's remote fetch sends no credential, and
//	                                nodes pin it by the sha256 in ECDS)
//	GET /v1/nodes                   node status (admin, auditor)
//	GET /v1/nodes/{node}/history    a node's ACKs and NACKs (admin, auditor; needs a store)
//	GET /v1/drift                   published releases and nodes not running them (admin, auditor)
//
// The last three take ?tenant=; a principal bound to a tenant sees only it.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+WasmPath, s.serveWasm)
	mux.HandleFunc("GET /v1/nodes", s.serveNodes)
	mux.HandleFunc("GET /v1/nodes/{node}/history", s.serveHistory)
	mux.HandleFunc("GET /v1/drift", s.serveDrift)
}

func (s *Server) serveWasm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/wasm")
	w.Header().Set("ETag", `"`+s.build.wasmSHA256+`"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.cfg.Wasm))
}

// readerTenant authorizes a drift read and returns the tenant it is scoped
// to ("" for all). It has answered the request when ok is false.
func readerTenant(w http.ResponseWriter, r *http.Request) (tenant string, ok bool) {
	p, authed := auth.FromContext(r.Context())
	if !authed {
		httpapi.Error(w, http.StatusUnauthorized, "unauthorized", "authentication required", nil)
		return "", false
	}
	if !p.Has(auth.RoleAdmin) && !p.Has(auth.RoleAuditor) {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "needs the admin or auditor role", nil)
		return "", false
	}
	tenant = r.URL.Query().Get("tenant")
	if tenant != "" && !validName(tenant) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "tenant: want 1-128 characters of [A-Za-z0-9._-]", nil)
		return "", false
	}
	if tenant == "" {
		tenant = p.Tenant
	}
	if !p.CanAccessTenant(tenant) {
		httpapi.Error(w, http.StatusForbidden, "forbidden", "not allowed for this tenant", map[string]any{"tenant": tenant})
		return "", false
	}
	return tenant, true
}

func (s *Server) serveNodes(w http.ResponseWriter, r *http.Request) {
	tenant, ok := readerTenant(w, r)
	if !ok {
		return
	}
	state := r.URL.Query().Get("state")
	if state != "" && !slices.Contains(states, state) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "state: want synced, pending, nacked or offline", nil)
		return
	}
	nodes, err := s.Nodes(r.Context(), tenant)
	if err != nil {
		s.log.Error("xds: listing nodes", "err", err)
		httpapi.Error(w, http.StatusInternalServerError, "internal", "reading node status failed", nil)
		return
	}
	if state != "" {
		nodes = slices.DeleteFunc(nodes, func(n NodeStatus) bool { return n.State != state })
	}
	if nodes == nil {
		nodes = []NodeStatus{}
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}

func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request) {
	tenant, ok := readerTenant(w, r)
	if !ok {
		return
	}
	node := r.PathValue("node")
	if !validName(node) {
		httpapi.Error(w, http.StatusBadRequest, "bad_request", "node: want 1-128 characters of [A-Za-z0-9._-]", nil)
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			httpapi.Error(w, http.StatusBadRequest, "bad_request", "limit: want 1-1000", nil)
			return
		}
		limit = n
	}
	// The node must belong to a tenant the caller may read; an unknown
	// node and a node of another tenant answer the same.
	nodes, err := s.Nodes(r.Context(), tenant)
	if err != nil {
		s.log.Error("xds: node history", "err", err)
		httpapi.Error(w, http.StatusInternalServerError, "internal", "reading node status failed", nil)
		return
	}
	if !slices.ContainsFunc(nodes, func(n NodeStatus) bool { return n.NodeID == node }) {
		httpapi.Error(w, http.StatusNotFound, "not_found", "no such node", map[string]any{"node": node})
		return
	}
	events, err := s.History(r.Context(), node, limit)
	if errors.Is(err, errNoStore) {
		httpapi.Error(w, http.StatusNotImplemented, "no_store", "history needs the drift store", nil)
		return
	}
	if err != nil {
		s.log.Error("xds: node history", "err", err)
		httpapi.Error(w, http.StatusInternalServerError, "internal", "reading node history failed", nil)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"node_id": node, "events": events})
}

func (s *Server) serveDrift(w http.ResponseWriter, r *http.Request) {
	tenant, ok := readerTenant(w, r)
	if !ok {
		return
	}
	d, err := s.Drift(r.Context(), tenant)
	if err != nil {
		s.log.Error("xds: drift", "err", err)
		httpapi.Error(w, http.StatusInternalServerError, "internal", "reading node status failed", nil)
		return
	}
	httpapi.JSON(w, http.StatusOK, d)
}
