// Package filterbench measures the built filter module (.wasm) under the
// edge's proxy-wasm host (edge/wasmhost), one request at a time, by the
// path the request takes through it: allowed, allowed with a redacted
// body, denied. Each request goes from the host's first filter callback to
// the response, through an in-process upstream handler; no network. Every
// response is checked (status, whether the upstream saw it, the
// redaction), so a latency is never reported for a wrong answer.
package filterbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aegis-mesh/aegis/bench/hist"
	"github.com/aegis-mesh/aegis/bench/machine"
	"github.com/aegis-mesh/aegis/bench/measure"
	"github.com/aegis-mesh/aegis/bench/report"
	"github.com/aegis-mesh/aegis/edge/wasmhost"
)

// Config is one filter benchmark.
type Config struct {
	Plan measure.Plan
	// WasmName labels the module in the report (its path).
	WasmName string
	// Size is the generated policy set measured by path (agents = tools).
	Size int
	// Scaling lists more sizes to measure p99 on, with Plan.Lighter().
	Scaling []int
	// Progress, if set, gets one line per step.
	Progress io.Writer
}

func (c Config) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "bench filter: "+format+"\n", args...)
	}
}

// Validate checks the counts.
func (c Config) Validate() error {
	var errs []error
	if err := c.Plan.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Size < 1 {
		errs = append(errs, fmt.Errorf("policy size %d: need at least 1", c.Size))
	}
	for _, n := range c.Scaling {
		if n < 1 {
			errs = append(errs, fmt.Errorf("scaling size %d: need at least 1", n))
		}
	}
	return errors.Join(errs...)
}

// Result is the report plus merged histograms for plots.
type Result struct {
	Report *report.Report
	Curves map[string]*hist.Histogram
}

// upstream is the tool behind the filter: it counts requests and keeps the
// last body so that redactions can be checked.
type upstream struct {
	mu   sync.Mutex
	hits atomic.Int64
	last []byte
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.last = b
	u.mu.Unlock()
	u.hits.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

func (u *upstream) lastBody() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// recorder is a minimal ResponseWriter reused across requests.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.h }
func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
func (w *recorder) reset() {
	clear(w.h)
	w.status = 0
	w.body.Reset()
}

// bench is one pool serving one fixture.
type bench struct {
	fx   *Fixture
	pool *wasmhost.Pool
	h    http.Handler
	up   *upstream
	rec  *recorder
	reqs map[string]*http.Request
}

func newBench(ctx context.Context, mod *wasmhost.Module, fx *Fixture, sink http.RoundTripper) (*bench, error) {
	pool, err := wasmhost.NewPool(ctx, mod, fx.PoolConfig(sink, 1))
	if err != nil {
		return nil, fmt.Errorf("starting the filter on a policy set of %d: %w", fx.Size, err)
	}
	b := &bench{fx: fx, pool: pool, up: &upstream{}, rec: &recorder{h: http.Header{}}, reqs: map[string]*http.Request{}}
	b.h = pool.Handler(b.up)
	for _, p := range Paths {
		req, err := fx.Request(ctx, "http://"+"edge", p)
		if err != nil {
			_ = pool.Close(ctx)
			return nil, err
		}
		b.reqs[p.Name] = req
	}
	return b, nil
}

// do sends one request on path p and checks the answer.
func (b *bench) do(p Path) error {
	tmpl := b.reqs[p.Name]
	req := tmpl.Clone(tmpl.Context())
	req.Body = io.NopCloser(bytes.NewReader(p.Body))
	req.ContentLength = int64(len(p.Body))
	b.rec.reset()
	before := b.up.hits.Load()
	b.h.ServeHTTP(b.rec, req)
	reached := b.up.hits.Load() > before
	if b.rec.status != p.Status || reached != p.Reached {
		return fmt.Errorf("%s: status %d (want %d), reached upstream %v (want %v): %.200s", p.Name, b.rec.status, p.Status,
			reached, p.Reached, b.rec.body.String())
	}
	if p.Forwarded != "" && !bytes.Contains(b.up.lastBody(), []byte(p.Forwarded)) {
		return fmt.Errorf("%s: forwarded body %.200q lacks %q", p.Name, b.up.lastBody(), p.Forwarded)
	}
	return nil
}

func (b *bench) measure(ctx context.Context, plan measure.Plan, cfg Config) ([]measure.Series, error) {
	series := make([]measure.Series, len(Paths))
	for i, p := range Paths {
		series[i].Name = p.Name
	}
	for run := range plan.Runs {
		for i, p := range Paths {
			cfg.progress("size %d: run %d/%d, %s, %d requests", b.fx.Size, run+1, plan.Runs, p.Name, plan.Requests)
			h, err := measure.Time(ctx, plan.Warmup, plan.Requests, func(context.Context, int) error { return b.do(p) })
			if err != nil {
				return nil, err
			}
			series[i].Runs = append(series[i].Runs, h)
		}
	}
	return series, nil
}

// Run measures the module (wasm bytes) on a generated policy set of
// cfg.Size, then the scaling sizes.
func Run(ctx context.Context, wasm []byte, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &report.Report{Scenario: "filter", Machine: machine.Current(), Plan: cfg.Plan, Started: now(),
		Params: map[string]any{"wasm": cfg.WasmName, "policy": fmt.Sprintf("generated, %d agents × %d tools", cfg.Size, cfg.Size),
			"pool_size": 1}}
	mod, err := compileModule(ctx, wasm)
	if err != nil {
		return nil, err
	}
	defer mod.Close(ctx)
	sink := &AuditSink{}
	cfg.progress("size %d: compiling and signing", cfg.Size)
	fx, err := NewFixture(ctx, cfg.Size)
	if err != nil {
		return nil, err
	}
	b, err := newBench(ctx, mod, fx, sink)
	if err != nil {
		return nil, err
	}
	defer b.pool.Close(ctx)
	memBefore := guestMemory(b.pool)
	guestBefore := guestGC(ctx, b.pool)
	var msBefore, msAfter runtime.MemStats
	runtime.ReadMemStats(&msBefore)
	series, err := b.measure(ctx, cfg.Plan, cfg)
	if err != nil {
		return nil, err
	}
	runtime.ReadMemStats(&msAfter)
	res := &Result{Report: r, Curves: map[string]*hist.Histogram{}}
	slow := map[string]int64{}
	for _, s := range series {
		sum := measure.Summarize(s)
		r.Series = append(r.Series, sum)
		m := s.Merged()
		res.Curves[s.Name] = m
		slow[s.Name] = m.CountAbove(10 * m.Quantile(0.5))
	}
	m := b.pool.Metrics()
	if m.Pool.Traps != 0 || m.Pool.Timeouts != 0 {
		return nil, fmt.Errorf("the filter trapped %d times and timed out %d times", m.Pool.Traps, m.Pool.Timeouts)
	}
	guestAfter := guestGC(ctx, b.pool)
	requests := int64(cfg.Plan.Runs * len(Paths) * (cfg.Plan.Warmup + cfg.Plan.Requests))
	r.Set("gc_pauses", map[string]any{
		"guest_exposed":                 true,
		"guest_gc_cycles":               guestAfter.cycles - guestBefore.cycles,
		"guest_gc_pause_max_us":         guestAfter.pauseMaxUS,
		"guest_heap_live_bytes":         guestAfter.liveBytes,
		"guest_alloc_bytes_per_request": (guestAfter.allocBytes - guestBefore.allocBytes) / max(requests, 1),
		"requests_over_10x_p50":         slow,
		"host_gc_cycles":                msAfter.NumGC - msBefore.NumGC,
		"host_gc_pause_total_us":        measure.US(int64(msAfter.PauseTotalNs - msBefore.PauseTotalNs)),
		"guest_memory_bytes":            map[string]uint64{"before": memBefore, "after": guestMemory(b.pool)},
	})
	r.Set("audit_batches_shipped", sink.Batches.Load())
	r.Set("guest_decide_us", sink.DecideQuantiles())
	r.Set("bundle_bytes", fx.BundleBytes)
	r.Notes = append(r.Notes,
		"per request: wasmhost Pool.Handler.ServeHTTP with an in-process upstream (no sockets), one VM instance; every answer checked",
		"gc_pauses: the guest's own gauges (aegis.runtime.*, read after a flush tick): collections during the runs, "+
			"the longest stop-the-world pause, heap in use (live and unswept), bytes allocated per request (warm-up included); a wasip1 guest marks "+
			"on its one thread, so mark work also shows as tail latency (requests slower than 10x p50). Also: the host's GC "+
			"cycles and pause total during the runs, guest linear memory before and after",
		"guest_decide_us: per action, the decision_ns of the shipped audit events (warm-up included): the guest's time in "+
			"decide (input document, policy, DLP); the rest of a request's latency is host calls, the audit event and the reply")
	if len(cfg.Scaling) > 0 {
		r.Set("scaling", runScaling(ctx, mod, sink, cfg))
	}
	return res, nil
}

// guestStats are the filter's runtime gauges (see filter/internal/plugin).
type guestStats struct {
	cycles, pauseMaxUS, liveBytes, allocBytes int64
}

// guestGC reads the guest's runtime gauges. The filter refreshes them on
// its flush tick (every 100 ms in the fixture), so wait for one first.
func guestGC(ctx context.Context, p *wasmhost.Pool) guestStats {
	select {
	case <-ctx.Done():
	case <-time.After(250 * time.Millisecond):
	}
	g := p.Metrics().Gauges
	return guestStats{cycles: g["aegis.runtime.gc_cycles"], pauseMaxUS: g["aegis.runtime.gc_pause_max_us"],
		liveBytes: g["aegis.runtime.heap_live_bytes"], allocBytes: g["aegis.runtime.heap_alloc_bytes"]}
}

func guestMemory(p *wasmhost.Pool) uint64 {
	var total uint64
	for _, m := range p.Metrics().Pool.Memory {
		total += m
	}
	return total
}

// runScaling measures p99 by path per size. A size the filter cannot load
// (its bundle over the filter's limits, say) is reported with the reason
// instead of stopping the benchmark.
func runScaling(ctx context.Context, mod *wasmhost.Module, sink http.RoundTripper, cfg Config) map[string]any {
	out := map[string]any{}
	for _, n := range cfg.Scaling {
		key := strconv.Itoa(n)
		cfg.progress("scaling %d: compiling and signing", n)
		fx, err := NewFixture(ctx, n)
		if err != nil {
			out[key] = map[string]any{"error": err.Error()}
			continue
		}
		b, err := newBench(ctx, mod, fx, sink)
		if err != nil {
			out[key] = map[string]any{"error": firstLine(err.Error()), "bundle_bytes": fx.BundleBytes}
			continue
		}
		series, err := b.measure(ctx, cfg.Plan.Lighter(), cfg)
		_ = b.pool.Close(ctx)
		if err != nil {
			out[key] = map[string]any{"error": firstLine(err.Error()), "bundle_bytes": fx.BundleBytes}
			continue
		}
		p := map[string]any{"agents": n, "tools": n, "bundle_bytes": fx.BundleBytes}
		for _, s := range series {
			sum := measure.Summarize(s)
			p[s.Name+"_p50_us"] = sum.P50US
			p[s.Name+"_p99_us"] = sum.P99US
		}
		out[key] = p
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func compileModule(ctx context.Context, wasm []byte) (*wasmhost.Module, error) {
	mod, err := wasmhost.Compile(ctx, wasm, wasmhost.CompileOptions{})
	if err != nil {
		return nil, fmt.Errorf("compiling the filter module: %w", err)
	}
	return mod, nil
}
