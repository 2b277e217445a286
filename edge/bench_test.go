package edge

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/edge/internal/testbundle"
)

// BenchmarkEdge compares, in one run and against one upstream: the edge
// with the Aegis filter (allow path of the bench policy: token check,
// body parse, policy, audit event), the same edge without the filter, and
// a plain httputil.ReverseProxy. Each reports throughput (ns/op over
// parallel clients) and per-request latency percentiles.
//
//	go test ./edge -run '^$' -bench Edge -benchtime 3000x
func BenchmarkEdge(b *testing.B) { benchEdge(b, 2) }

// BenchmarkEdgeSerial is one client at a time: the latency each setup
// adds when nothing queues.
func BenchmarkEdgeSerial(b *testing.B) { benchEdge(b, 0) }

// benchEdge runs the three setups with parallelism × GOMAXPROCS clients,
// or one client when parallelism is 0.
func benchEdge(b *testing.B, parallelism int) {
	_, file, _, _ := runtime.Caller(0)
	policy := filepath.Join(filepath.Dir(file), "..", "filter", "testdata", "bench.yaml")
	f := newFixture(b, "payments.yaml")
	bb, err := testbundle.Build(policy, 1, f.bundleKey, 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, f.bundlePath, bb)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"n1"}`)
	}))
	defer up.Close()
	auth := "Bearer " + f.mint(b, "bench-agent", "bench", time.Hour)
	body := []byte(`{"title":"quarterly numbers","body":"see attached","priority":2}`)

	var filtered *Server
	targets := []struct {
		name  string
		start func(b *testing.B) string
	}{
		{"filter", func(b *testing.B) string {
			cfg := f.config()
			cfg.Upstream = up.URL
			cfg.Filter.PoolSize = runtime.GOMAXPROCS(0)
			cfg.Audit.Sync = "always"
			cfg.Filter.AuditFlush = 200 * time.Millisecond // the default
			if v := os.Getenv("AEGIS_BENCH_WAL_SYNC"); v != "" {
				cfg.Audit.Sync = v
			}
			s, base, _ := start(b, cfg)
			filtered = s
			return base
		}},
		{"nofilter", func(b *testing.B) string {
			cfg := f.config()
			cfg.Upstream = up.URL
			cfg.Filter.Wasm = "none"
			cfg.StateDir = b.TempDir()
			_, base, _ := start(b, cfg)
			return base
		}},
		{"reverseproxy", func(b *testing.B) string {
			u, _ := url.Parse(up.URL)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(u)}
			go srv.Serve(l)
			b.Cleanup(func() { srv.Close() })
			return "http://" + l.Addr().String()
		}},
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			base := tg.start(b)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			send := func() (time.Duration, error) {
				req, _ := http.NewRequestWithContext(context.Background(), "POST", base+"/v1/notes", bytes.NewReader(body))
				req.Host = "notes.bench.internal"
				req.Header.Set("Authorization", auth)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					return 0, err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				return d, nil
			}
			for range 50 { // warm connections and VMs
				if _, err := send(); err != nil {
					b.Fatal(err)
				}
			}
			var mu sync.Mutex
			var lat []time.Duration
			b.ResetTimer()
			if parallelism == 0 {
				lat = make([]time.Duration, 0, b.N)
				for range b.N {
					d, err := send()
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, d)
				}
			} else {
				b.SetParallelism(parallelism)
				b.RunParallel(func(pb *testing.PB) {
					local := make([]time.Duration, 0, 1024)
					for pb.Next() {
						d, err := send()
						if err != nil {
							b.Error(err)
							return
						}
						local = append(local, d)
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				})
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 {
				if len(lat) == 0 {
					return 0
				}
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
			}
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
			b.ReportMetric(float64(time.Second)/(float64(b.Elapsed())/float64(b.N)), "req/s")
			if tg.name == "filter" {
				m := filtered.Pool().Metrics()
				var mem uint64
				for _, v := range m.Pool.Memory {
					mem += v
				}
				if n := len(m.Pool.Memory); n > 0 {
					b.ReportMetric(float64(mem)/float64(n)/(1<<20), "MiB/VM")
				}
			}
		})
	}
}
