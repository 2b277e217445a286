// Package stack runs a whole Aegis deployment on loopback for the
// end-to-end tests and the demo: the control plane and the edge as real
// processes of the built binary, the tool servers in-process, and an API
// client for every role (author, approver, publisher, auditor, admin).
package stack

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/e2e/internal/harness"
	"github.com/aegis-mesh/aegis/e2e/internal/tools"
	"github.com/aegis-mesh/aegis/keys"
)

// Region is where every node of the stack runs: both example policies
// allow it.
const Region = "eu-west-1"

// Tenant is one tenant of the stack with the example policy it runs.
type Tenant struct {
	Name   string
	Policy string // file under policies/examples
	Stage  string // release stage: enforce or observe
}

// Options configure a stack.
type Options struct {
	Dir      string // working directory: data, keys, logs
	BinDir   string // where the binaries are built (default Dir/bin); must outlive every stack of the process
	Database string // control plane store; "" = embedded SQLite
	Tenants  []Tenant
	Logf     func(format string, args ...any)
}

// Stack is a running deployment.
type Stack struct {
	opts Options
	Bin  harness.Binaries
	Root string

	CP      *harness.Process
	CPAddr  string
	Admin   *API
	Roles   map[string]*API // tenant/role → client
	Revs    map[string]int  // tenant → current revision
	toolSrv []*http.Server

	Edges map[string]*Edge // by name

	// CPArgs are extra flags for the control plane's next (re)start, e.g.
	// a new --bundle-signing-key.
	CPArgs []string

	Payments *tools.Recorder
	MCP      *tools.Recorder
	Upstream string // the tool servers' address (one listener, routed by Host)
}

// Edge is one running edge node.
type Edge struct {
	Name      string
	Tenant    string   // home tenant
	Tenants   []string // every tenant served
	Proc      *harness.Process
	Addr      string // proxy
	AdminAddr string // /metrics /healthz /readyz
	NodeID    string
	Dir       string
	args      []string
	env       []string
}

func (s *Stack) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// Start builds the binaries, starts the tool servers and the control plane,
// creates the tenants with their role credentials, and publishes each
// tenant's policy. Edges are started with StartEdge.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	s := &Stack{opts: opts, Roles: map[string]*API{}, Revs: map[string]int{}, Edges: map[string]*Edge{}}
	root, err := harness.RepoRoot()
	if err != nil {
		return nil, err
	}
	s.Root = root
	for _, d := range []string{"bin", "logs", "cp"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	s.logf("building the aegis CLI and the filter module")
	binDir := opts.BinDir
	if binDir == "" {
		binDir = filepath.Join(opts.Dir, "bin")
	}
	if s.Bin, err = harness.Build(ctx, binDir); err != nil {
		return nil, err
	}
	if err := s.startTools(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.StartControlPlane(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.setupTenants(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) startTools() error {
	s.Payments, s.MCP = &tools.Recorder{}, &tools.Recorder{}
	payments := tools.Payments(s.Payments)
	mcpMux := http.NewServeMux()
	mcpMux.Handle("/mcp", tools.MCPK8s(s.MCP))
	// One listener for every tool: the edge routes by Host, and so does this.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if i := strings.LastIndexByte(host, ':'); i > 0 {
			host = host[:i]
		}
		switch host {
		case "payments.acme.internal", "billing.acme.internal":
			payments.ServeHTTP(w, r)
		case "mcp-k8s.platform.internal":
			mcpMux.ServeHTTP(w, r)
		default:
			http.Error(w, `{"error":"unknown tool host"}`, http.StatusNotFound)
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	s.toolSrv = append(s.toolSrv, srv)
	s.Upstream = "http://" + l.Addr().String()
	return nil
}

// StartControlPlane starts (or restarts) the control plane process on the
// same data directory and address.
func (s *Stack) StartControlPlane(ctx context.Context) error {
	if s.CPAddr == "" {
		addr, err := harness.FreePort()
		if err != nil {
			return err
		}
		s.CPAddr = addr
	}
	args := []string{"controlplane", "--data-dir", filepath.Join(s.opts.Dir, "cp"), "--listen", s.CPAddr, "--log-level", "info"}
	if s.opts.Database != "" {
		args = append(args, "--database", s.opts.Database)
	}
	args = append(args, s.CPArgs...)
	p, err := harness.Start(ctx, "controlplane", filepath.Join(s.opts.Dir, "logs"), s.Bin.Aegis, args, nil)
	if err != nil {
		return err
	}
	s.CP = p
	base := "https://" + s.CPAddr
	// The CA exists once the process has started for the first time.
	ca := filepath.Join(s.opts.Dir, "cp", "ca.pem")
	deadline := time.Now().Add(60 * time.Second)
	for !fileExists(ca) {
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("control plane wrote no CA: %s", p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	client, err := newHTTPClient(ca)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, client, base+"/readyz", 60*time.Second); err != nil {
		return err
	}
	admin, err := os.ReadFile(filepath.Join(s.opts.Dir, "cp", "admin.token"))
	if err != nil {
		return fmt.Errorf("bootstrap admin credential: %w", err)
	}
	s.Admin = &API{Base: base, Token: strings.TrimSpace(string(admin)), Client: client}
	for k, a := range s.Roles {
		a.Client = client
		s.Roles[k] = a
	}
	return nil
}

// StopControlPlane stops the control plane gracefully.
func (s *Stack) StopControlPlane() error {
	if s.CP == nil {
		return nil
	}
	err := s.CP.Stop(20 * time.Second)
	s.CP = nil
	return err
}

func waitReady(ctx context.Context, p *harness.Process, client *http.Client, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited: %s", p.Name, p.Tail(30))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready at %s: %s\n%s", p.Name, url, last, p.Tail(30))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Role returns the API client of a role in a tenant.
func (s *Stack) Role(tenant, role string) *API { return s.Roles[tenant+"/"+role] }

func (s *Stack) setupTenants(ctx context.Context) error {
	for _, t := range s.opts.Tenants {
		if err := s.Admin.JSON(ctx, "POST", "/v1/tenants", map[string]any{"name": t.Name, "two_person": true}, nil, http.StatusCreated); err != nil {
			return err
		}
		// One person per role: the two-person rule needs the approver to
		// be someone other than the author.
		for role, who := range map[string]string{"author": "alice", "approver": "bob", "publisher": "carol", "auditor": "dave", "admin": "erin"} {
			var groups []string
			if role == "approver" {
				// The groups the example policies name as approvers: the
				// control plane lets only them decide an approval.
				groups = []string{"payments-leads", "release-managers"}
			}
			tok, err := s.IssueAPIToken(ctx, t.Name, who+"@"+t.Name, []string{role}, groups)
			if err != nil {
				return err
			}
			s.Roles[t.Name+"/"+role] = s.Admin.With(tok)
		}
		stage := t.Stage
		if stage == "" {
			stage = "enforce"
		}
		if _, err := s.Publish(ctx, t.Name, t.Policy, stage); err != nil {
			return err
		}
	}
	return nil
}

// Publish submits an example policy (with its test table) as the tenant's
// author, approves it as the approver and publishes it as the publisher.
// It returns the new revision.
func (s *Stack) Publish(ctx context.Context, tenant, policyFile, stage string) (int, error) {
	files := map[string]string{}
	base := strings.TrimSuffix(policyFile, ".yaml")
	for _, name := range []string{policyFile, base + "_test.yaml"} {
		b, err := os.ReadFile(filepath.Join(s.Root, "policies", "examples", name))
		if err != nil {
			return 0, err
		}
		files[name] = string(b)
	}
	return s.PublishFiles(ctx, tenant, files, stage)
}

// PublishFiles is Publish with the policy files given: submitted by the
// author, approved by the approver, published by the publisher.
func (s *Stack) PublishFiles(ctx context.Context, tenant string, files map[string]string, stage string) (int, error) {
	var v struct {
		Version int `json:"version"`
	}
	if err := s.Role(tenant, "author").JSON(ctx, "POST", "/v1/tenants/"+tenant+"/policies", map[string]any{"files": files}, &v, http.StatusCreated); err != nil {
		return 0, err
	}
	if err := s.Role(tenant, "approver").JSON(ctx, "POST", fmt.Sprintf("/v1/tenants/%s/policies/%d/approve", tenant, v.Version), nil, nil, http.StatusOK); err != nil {
		return 0, err
	}
	var rel struct {
		Revision int `json:"revision"`
	}
	if err := s.Role(tenant, "publisher").JSON(ctx, "POST", "/v1/tenants/"+tenant+"/releases", map[string]any{"version": v.Version, "stage": stage}, &rel, http.StatusCreated); err != nil {
		return 0, err
	}
	s.Revs[tenant] = rel.Revision
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	s.logf("tenant %s: %s submitted by alice, approved by bob, published by carol as revision %d (%s)", tenant, strings.Join(names, " + "), rel.Revision, stage)
	return rel.Revision, nil
}

// IssueAPIToken has the admin issue an API token (a day long) for subject
// in tenant with roles and, for approvers, groups.
func (s *Stack) IssueAPIToken(ctx context.Context, tenant, subject string, roles, groups []string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	req := map[string]any{"subject": subject, "tenant": tenant, "roles": roles, "ttl_seconds": 86400}
	if len(groups) > 0 {
		req["groups"] = groups
	}
	if err := s.Admin.JSON(ctx, "POST", "/v1/tokens/api", req, &out, http.StatusCreated); err != nil {
		return "", fmt.Errorf("issuing an API token for %s: %w", subject, err)
	}
	return out.Token, nil
}

// AgentToken mints an agent token through the token service.
func (s *Stack) AgentToken(ctx context.Context, tenant, agent string, actingFor ...string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	err := s.Role(tenant, "admin").JSON(ctx, "POST", "/v1/tokens/agent", map[string]any{
		"tenant": tenant, "agent": agent, "acting_for": actingFor, "region": Region, "ttl_seconds": 3600,
	}, &out, http.StatusCreated, http.StatusOK)
	return out.Token, err
}

// publicKeyPEM fetches the current public key of a control-plane key set
// (bundle or state) as PEM: the trust root an operator deploys.
func (s *Stack) publicKeyPEM(ctx context.Context, which string) (string, error) {
	var out struct {
		Current string `json:"current"`
		Keys    []struct {
			Kid string `json:"kid"`
			PEM string `json:"public_key_pem"`
		} `json:"keys"`
	}
	if err := s.Admin.JSON(ctx, "GET", "/v1/keys/"+which, nil, &out); err != nil {
		return "", err
	}
	for _, k := range out.Keys {
		if k.Kid == out.Current {
			return k.PEM, nil
		}
	}
	return "", fmt.Errorf("/v1/keys/%s: current key %q not listed", which, out.Current)
}

// StartEdge enrolls a new edge node for tenant (first start) and runs it.
// A restart of an existing edge keeps its state directory.
func (s *Stack) StartEdge(ctx context.Context, name, tenant string) (*Edge, error) {
	return s.StartSharedEdge(ctx, name, tenant)
}

// StartSharedEdge enrolls an edge node whose home is tenant and which also
// serves the others (a shared gateway: a join token only a global admin can
// create), and runs it. Each tenant's bundle is chosen by the agent token.
func (s *Stack) StartSharedEdge(ctx context.Context, name, tenant string, others ...string) (*Edge, error) {
	if e, ok := s.Edges[name]; ok {
		return e, s.restartEdge(ctx, e)
	}
	tenants := append([]string{tenant}, others...)
	dir := filepath.Join(s.opts.Dir, "edge-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e := &Edge{Name: name, Tenant: tenant, Tenants: tenants, Dir: dir}

	// Enrollment: a join token from the tenant admin, a node key of our own,
	// proof of possession, and the node credential in return.
	var jt struct {
		Token string `json:"join_token"`
	}
	joinReq := map[string]any{"region": Region, "role": "edge"}
	issuer := s.Role(tenant, "admin")
	if len(others) > 0 {
		joinReq["serves"] = tenants
		issuer = s.Admin
	}
	if err := issuer.JSON(ctx, "POST", "/v1/tenants/"+tenant+"/join-tokens", joinReq, &jt, http.StatusCreated); err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var enr struct {
		NodeID string `json:"node_id"`
		Token  string `json:"token"`
	}
	err = s.Admin.With("").JSON(ctx, "POST", "/v1/nodes/enroll", map[string]any{
		"join_token": jt.Token, "name": name,
		"public_key": base64.StdEncoding.EncodeToString(pub),
		"proof":      base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte("aegis-enroll:"+jt.Token))),
	}, &enr, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	e.NodeID = enr.NodeID
	keyPEM, err := keys.MarshalPrivatePEM(priv)
	if err != nil {
		return nil, err
	}
	bundlePub, err := s.publicKeyPEM(ctx, "bundle")
	if err != nil {
		return nil, err
	}
	statePub, err := s.publicKeyPEM(ctx, "state")
	if err != nil {
		return nil, err
	}
	jwks, err := s.jwksOf(ctx, tenants)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"node.key": keyPEM, "node.token": []byte(enr.Token),
		"bundle.pub": []byte(bundlePub), "state.pub": []byte(statePub), "jwks.json": jwks,
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			return nil, err
		}
	}
	if e.Addr, err = harness.FreePort(); err != nil {
		return nil, err
	}
	if e.AdminAddr, err = harness.FreePort(); err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"listen":    e.Addr,
		"admin":     e.AdminAddr,
		"node":      map[string]any{"id": e.NodeID, "region": Region, "signing_key": filepath.Join(dir, "node.key")},
		"trust":     map[string]any{"bundle_key": filepath.Join(dir, "bundle.pub"), "state_key": filepath.Join(dir, "state.pub")},
		"jwks":      filepath.Join(dir, "jwks.json"),
		"state_dir": filepath.Join(dir, "state"),
		"upstream":  s.Upstream,
		"control_plane": map[string]any{
			"url": "https://" + s.CPAddr, "token_file": filepath.Join(dir, "node.token"),
			"tenants": tenants, "poll_interval": "1s", "timeout": "3s",
		},
		"filter": map[string]any{
			"wasm": s.Bin.Filter, "cache_dir": filepath.Join(s.opts.Dir, "wasm-cache"),
			"audit_flush": "100ms", "state_refresh": "1s",
		},
		"audit":     map[string]any{"sync": "always"},
		"log_level": "info",
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ") // JSON is YAML
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o600); err != nil {
		return nil, err
	}
	e.args = []string{"edge", "--config", cfgPath}
	// The edge trusts the control plane's CA through the system pool.
	e.env = []string{"SSL_CERT_FILE=" + filepath.Join(s.opts.Dir, "cp", "ca.pem")}
	s.Edges[name] = e
	return e, s.restartEdge(ctx, e)
}

// jwksOf returns one JWKS holding the agent-token keys of every tenant.
// A tenant's keys are created by their first mint: one for the node's
// region and the default one that signs override tokens. The edge's filter
// refreshes keys from the control plane; the file is what it starts with.
func (s *Stack) jwksOf(ctx context.Context, tenants []string) ([]byte, error) {
	var all struct {
		Keys []json.RawMessage `json:"keys"`
	}
	for _, t := range tenants {
		if _, err := s.AgentToken(ctx, t, "bootstrap-probe"); err != nil {
			return nil, err
		}
		if err := s.Role(t, "admin").JSON(ctx, "POST", "/v1/tokens/agent", map[string]any{
			"tenant": t, "agent": "bootstrap-probe", "ttl_seconds": 60,
		}, nil, http.StatusCreated, http.StatusOK); err != nil {
			return nil, err
		}
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := s.Admin.JSON(ctx, "GET", "/v1/tenants/"+t+"/jwks", nil, &set); err != nil {
			return nil, err
		}
		all.Keys = append(all.Keys, set.Keys...)
	}
	return json.Marshal(all)
}

// RestartEdge stops the edge gracefully and starts it again with the same
// state directory and configuration.
func (s *Stack) RestartEdge(ctx context.Context, e *Edge) error {
	if e.Proc != nil {
		if err := e.Proc.Stop(20 * time.Second); err != nil {
			return err
		}
	}
	return s.restartEdge(ctx, e)
}

// TrustBundleKey replaces the bundle public key the edge trusts (an
// operator deploying a rotated key); it takes effect at the next restart.
func (s *Stack) TrustBundleKey(ctx context.Context, e *Edge) error {
	pem, err := s.publicKeyPEM(ctx, "bundle")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.Dir, "bundle.pub"), []byte(pem), 0o600)
}

func (s *Stack) restartEdge(ctx context.Context, e *Edge) error {
	p, err := harness.Start(ctx, "edge-"+e.Name, filepath.Join(s.opts.Dir, "logs"), s.Bin.Aegis, e.args, e.env)
	if err != nil {
		return err
	}
	e.Proc = p
	if err := p.WaitHTTP(ctx, "http://"+e.AdminAddr+"/readyz", 120*time.Second); err != nil {
		return err
	}
	// Ready means at least one tenant's bundle is in the filter; a shared
	// gateway is up when every tenant it serves has one.
	for _, t := range e.Tenants {
		if err := s.WaitMetric(ctx, e, fmt.Sprintf("aegis_edge_bundle_revision{tenant=%q}", t), 60*time.Second, func(v float64) bool { return v > 0 }); err != nil {
			return err
		}
	}
	return p.WaitHTTP(ctx, "http://"+e.AdminAddr+"/readyz", 60*time.Second)
}

// Close stops everything the stack started.
func (s *Stack) Close() {
	for _, e := range s.Edges {
		if e.Proc != nil {
			_ = e.Proc.Stop(10 * time.Second)
		}
	}
	_ = s.StopControlPlane()
	for _, srv := range s.toolSrv {
		_ = srv.Close()
	}
}

// CAFile is the control plane's CA certificate (PEM).
func (s *Stack) CAFile() string { return filepath.Join(s.opts.Dir, "cp", "ca.pem") }
