package wasmhost_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/edge/wasmhost"
	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/testfilter"
)

// exchange is one request and the upstream's answer to it.
type exchange struct {
	method      string
	path        string
	headers     [][2]string
	body        []string // chunks; nil: no body
	respHeaders [][2]string
	respBody    []string
}

// outcome is what can be observed of an exchange from outside the filter.
type outcome struct {
	local       bool // the filter answered
	status      int  // the client's status
	clientHdr   http.Header
	clientBody  string
	upstream    bool // the request reached the upstream
	upstreamHdr http.Header
	upBody      string
}

// runtime runs the conformance filter: natively under the SDK's emulator,
// or as wasm under this host. Tests are written once against it.
type runtime interface {
	do(t *testing.T, ex exchange) outcome
	// tick delivers n ticks and returns once they ran.
	tick(t *testing.T, n int)
	counter(t *testing.T, name string) uint64
	gauge(t *testing.T, name string) int64
	histogramSum(t *testing.T, name string) uint64
	shared(t *testing.T, key string) string
	// waitLog returns once level has logged line (the host delivers some
	// callbacks asynchronously).
	waitLog(t *testing.T, level, line string)
	logs(level string) []string
}

// backend answers the filter's http_call in both runtimes.
func backend(method, path, body string, hdr http.Header) (int, string) {
	return http.StatusOK, "pong " + method + " " + path + " " + body + " " + hdr.Get("X-From")
}

func canonical(kvs [][2]string) http.Header {
	h := http.Header{}
	for _, kv := range kvs {
		if strings.HasPrefix(kv[0], ":") {
			continue
		}
		h.Add(kv[0], kv[1])
	}
	return h
}

// --- the SDK emulator ---

type emulator struct {
	host     proxytest.HostEmulator
	answered map[uint32]bool
}

func newEmulator(t *testing.T, area string) runtime {
	t.Helper()
	opt := proxytest.NewEmulatorOption().WithVMContext(testfilter.NewVMContext()).WithPluginConfiguration([]byte(area))
	host, reset := proxytest.NewHostEmulator(opt)
	t.Cleanup(reset)
	if !host.StartVM() {
		t.Fatal("StartVM failed")
	}
	if host.StartPlugin() != types.OnPluginStartStatusOK {
		t.Fatalf("StartPlugin failed: %q", host.GetCriticalLogs())
	}
	return &emulator{host: host, answered: map[uint32]bool{}}
}

func (e *emulator) answerCallouts(id uint32) {
	for _, c := range e.host.GetCalloutAttributesFromContext(id) {
		if e.answered[c.CalloutID] {
			continue
		}
		e.answered[c.CalloutID] = true
		var method, path string
		for _, kv := range c.Headers {
			switch kv[0] {
			case ":method":
				method = kv[1]
			case ":path":
				path = kv[1]
			}
		}
		status, body := backend(method, path, string(c.Body), canonical(c.Headers))
		e.host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", strconv.Itoa(status)}}, nil, []byte(body))
	}
}

func (e *emulator) do(t *testing.T, ex exchange) outcome {
	h := e.host
	id := h.InitializeHttpContext()
	defer h.CompleteHttpContext(id)
	method := ex.method
	if method == "" {
		method = "GET"
	}
	hs := [][2]string{{":authority", "conformance.internal"}, {":path", ex.path}, {":method", method}, {":scheme", "http"}}
	hs = append(hs, ex.headers...)
	if ex.body != nil {
		hs = append(hs, [2]string{"content-length", strconv.Itoa(len(strings.Join(ex.body, "")))})
	}
	var out outcome
	local := func() bool {
		if l := h.GetSentLocalResponse(id); l != nil {
			out.local, out.status, out.clientBody, out.clientHdr = true, int(l.StatusCode), string(l.Data), canonical(l.Headers)
			return true
		}
		return false
	}
	h.CallOnRequestHeaders(id, hs, ex.body == nil)
	e.answerCallouts(id)
	if local() {
		return out
	}
	for i, c := range ex.body {
		h.CallOnRequestBody(id, []byte(c), i == len(ex.body)-1)
		e.answerCallouts(id)
		if local() {
			return out
		}
	}
	// The stream's action after the last callback (or after a callout
	// resumed it) decides whether the request goes upstream.
	if h.GetCurrentHttpStreamAction(id) != types.ActionContinue {
		return out // never released upstream
	}
	out.upstream = true
	out.upstreamHdr = canonical(h.GetCurrentRequestHeaders(id))
	out.upBody = string(h.GetCurrentRequestBody(id))
	rh := append([][2]string{{":status", "200"}}, ex.respHeaders...)
	h.CallOnResponseHeaders(id, rh, ex.respBody == nil)
	for i, c := range ex.respBody {
		h.CallOnResponseBody(id, []byte(c), i == len(ex.respBody)-1)
	}
	if local() {
		return out
	}
	resp := h.GetCurrentResponseHeaders(id)
	out.status = 200
	for _, kv := range resp {
		if kv[0] == ":status" {
			out.status, _ = strconv.Atoi(kv[1])
		}
	}
	out.clientHdr = canonical(resp)
	out.clientBody = string(h.GetCurrentResponseBody(id))
	return out
}

func (e *emulator) tick(_ *testing.T, n int) {
	for range n {
		e.host.Tick()
	}
}

func (e *emulator) counter(t *testing.T, name string) uint64 {
	v, err := e.host.GetCounterMetric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *emulator) gauge(t *testing.T, name string) int64 {
	v, err := e.host.GetGaugeMetric(name)
	if err != nil {
		t.Fatal(err)
	}
	return int64(v)
}

// histogramSum: the emulator keeps the last recorded value only; tests
// record one sample.
func (e *emulator) histogramSum(t *testing.T, name string) uint64 {
	v, err := e.host.GetHistogramMetric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *emulator) shared(t *testing.T, key string) string {
	// The emulator has no shared-data reader; the filter reports the
	// value it wrote in x-count, which tests check instead.
	t.Helper()
	return ""
}

func (e *emulator) logs(level string) []string {
	switch level {
	case "trace":
		return e.host.GetTraceLogs()
	case "debug":
		return e.host.GetDebugLogs()
	case "info":
		return e.host.GetInfoLogs()
	case "warn":
		return e.host.GetWarnLogs()
	case "error":
		return e.host.GetErrorLogs()
	}
	return e.host.GetCriticalLogs()
}

func (e *emulator) waitLog(t *testing.T, level, line string) {
	t.Helper()
	if !slices.Contains(e.logs(level), line) {
		t.Fatalf("no %s log %q in %q", level, line, e.logs(level))
	}
}

// --- this host ---

type hostRuntime struct {
	pool    *wasmhost.Pool
	front   *httptest.Server
	mu      sync.Mutex
	cur     exchange
	seen    *http.Request
	seenB   string
	reached bool
	logMu   sync.Mutex
	logged  map[string][]string
	logCh   chan struct{}
	tickers *fakeTickers
}

var levelNames = []string{"trace", "debug", "info", "warn", "error", "critical"}

// fakeTickers hands out tick channels that tests step by hand. A send on
// an unbuffered channel returns once the tick goroutine took it, so after
// n+1 sends the first n ticks have run.
type fakeTickers struct {
	mu sync.Mutex
	ch []chan time.Time
}

func (f *fakeTickers) new(time.Duration) (<-chan time.Time, func()) {
	c := make(chan time.Time)
	f.mu.Lock()
	f.ch = append(f.ch, c)
	f.mu.Unlock()
	return c, func() {}
}

func (f *fakeTickers) all() []chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ch)
}

func newHost(t *testing.T, wasm []byte, cfg wasmhost.PoolConfig) (*wasmhost.Module, *hostRuntime) {
	t.Helper()
	mod := compiled(t, wasm)
	return mod, newHostOn(t, mod, cfg)
}

func newHostOn(t *testing.T, mod *wasmhost.Module, cfg wasmhost.PoolConfig) *hostRuntime {
	t.Helper()
	ctx := context.Background()
	h := &hostRuntime{logged: map[string][]string{}, logCh: make(chan struct{}, 1), tickers: &fakeTickers{}}
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		status, body := backend(r.Method, r.URL.Path, string(b), r.Header)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(back.Close)
	u, _ := url.Parse(back.URL)
	if cfg.Clusters == nil {
		cfg.Clusters = map[string]http.RoundTripper{"backend": wasmhost.ClusterURL(u, nil)}
	}
	if cfg.Size == 0 {
		cfg.Size = 1
	}
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.OnLog = func(level uint32, msg string) {
		h.logMu.Lock()
		h.logged[levelNames[level]] = append(h.logged[levelNames[level]], msg)
		h.logMu.Unlock()
		select {
		case h.logCh <- struct{}{}:
		default:
		}
	}
	if cfg.NewTicker == nil {
		cfg.NewTicker = h.tickers.new
	}
	pool, err := wasmhost.NewPool(ctx, mod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.pool = pool
	t.Cleanup(func() { pool.Close(ctx) })
	h.front = httptest.NewServer(pool.Handler(http.HandlerFunc(h.upstream)))
	t.Cleanup(h.front.Close)
	return h
}

// modules caches compiled modules for the whole test binary: pools share
// a Module, and compiling costs seconds.
var modules struct {
	sync.Mutex
	m map[*byte]*wasmhost.Module
}

func compiled(t *testing.T, wasm []byte) *wasmhost.Module {
	t.Helper()
	modules.Lock()
	defer modules.Unlock()
	if m := modules.m[&wasm[0]]; m != nil {
		return m
	}
	m, err := wasmhost.Compile(context.Background(), wasm, wasmhost.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if modules.m == nil {
		modules.m = map[*byte]*wasmhost.Module{}
	}
	modules.m[&wasm[0]] = m
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (h *hostRuntime) upstream(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.reached, h.seen, h.seenB = true, r, string(b)
	ex := h.cur
	h.mu.Unlock()
	for _, kv := range ex.respHeaders {
		w.Header().Add(kv[0], kv[1])
	}
	w.WriteHeader(http.StatusOK)
	for _, c := range ex.respBody {
		io.WriteString(w, c)
		w.(http.Flusher).Flush()
	}
}

func (h *hostRuntime) do(t *testing.T, ex exchange) outcome {
	t.Helper()
	h.mu.Lock()
	h.cur, h.reached, h.seen, h.seenB = ex, false, nil, ""
	h.mu.Unlock()
	method := ex.method
	if method == "" {
		method = "GET"
	}
	var body io.Reader
	if ex.body != nil {
		body = strings.NewReader(strings.Join(ex.body, ""))
	}
	req, err := http.NewRequest(method, h.front.URL+ex.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "conformance.internal"
	for _, kv := range ex.headers {
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := h.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := outcome{status: resp.StatusCode, clientHdr: resp.Header, clientBody: string(rb), upstream: h.reached}
	out.local = !h.reached
	if h.reached {
		out.upstreamHdr = h.seen.Header
		out.upBody = h.seenB
	}
	return out
}

func (h *hostRuntime) tick(t *testing.T, n int) {
	t.Helper()
	chans := h.tickers.all()
	if len(chans) == 0 {
		t.Fatal("the filter set no tick period")
	}
	for _, c := range chans {
		for range n + 1 {
			select {
			case c <- time.Now():
			case <-time.After(10 * time.Second):
				t.Fatal("tick not taken")
			}
		}
	}
}

func (h *hostRuntime) counter(t *testing.T, name string) uint64 {
	v, ok := h.pool.Metrics().Counters[name]
	if !ok {
		t.Fatalf("no counter %s", name)
	}
	return v
}

func (h *hostRuntime) gauge(t *testing.T, name string) int64 {
	v, ok := h.pool.Metrics().Gauges[name]
	if !ok {
		t.Fatalf("no gauge %s", name)
	}
	return v
}

func (h *hostRuntime) histogramSum(t *testing.T, name string) uint64 {
	v, ok := h.pool.Metrics().Histograms[name]
	if !ok {
		t.Fatalf("no histogram %s", name)
	}
	return v.Sum
}

func (h *hostRuntime) shared(_ *testing.T, key string) string {
	v, _, _ := h.pool.SharedData(key)
	return string(v)
}

func (h *hostRuntime) logs(level string) []string {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	return slices.Clone(h.logged[level])
}

func (h *hostRuntime) waitLog(t *testing.T, level, line string) {
	t.Helper()
	guard := time.After(10 * time.Second)
	for !slices.Contains(h.logs(level), line) {
		select {
		case <-h.logCh:
		case <-guard:
			t.Fatalf("no %s log %q in %q", level, line, h.logs(level))
		}
	}
}

// --- the cases, run on both ---

func TestConformance(t *testing.T) {
	cases := []struct {
		area string
		run  func(t *testing.T, r runtime)
	}{
		{"headers", func(t *testing.T, r runtime) {
			out := r.do(t, exchange{path: "/h?q=1", headers: [][2]string{{"x-replace", "old"}, {"x-remove", "gone"}, {"X-Mixed-Case", "v"}},
				respHeaders: [][2]string{{"x-upstream-secret", "s"}, {"x-kept", "k"}}})
			if !out.upstream || out.local {
				t.Fatalf("not forwarded: %+v", out)
			}
			want := map[string]string{"X-Added": "1", "X-Replace": "new", "X-Remove": "", "X-Absent-Status": "not_found", "X-Mixed-Seen": "v"}
			for k, v := range want {
				if got := out.upstreamHdr.Get(k); got != v {
					t.Errorf("upstream %s = %q, want %q", k, got, v)
				}
			}
			if got := out.clientHdr.Get("X-Resp"); got != "yes 200" {
				t.Errorf("client x-resp = %q", got)
			}
			if out.clientHdr.Get("X-Upstream-Secret") != "" || out.clientHdr.Get("X-Kept") != "k" {
				t.Errorf("client headers %v", out.clientHdr)
			}
			r.waitLog(t, "info", "path /h?q=1, end true")
			if n, _ := strconv.Atoi(out.upstreamHdr.Get("X-Header-Count")); n < 7 {
				t.Errorf("filter saw %d headers", n)
			}
		}},
		{"body", func(t *testing.T, r runtime) {
			out := r.do(t, exchange{method: "POST", path: "/b", body: []string{"hello ", "world"},
				respHeaders: [][2]string{{"content-length", "8"}}, respBody: []string{"resp", "onse"}})
			if !out.upstream || out.upBody != "HELLO WORLD" || out.upstreamHdr.Get("X-Body-Size") != "11" {
				t.Fatalf("upstream body %q, headers %v", out.upBody, out.upstreamHdr)
			}
			if out.clientBody != "response [filtered]" || out.status != 200 {
				t.Fatalf("client %d %q", out.status, out.clientBody)
			}
			if errs := r.logs("error"); len(errs) > 0 {
				t.Errorf("errors: %q", errs)
			}
		}},
		{"local_reply", func(t *testing.T, r runtime) {
			out := r.do(t, exchange{path: "/l", headers: [][2]string{{"x-deny", "policy"}}})
			if !out.local || out.upstream || out.status != 403 || out.clientBody != `{"error":"denied","why":"policy"}` ||
				out.clientHdr.Get("Content-Type") != "application/json" || out.clientHdr.Get("X-Why") != "policy" {
				t.Fatalf("outcome %+v", out)
			}
			if out := r.do(t, exchange{path: "/l"}); !out.upstream || out.status != 200 {
				t.Fatalf("plain request: %+v", out)
			}
		}},
		{"shared_data", func(t *testing.T, r runtime) {
			for i := 1; i <= 3; i++ {
				out := r.do(t, exchange{path: "/s"})
				if got := out.upstreamHdr.Get("X-Count"); got != strconv.Itoa(i) {
					t.Fatalf("request %d: x-count %q", i, got)
				}
			}
			if v := r.shared(t, testfilter.CounterKey); v != "" && v != "3" {
				t.Fatalf("shared counter %q", v)
			}
		}},
		{"queue", func(t *testing.T, r runtime) {
			for _, p := range []string{"/q1", "/q2"} {
				if out := r.do(t, exchange{path: p}); !out.upstream {
					t.Fatalf("not forwarded: %+v", out)
				}
				r.waitLog(t, "info", "dequeued "+p)
			}
			if errs := r.logs("error"); len(errs) > 0 {
				t.Errorf("errors: %q", errs)
			}
		}},
		{"http_call", func(t *testing.T, r runtime) {
			out := r.do(t, exchange{path: "/c"})
			if !out.upstream || out.upstreamHdr.Get("X-Callout") != "200 pong POST /callout ping filter" {
				t.Fatalf("outcome %+v", out)
			}
		}},
		{"tick", func(t *testing.T, r runtime) {
			r.tick(t, 3)
			got := r.counter(t, "conformance.ticks")
			// The host's tick helper sends one more tick to know the others
			// ran; both runtimes must have run at least the three asked for
			// and logged each.
			if got < 3 {
				t.Fatalf("ticks = %d", got)
			}
			r.waitLog(t, "info", "tick 3")
		}},
		{"metrics", func(t *testing.T, r runtime) {
			out := r.do(t, exchange{path: "/m"})
			if out.upstreamHdr.Get("X-Counter") != "2" {
				t.Fatalf("x-counter %q", out.upstreamHdr.Get("X-Counter"))
			}
			if c := r.counter(t, "conformance.counter"); c != 2 {
				t.Errorf("counter %d", c)
			}
			if g := r.gauge(t, "conformance.gauge"); g != 3 {
				t.Errorf("gauge %d", g)
			}
			if h := r.histogramSum(t, "conformance.histogram"); h != 42 {
				t.Errorf("histogram %d", h)
			}
		}},
		{"properties", func(t *testing.T, r runtime) {
			out := r.do(t, exchange{path: "/p"})
			if out.upstreamHdr.Get("X-Prop") != "set-in-request" || out.upstreamHdr.Get("X-Prop-Missing") != "not_found" {
				t.Fatalf("headers %v", out.upstreamHdr)
			}
			r.waitLog(t, "info", "stream done")
		}},
		{"logging", func(t *testing.T, r runtime) {
			r.do(t, exchange{path: "/log"})
			for _, l := range levelNames {
				want := l + " line"
				if !slices.Contains(r.logs(l), want) {
					t.Errorf("%s logs %q, want %q", l, r.logs(l), want)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.area+"/emulator", func(t *testing.T) { tc.run(t, newEmulator(t, tc.area)) })
		t.Run(tc.area+"/host", func(t *testing.T) {
			_, h := newHost(t, conformanceWasm, wasmhost.PoolConfig{PluginConfig: []byte(tc.area)})
			tc.run(t, h)
		})
	}
}

// quietLogger sends host logs at warn and above to the test log.
func quietLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
