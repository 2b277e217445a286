package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/token"
)

func TestEdgeUsage(t *testing.T) {
	if code, out, _ := runCLI(t, "edge", "--help"); code != exitOK || !strings.Contains(out, "--trust-key") {
		t.Fatalf("--help: exit %d\n%s", code, out)
	}
	code, _, errOut := runCLI(t, "edge")
	if code != exitUsage {
		t.Fatalf("no flags: exit %d", code)
	}
	for _, want := range []string{"listen", "trust.bundle_key", "jwks"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("no flags: stderr does not name %s:\n%s", want, errOut)
		}
	}
	cfg := filepath.Join(t.TempDir(), "edge.yaml")
	os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nlisten_port: 1\n"), 0o600)
	if code, _, errOut := runCLI(t, "edge", "--config", cfg); code != exitUsage || !strings.Contains(errOut, "line 2: field listen_port not found") {
		t.Fatalf("bad config: exit %d: %s", code, errOut)
	}
}

// TestEdgeRunsWithoutFilter starts the command in-process (no filter, so
// no module is needed here; the filter path is tested in package edge),
// proxies one request and stops on cancel with exit 0.
func TestEdgeRunsWithoutFilter(t *testing.T) {
	dir := t.TempDir()
	k, _ := keys.Generate(rand.Reader)
	pubPEM, _ := keys.MarshalPublicPEM(k.Public().(ed25519.PublicKey))
	os.WriteFile(filepath.Join(dir, "bundle.pub"), pubPEM, 0o600)
	jwks, _ := token.MarshalJWKS(k.Public().(ed25519.PublicKey))
	os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o600)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream") }))
	defer up.Close()
	// An OTLP/HTTP collector: spans arrive as protobuf on /v1/traces.
	traces := make(chan []byte, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			traces <- b
		}
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)

	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		var errb strings.Builder
		done <- run(ctx, []string{"edge", "--listen", "127.0.0.1:0", "--upstream", up.URL, "--trust-key", filepath.Join(dir, "bundle.pub"),
			"--jwks", filepath.Join(dir, "jwks.json"), "--filter", "none", "--state-dir", filepath.Join(dir, "state"),
			"--node-id", "cli-test", "--log-level", "error"}, stdio{in: strings.NewReader(""), out: pw, err: &errb})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	addr := strings.TrimSpace(strings.TrimPrefix(line, "aegis edge: listening on "))
	resp, err := http.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "upstream" {
		t.Fatalf("proxied body %q", b)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("edge did not stop")
	}
	select {
	case b := <-traces:
		if !strings.Contains(string(b), "aegis-edge") || !strings.Contains(string(b), "aegis.action") {
			t.Errorf("exported spans lack the service name or decision attributes")
		}
	default:
		t.Error("no spans exported at shutdown")
	}
}
