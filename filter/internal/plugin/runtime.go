package plugin

import (
	"math"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"syscall"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// Garbage collection in the guest: a wasip1 Go program has one thread, so
// every collection stops request processing for the whole mark phase, whose
// cost grows with the live heap (the loaded plans and data), not with the
// garbage. Collecting less often, with a ceiling on memory, cuts the number
// of such pauses. GOGC and GOMEMLIMIT in the VM's environment override
// these defaults as usual.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 256 << 20
)

func tuneGC() {
	if _, set := syscall.Getenv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	if _, set := syscall.Getenv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// runtimeGauges report the guest's collector so that its pauses can be
// watched from the host: cycles so far, live heap, the longest
// stop-the-world pause seen (upper bound of its histogram bucket), and the
// bytes allocated so far, whose rate per request is what drives the
// collector.
type runtimeGauges struct {
	cycles, heapBytes, maxPauseMicros, allocBytes proxywasm.MetricGauge
	samples                                       []rtmetrics.Sample
}

func defineRuntimeGauges() runtimeGauges {
	return runtimeGauges{
		cycles:         proxywasm.DefineGaugeMetric("aegis.runtime.gc_cycles"),
		heapBytes:      proxywasm.DefineGaugeMetric("aegis.runtime.heap_live_bytes"),
		maxPauseMicros: proxywasm.DefineGaugeMetric("aegis.runtime.gc_pause_max_us"),
		allocBytes:     proxywasm.DefineGaugeMetric("aegis.runtime.heap_alloc_bytes"),
		samples: []rtmetrics.Sample{
			{Name: "/gc/cycles/total:gc-cycles"},
			{Name: "/gc/heap/live:bytes"},
			{Name: "/sched/pauses/total/gc:seconds"},
			{Name: "/gc/heap/allocs:bytes"},
		},
	}
}

func (g *runtimeGauges) update() {
	rtmetrics.Read(g.samples)
	set := func(m proxywasm.MetricGauge, v int64) { m.Add(v - m.Value()) }
	if s := g.samples[0]; s.Value.Kind() == rtmetrics.KindUint64 {
		set(g.cycles, int64(s.Value.Uint64()))
	}
	if s := g.samples[1]; s.Value.Kind() == rtmetrics.KindUint64 {
		set(g.heapBytes, int64(s.Value.Uint64()))
	}
	if s := g.samples[3]; s.Value.Kind() == rtmetrics.KindUint64 {
		set(g.allocBytes, int64(s.Value.Uint64()))
	}
	if s := g.samples[2]; s.Value.Kind() == rtmetrics.KindFloat64Histogram {
		h := s.Value.Float64Histogram()
		for i := len(h.Counts) - 1; i >= 0; i-- {
			if h.Counts[i] > 0 {
				upper := h.Buckets[i+1]
				if math.IsInf(upper, 1) {
					upper = h.Buckets[i]
				}
				set(g.maxPauseMicros, int64(upper*1e6))
				break
			}
		}
	}
}
