package wasmhost_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/edge/wasmhost"
	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/testfilter"
)

// wasmImporting is a minimal module importing one function.
func wasmImporting(module, name string) []byte {
	b := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	b = append(b, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00) // type section: () -> ()
	imp := []byte{0x01, byte(len(module))}
	imp = append(imp, module...)
	imp = append(imp, byte(len(name)))
	imp = append(imp, name...)
	imp = append(imp, 0x00, 0x00) // function of type 0
	b = append(b, 0x02, byte(len(imp)))
	return append(b, imp...)
}

func TestCompileRefusesImportsOutsideEnvoy(t *testing.T) {
	cases := []struct {
		name, module, fn string
	}{
		{"unknown env function", "env", "proxy_get_secret"},
		{"WASI function Envoy 1.33 lacks", "wasi_snapshot_preview1", "fd_filestat_get"},
		{"other module", "wasi_unstable", "fd_write"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wasmhost.Compile(context.Background(), wasmImporting(tc.module, tc.fn), wasmhost.CompileOptions{})
			if !errors.Is(err, wasmhost.ErrImportNotAllowed) || !strings.Contains(err.Error(), tc.module+"."+tc.fn) {
				t.Fatalf("Compile = %v, want ErrImportNotAllowed naming %s.%s", err, tc.module, tc.fn)
			}
		})
	}
	t.Run("not a proxy-wasm module", func(t *testing.T) {
		_, err := wasmhost.Compile(context.Background(), wasmImporting("env", "proxy_log"), wasmhost.CompileOptions{})
		if err == nil || !strings.Contains(err.Error(), "proxy_abi_version") {
			t.Fatalf("Compile = %v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		if _, err := wasmhost.Compile(context.Background(), []byte("not wasm"), wasmhost.CompileOptions{}); err == nil {
			t.Fatal("garbage compiled")
		}
	})
	t.Run("filters in this repository", func(t *testing.T) {
		for name, wasm := range map[string][]byte{"aegis": aegisWasm, "conformance": conformanceWasm} {
			m := compiled(t, wasm)
			if m.ABIVersion() != "0_2_0" && m.ABIVersion() != "0_2_1" {
				t.Errorf("%s: ABI %q", name, m.ABIVersion())
			}
			if len(m.Imports()) == 0 {
				t.Errorf("%s: no imports listed", name)
			}
		}
	})
}

func TestRestrictedCallDuringInitialize(t *testing.T) {
	mod := compiled(t, initcallWasm)
	_, err := wasmhost.NewPool(context.Background(), mod, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("headers"), Logger: quietLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "restricted_callback") || !strings.Contains(err.Error(), "env.proxy_set_shared_data") {
		t.Fatalf("NewPool = %v, want a restricted_callback trap naming env.proxy_set_shared_data", err)
	}
}

func TestPluginStartRejected(t *testing.T) {
	mod := compiled(t, conformanceWasm)
	_, err := wasmhost.NewPool(context.Background(), mod, wasmhost.PoolConfig{Size: 2, PluginConfig: []byte("reject"), Logger: quietLogger(t)})
	if !errors.Is(err, wasmhost.ErrConfigRejected) {
		t.Fatalf("NewPool = %v, want ErrConfigRejected", err)
	}
}

func get(t *testing.T, url string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func failureJSON(t *testing.T, body string) string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal([]byte(body), &m); err != nil || m["error"] != "filter_failure" {
		t.Fatalf("reply %q is not a filter_failure", body)
	}
	return m["message"]
}

func TestTrapFailsClosedAndReplacesInstance(t *testing.T) {
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("trap")})
	resp, body := get(t, h.front.URL+"/x", "X-Trap", "now")
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %q", resp.StatusCode, body)
	}
	if msg := failureJSON(t, body); msg != wasmhost.FailureTrap {
		t.Errorf("message %q", msg)
	}
	if h.reached {
		t.Error("a request the filter trapped on reached the upstream")
	}
	// The next request runs on a fresh instance.
	if resp, body := get(t, h.front.URL+"/y"); resp.StatusCode != 200 {
		t.Fatalf("after the trap: %d %s", resp.StatusCode, body)
	}
	m := h.pool.Metrics()
	if m.Pool.Traps != 1 || m.Pool.Replaced != 1 || m.Pool.Instances != 1 || m.Pool.Created != 2 {
		t.Errorf("pool stats %+v", m.Pool)
	}
}

func TestTimeoutFailsClosed(t *testing.T) {
	t.Run("guest running", func(t *testing.T) {
		mod, err := wasmhost.Compile(context.Background(), conformanceWasm, wasmhost.CompileOptions{InterruptOnTimeout: true})
		if err != nil {
			t.Fatal(err)
		}
		// Registered first, so it runs after the pool's cleanup.
		t.Cleanup(func() { mod.Close(context.Background()) })
		h := newHostOn(t, mod, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("hang"), RequestTimeout: 300 * time.Millisecond})
		resp, body := get(t, h.front.URL+"/x", "X-Hang", "1")
		if resp.StatusCode != http.StatusServiceUnavailable || failureJSON(t, body) != wasmhost.FailureTimeout {
			t.Fatalf("status %d %q", resp.StatusCode, body)
		}
		// The replacement starts in the background; under -race that can
		// take longer than this pool's short request timeout.
		for guard := time.After(60 * time.Second); h.pool.Metrics().Pool.Busy != 0; {
			select {
			case <-guard:
				t.Fatal("the instance was never replaced")
			case <-time.After(10 * time.Millisecond):
			}
		}
		if resp, body := get(t, h.front.URL+"/y"); resp.StatusCode != 200 {
			t.Fatalf("after the timeout: %d %s", resp.StatusCode, body)
		}
		m := h.pool.Metrics()
		if m.Pool.Timeouts != 1 || m.Pool.Replaced != 1 {
			t.Errorf("pool stats %+v", m.Pool)
		}
	})
	t.Run("stream paused on a callout", func(t *testing.T) {
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer slow.Close()
		defer close(release)
		u, _ := url.Parse(slow.URL)
		_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("http_call"), RequestTimeout: 300 * time.Millisecond,
			Clusters: map[string]http.RoundTripper{"backend": wasmhost.ClusterURL(u, nil)}})
		resp, body := get(t, h.front.URL+"/x")
		if resp.StatusCode != http.StatusServiceUnavailable || failureJSON(t, body) != wasmhost.FailureTimeout || h.reached {
			t.Fatalf("status %d %q (reached %v)", resp.StatusCode, body, h.reached)
		}
		// No guest code was running: the instance is kept.
		if m := h.pool.Metrics(); m.Pool.Timeouts != 1 || m.Pool.Replaced != 0 {
			t.Errorf("pool stats %+v", m.Pool)
		}
	})
}

// TestSharedDataCASUnderLoad: several VMs increment one counter with CAS
// retries from many concurrent requests; no update may be lost.
func TestSharedDataCASUnderLoad(t *testing.T) {
	const vms, workers, perWorker = 4, 8, 25
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: vms, PluginConfig: []byte("shared_data")})
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				resp, err := h.front.Client().Get(h.front.URL + "/count")
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := h.shared(t, testfilter.CounterKey); got != strconv.Itoa(workers*perWorker) {
		t.Fatalf("counter = %s, want %d", got, workers*perWorker)
	}
	if m := h.pool.Metrics(); m.Pool.Instances != vms || m.Pool.Traps != 0 {
		t.Errorf("pool stats %+v", m.Pool)
	}
}

func TestTicksReachEveryInstance(t *testing.T) {
	const vms = 3
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: vms, PluginConfig: []byte("tick")})
	if n := len(h.tickers.all()); n != vms {
		t.Fatalf("%d tick sources for %d instances", n, vms)
	}
	h.tick(t, 2)
	// Each instance ran at least its first two ticks (see tick).
	if got := h.counter(t, "conformance.ticks"); got < 2*vms {
		t.Fatalf("ticks = %d, want at least %d", got, 2*vms)
	}
}

func TestUpdateConfig(t *testing.T) {
	release := make(chan struct{})
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "late")
	}))
	defer gate.Close()
	u, _ := url.Parse(gate.URL)
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: 2, PluginConfig: []byte("http_call"),
		Clusters: map[string]http.RoundTripper{"backend": wasmhost.ClusterURL(u, nil)}})

	// One request in flight on the old configuration, paused on its callout.
	type result struct {
		status int
		hdr    string
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(h.front.URL + "/inflight")
		if err != nil {
			done <- result{}
			return
		}
		resp.Body.Close()
		h.mu.Lock()
		var hdr string
		if h.seen != nil {
			hdr = h.seen.Header.Get("X-Callout")
		}
		h.mu.Unlock()
		done <- result{resp.StatusCode, hdr}
	}()
	// Wait until it holds an instance.
	for guard := time.After(10 * time.Second); h.pool.Metrics().Pool.Busy == 0; {
		select {
		case <-guard:
			t.Fatal("request never started")
		case <-time.After(5 * time.Millisecond):
		}
	}

	ctx := context.Background()
	if err := h.pool.UpdateConfig(ctx, []byte("reject")); !errors.Is(err, wasmhost.ErrConfigRejected) {
		t.Fatalf("UpdateConfig(reject) = %v", err)
	}
	if err := h.pool.UpdateConfig(ctx, []byte("metrics")); err != nil {
		t.Fatal(err)
	}
	// New requests see the new configuration on the idle instance.
	resp, _ := get(t, h.front.URL+"/new")
	h.mu.Lock()
	counter := h.seen.Header.Get("X-Counter")
	h.mu.Unlock()
	if resp.StatusCode != 200 || counter != "2" {
		t.Fatalf("after the update: %d, x-counter %q", resp.StatusCode, counter)
	}
	close(release)
	r := <-done
	if r.status != 200 || r.hdr != "200 late" {
		t.Fatalf("in-flight request: %+v", r)
	}
	m := h.pool.Metrics()
	if m.Pool.Generation != 2 {
		t.Errorf("generation %d", m.Pool.Generation)
	}
}

func TestRequestProperties(t *testing.T) {
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("properties")})
	ctx, info := wasmhost.WithStreamInfo(context.Background())
	req := httptest.NewRequest("GET", "/p?x=1", nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	h.pool.Handler(http.HandlerFunc(h.upstream)).ServeHTTP(rec, req)
	if rec.Code != 200 || h.seen.Header.Get("X-Request-Path") != "/p?x=1" {
		t.Fatalf("status %d, headers %v", rec.Code, h.seen.Header)
	}
	if string(info.FilterState["conformance.state"]) != "set-in-request" {
		t.Errorf("filter state %q", info.FilterState)
	}
}

func TestQueueResolve(t *testing.T) {
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: 2, PluginConfig: []byte("queue")})
	out := h.do(t, exchange{path: "/q"})
	if out.upstreamHdr.Get("X-Resolved") != "same" || out.upstreamHdr.Get("X-Missing-Queue") != "not_found" {
		t.Fatalf("headers %v", out.upstreamHdr)
	}
	h.waitLog(t, "info", "dequeued /q")
}

// TestCompilationCacheOnDisk: a module compiled into a cache directory
// compiles again from it (a restart) and serves requests.
func TestCompilationCacheOnDisk(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := range 2 {
		mod, err := wasmhost.Compile(ctx, conformanceWasm, wasmhost.CompileOptions{CacheDir: dir})
		if err != nil {
			t.Fatalf("compile %d: %v", i, err)
		}
		h := newHostOn(t, mod, wasmhost.PoolConfig{PluginConfig: []byte("local_reply")})
		if out := h.do(t, exchange{path: "/x", headers: [][2]string{{"x-deny", "cached"}}}); out.status != 403 {
			t.Fatalf("compile %d: %+v", i, out)
		}
		h.pool.Close(ctx)
		mod.Close(ctx)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("cache directory empty (%v)", err)
	}
}

// TestDrainOnReplace: an instance replaced by a new configuration gets
// proxy_on_done; a filter that answers false keeps ticking until it calls
// proxy_done, and only then is deleted.
func TestDrainOnReplace(t *testing.T) {
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("drain")})
	old := h.tickers.all()
	if len(old) != 1 {
		t.Fatalf("%d tick sources", len(old))
	}
	if err := h.pool.UpdateConfig(context.Background(), []byte("headers")); err != nil {
		t.Fatal(err)
	}
	h.waitLog(t, "info", "done requested")
	select {
	case old[0] <- time.Now():
	case <-time.After(10 * time.Second):
		t.Fatal("the draining instance stopped ticking")
	}
	h.waitLog(t, "info", "finished")
	if errs := h.logs("error"); len(errs) > 0 {
		t.Errorf("errors: %q", errs)
	}
	// Close waits for the drain to end; the old instance is gone then.
	if err := h.pool.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := h.pool.Metrics(); m.Pool.Instances != 0 {
		t.Errorf("instances after close: %d", m.Pool.Instances)
	}
}

// TestTrailers: request trailers reach the filter (proxy_on_request_trailers)
// and the upstream; response trailers reach the client.
func TestTrailers(t *testing.T) {
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("headers")})
	var gotTrailer, gotBody string
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody, gotTrailer = string(b), r.Trailer.Get("X-Checksum")
		w.Header().Set("Trailer", "X-Result")
		io.WriteString(w, "ok")
		w.Header().Set("X-Result", "done")
	})
	front := httptest.NewServer(h.pool.Handler(up))
	defer front.Close()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", front.URL+"/t", pr)
	req.Trailer = http.Header{"X-Checksum": nil}
	go func() {
		io.WriteString(pw, "part one, ")
		io.WriteString(pw, "part two")
		req.Trailer.Set("X-Checksum", "abc")
		pw.Close()
	}()
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" || resp.Trailer.Get("X-Result") != "done" {
		t.Fatalf("response %d %q, trailers %v", resp.StatusCode, b, resp.Trailer)
	}
	if gotBody != "part one, part two" || gotTrailer != "abc" {
		t.Fatalf("upstream got body %q, trailer %q", gotBody, gotTrailer)
	}
}

// TestHeadKeepsContentLength: a body-less response keeps the upstream's
// Content-Length (a HEAD answer describes the GET body).
func TestHeadKeepsContentLength(t *testing.T) {
	_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("headers")})
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		w.WriteHeader(http.StatusOK)
	})
	front := httptest.NewServer(h.pool.Handler(up))
	defer front.Close()
	req, _ := http.NewRequest("HEAD", front.URL+"/h", nil)
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "1234" || resp.Header.Get("X-Resp") != "yes 200" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
}
