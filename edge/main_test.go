package edge

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/edge/internal/testbundle"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/token"
)

// filterWasm is the filter module built for this test run; wasmCache
// keeps its compiled code, so that only the first edge compiles it.
var filterWasm, wasmCache string

// childEnv names the config file when the test binary runs as an edge
// process (the crash test kills it with SIGKILL).
const childEnv = "AEGIS_EDGE_TEST_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	dir, err := os.MkdirTemp("", "aegis-edge-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	filterWasm = filepath.Join(dir, "aegis-filter.wasm")
	// Compiled code outlives the run (wazero keys it by module and
	// version): compiling the filter costs seconds on a busy machine.
	wasmCache = filepath.Join(os.TempDir(), "aegis-edge-test-wazero-cache")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-o", filterWasm, "./filter")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the filter: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runChild runs an edge from a YAML config and prints its addresses.
func runChild(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := NewServer(ctx, cfg, Deps{Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go s.ServeAdmin(al)
	fmt.Printf("%s %s\n", l.Addr(), al.Addr())
	if err := s.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fixture holds keys, files and an upstream for one edge.
type fixture struct {
	dir        string
	bundleKey  ed25519.PrivateKey
	tokenKey   ed25519.PrivateKey
	nodeKey    ed25519.PrivateKey
	bundlePath string
	up         *upstream
}

type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	Method, Host, Path string
	Header             http.Header
	Body               string
}

func (u *upstream) seen() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.reqs...)
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, seenRequest{r.Method, r.Host, r.URL.Path, r.Header.Clone(), string(body)})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func genKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newFixture(t testing.TB, policy string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), bundleKey: genKey(t), tokenKey: genKey(t), nodeKey: genKey(t)}
	b, err := testbundle.Build(testbundle.Example(policy), 1, f.bundleKey, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.bundlePath = writeFile(t, filepath.Join(f.dir, "policy.bundle"), b)
	pubPEM, _ := keys.MarshalPublicPEM(f.bundleKey.Public().(ed25519.PublicKey))
	writeFile(t, filepath.Join(f.dir, "bundle.pub"), pubPEM)
	jwks, err := token.MarshalJWKS(f.tokenKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.dir, "jwks.json"), jwks)
	nodePEM, _ := keys.MarshalPrivatePEM(f.nodeKey)
	writeFile(t, filepath.Join(f.dir, "node.key"), nodePEM)
	f.up = newUpstream(t)
	return f
}

// config is the quick-start configuration for the fixture.
func (f *fixture) config() Config {
	var c Config
	c.Listen = "127.0.0.1:0"
	c.Node.ID = "edge-test"
	c.Node.Region = "eu-west-1"
	c.Node.SigningKey = filepath.Join(f.dir, "node.key")
	c.Trust.BundleKey = filepath.Join(f.dir, "bundle.pub")
	c.JWKS = filepath.Join(f.dir, "jwks.json")
	c.Bundles = []string{f.bundlePath}
	c.StateDir = filepath.Join(f.dir, "state")
	c.Upstream = f.up.URL
	c.Filter.Wasm = filterWasm
	c.Filter.CacheDir = wasmCache
	c.Filter.PoolSize = 1
	c.Filter.AuditFlush = 20 * time.Millisecond
	c.LogLevel = "warn"
	return c
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// start builds and serves an edge; it returns the proxy and admin base
// URLs.
func start(t testing.TB, cfg Config) (*Server, string, string) {
	t.Helper()
	return startWith(t, cfg, Deps{})
}

func startWith(t testing.TB, cfg Config, deps Deps) (*Server, string, string) {
	t.Helper()
	ctx := context.Background()
	deps.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := NewServer(ctx, cfg, deps)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	go s.ServeAdmin(al)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, "http://" + l.Addr().String(), "http://" + al.Addr().String()
}

// mint signs a token for agent in tenant with the fixture's token key.
func (f *fixture) mint(t testing.TB, agent, tenant string, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	tok, err := token.Mint(f.tokenKey, token.Claims{Subject: agent, Tenant: tenant, Region: "eu-west-1",
		IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: now.Add(ttl).Unix(), ID: fmt.Sprintf("jti-%d", now.UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// algNone forges an unsigned token with the same claims.
func algNone(t testing.TB, agent, tenant string) string {
	t.Helper()
	now := time.Now().Unix()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	c, _ := json.Marshal(token.Claims{Subject: agent, Tenant: tenant, Region: "eu-west-1", IssuedAt: now, ExpiresAt: now + 300, ID: "x"})
	return h + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// waitFor polls cond; the deadline only guards against a hung test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
