package plugin

import (
	"runtime"
	"runtime/debug"
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
// watched from the host: cycles so far, heap in use, the longest
// stop-the-world pause seen, and the bytes allocated so far, whose rate per
// request is what drives the collector. They come from ReadMemStats, not
// runtime/metrics: reading metrics links the runtime's whole metric table
// and its aggregation (22 kB of the module, issue 3), and ReadMemStats'
// stop-the-world is only this goroutine in a one-thread guest (23-52 µs
// under wazero against 8-18 µs for metrics.Read, once per audit flush).
type runtimeGauges struct {
	cycles, heapBytes, maxPauseMicros, allocBytes proxywasm.MetricGauge

	seen     uint32 // collections whose pause has been looked at
	maxPause uint64 // ns
}

func defineRuntimeGauges() runtimeGauges {
	return runtimeGauges{
		cycles:         proxywasm.DefineGaugeMetric("aegis.runtime.gc_cycles"),
		heapBytes:      proxywasm.DefineGaugeMetric("aegis.runtime.heap_live_bytes"),
		maxPauseMicros: proxywasm.DefineGaugeMetric("aegis.runtime.gc_pause_max_us"),
		allocBytes:     proxywasm.DefineGaugeMetric("aegis.runtime.heap_alloc_bytes"),
	}
}

func (g *runtimeGauges) update() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	g.maxPause = max(g.maxPause, maxNewPause(&ms, g.seen))
	g.seen = ms.NumGC
	set := func(m proxywasm.MetricGauge, v int64) { m.Add(v - m.Value()) }
	set(g.cycles, int64(ms.NumGC))
	set(g.heapBytes, int64(ms.HeapAlloc))
	set(g.allocBytes, int64(ms.TotalAlloc))
	set(g.maxPauseMicros, int64(g.maxPause/1e3))
}

// maxNewPause is the longest pause among the collections after the first
// seen ones. PauseNs keeps the last 256 only: more collections than that
// between two flushes (one per second by default) would mean a collection
// every 4 ms, and the 256 kept are a fair sample of them.
func maxNewPause(ms *runtime.MemStats, seen uint32) uint64 {
	n := min(ms.NumGC-seen, uint32(len(ms.PauseNs))) // modular: survives a wrap
	var longest uint64
	for i := range n {
		// The most recent is at (NumGC+255)%256.
		longest = max(longest, ms.PauseNs[(ms.NumGC-1-i)%uint32(len(ms.PauseNs))])
	}
	return longest
}
