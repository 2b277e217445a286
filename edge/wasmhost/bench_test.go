package wasmhost_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/edge/wasmhost"
)

// okTransport is an in-process control plane: every audit batch is
// acknowledged, so a long run never fills the filter's audit queue.
type okTransport struct{}

func (okTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{}`)), Request: r}, nil
}

var okUpstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`)
})

func benchPool(b *testing.B, size int) *wasmhost.Pool {
	b.Helper()
	fixtures(b)
	ctx := context.Background()
	mod, err := wasmhost.Compile(ctx, aegisWasm, wasmhost.CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mod.Close(ctx) })
	pool, err := wasmhost.NewPool(ctx, mod, wasmhost.PoolConfig{
		Size: size,
		PluginConfig: aegisConfig(map[string][]byte{"bench": aegisFx.bench},
			`"control_plane":{"cluster":"cp"},"audit":{"max_queue":8192,"batch_size":4096,"flush_interval_ms":10}`),
		Env:      benchEnv(),
		Clusters: map[string]http.RoundTripper{"cp": okTransport{}},
		Logger:   quietLogger(b),
		LogLevel: 3,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pool.Close(ctx) })
	return pool
}

// benchEnv is the guest environment; AEGIS_BENCH_GOGC and
// AEGIS_BENCH_GOMEMLIMIT, when set, tune the guest's garbage collector
// (the Go runtime in the module reads GOGC and GOMEMLIMIT at start).
func benchEnv() map[string]string {
	env := map[string]string{"AEGIS_BUNDLE_PUBLIC_KEY": aegisFx.pubPEM}
	if v := os.Getenv("AEGIS_BENCH_GOGC"); v != "" {
		env["GOGC"] = v
	}
	if v := os.Getenv("AEGIS_BENCH_GOMEMLIMIT"); v != "" {
		env["GOMEMLIMIT"] = v
	}
	return env
}

// BenchmarkHandler measures one request through Pool.Handler with the
// Aegis filter (no network: the upstream is an in-process handler), per
// path, and the same request straight to the upstream as the baseline.
// Latency quantiles come from timing each request.
//
//	go test -run '^$' -bench Handler -benchmem ./edge/wasmhost
func BenchmarkHandler(b *testing.B) {
	fixtures(b)
	tok := mintToken(b, "bench-agent", "bench")
	paths := []struct {
		name   string
		body   string
		auth   bool
		status int
	}{
		{"allow", `{"title":"weekly","body":"all good","priority":2}`, true, 200},
		{"sanitize", `{"title":"weekly","body":"card 4111 1111 1111 1111","priority":2}`, true, 200},
		{"deny", `{"title":"weekly","body":"x","priority":9,"extra":1}`, true, 403},
		{"unauthorized", `{}`, false, 401},
	}
	pool := benchPool(b, 1)
	filtered := pool.Handler(okUpstream)
	for _, p := range paths {
		for _, variant := range []string{"filter", "baseline"} {
			if variant == "baseline" && p.name != "allow" {
				continue
			}
			b.Run(p.name+"/"+variant, func(b *testing.B) {
				h := filtered
				if variant == "baseline" {
					h = okUpstream
				}
				body := []byte(p.body)
				one := func() int {
					req := httptest.NewRequest("POST", "http://notes.bench.internal/v1/notes", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					if p.auth {
						req.Header.Set("Authorization", "Bearer "+tok)
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					return rec.Code
				}
				for range 50 {
					one()
				}
				lat := make([]time.Duration, 0, b.N)
				wrong := 0
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					t0 := time.Now()
					code := one()
					lat = append(lat, time.Since(t0))
					if variant == "filter" && code != p.status {
						wrong++
					}
				}
				b.StopTimer()
				if wrong > 0 {
					b.Fatalf("%d of %d requests had another status than %d", wrong, b.N, p.status)
				}
				slices.Sort(lat)
				q := func(f float64) float64 {
					return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Nanoseconds()) / 1e3
				}
				b.ReportMetric(q(0.50), "p50-µs")
				b.ReportMetric(q(0.99), "p99-µs")
				b.ReportMetric(q(0.999), "p99.9-µs")
			})
		}
	}
	m := pool.Metrics()
	var mem uint64
	for _, v := range m.Pool.Memory {
		mem = max(mem, v)
	}
	b.Logf("VM linear memory after the runs: %.1f MiB per instance (%d instances), traps %d", float64(mem)/(1<<20), m.Pool.Instances, m.Pool.Traps)
}

// BenchmarkHandlerParallel runs the allow path from GOMAXPROCS goroutines
// on a pool of as many instances: throughput of the host with the filter.
func BenchmarkHandlerParallel(b *testing.B) {
	fixtures(b)
	tok := mintToken(b, "bench-agent", "bench")
	pool := benchPool(b, 0)
	h := pool.Handler(okUpstream)
	body := []byte(`{"title":"weekly","body":"all good","priority":2}`)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "http://notes.bench.internal/v1/notes", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
}

// BenchmarkInstanceStart measures starting one VM of the Aegis filter
// (instantiate, _initialize, VM and plugin start with a bundle): the cost
// of replacing an instance or of a configuration swap per instance.
func BenchmarkInstanceStart(b *testing.B) {
	pool := benchPool(b, 1)
	conf := aegisConfig(map[string][]byte{"bench": aegisFx.bench}, "")
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if err := pool.UpdateConfig(ctx, conf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m := pool.Metrics()
	b.ReportMetric(float64(m.Pool.Memory[0])/(1<<20), "MiB/vm")
}

// BenchmarkHostFloor runs a request through the conformance filter's
// headers area (read the map and one header, add, replace and remove
// headers on the request, add and remove on the response): the host's
// own cost per request with a filter that does almost nothing.
func BenchmarkHostFloor(b *testing.B) {
	ctx := context.Background()
	mod, err := wasmhost.Compile(ctx, conformanceWasm, wasmhost.CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer mod.Close(ctx)
	pool, err := wasmhost.NewPool(ctx, mod, wasmhost.PoolConfig{Size: 1, PluginConfig: []byte("headers"), Logger: quietLogger(b), LogLevel: 3})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close(ctx)
	for _, variant := range []string{"filter", "baseline"} {
		b.Run(variant, func(b *testing.B) {
			h := pool.Handler(okUpstream)
			if variant == "baseline" {
				h = okUpstream
			}
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				req := httptest.NewRequest("GET", "http://tool.internal/v1/x?q=1", nil)
				req.Header.Set("X-Replace", "old")
				req.Header.Set("X-Remove", "gone")
				rec := httptest.NewRecorder()
				t0 := time.Now()
				h.ServeHTTP(rec, req)
				lat = append(lat, time.Since(t0))
				if rec.Code != 200 {
					b.Fatalf("status %d", rec.Code)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}
