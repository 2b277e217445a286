package wasmhost

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// HistogramBuckets are the upper bounds of the histogram buckets kept for
// proxy_record_metric on a histogram, in the unit the filter records
// (Envoy's default bucket bounds).
var HistogramBuckets = []uint64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// metricRegistry holds the metrics every instance of a pool defines: the
// same name and kind is the same metric in every VM, as Envoy's stats are.
// Ids carry the kind in their low two bits, as in Envoy.
type metricRegistry struct {
	mu     sync.Mutex
	byName map[metricKey]uint32
	byID   map[uint32]*metric
	next   uint32
}

type metricKey struct {
	kind abi.MetricType
	name string
}

type metric struct {
	name  string
	kind  abi.MetricType
	value atomic.Int64 // counter (as uint64) or gauge
	hmu   sync.Mutex
	hist  Histogram
}

func newMetricRegistry() *metricRegistry {
	return &metricRegistry{byName: map[metricKey]uint32{}, byID: map[uint32]*metric{}, next: 1}
}

func (r *metricRegistry) define(kind abi.MetricType, name string) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := metricKey{kind, name}
	if id, ok := r.byName[k]; ok {
		return id
	}
	id := r.next<<2 | uint32(kind)
	r.next++
	r.byName[k] = id
	m := &metric{name: name, kind: kind}
	if kind == abi.MetricHistogram {
		m.hist.Buckets = make([]uint64, len(HistogramBuckets)+1)
	}
	r.byID[id] = m
	return id
}

func (r *metricRegistry) get(id uint32) *metric {
	r.mu.Lock()
	m := r.byID[id]
	r.mu.Unlock()
	return m
}

// proxy_define_metric(type, name_ptr, name_size, id_ptr): defining a name
// again returns the same id.
func hostDefineMetric(_ context.Context, in *instance, s []uint64) abi.Status {
	kind := abi.MetricType(uint32(s[0]))
	if kind > abi.MetricHistogram {
		return abi.StatusBadArgument
	}
	name, ok := in.str(uint32(s[1]), uint32(s[2]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	if !in.mem.WriteUint32Le(uint32(s[3]), in.pool.metrics.define(kind, name)) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// proxy_increment_metric(id, offset i64): counters only grow (a
// non-positive offset is BadArgument, as in Envoy); gauges move either
// way; histograms cannot be incremented.
func hostIncrementMetric(_ context.Context, in *instance, s []uint64) abi.Status {
	m := in.pool.metrics.get(uint32(s[0]))
	if m == nil {
		return abi.StatusNotFound
	}
	off := int64(s[1])
	switch m.kind {
	case abi.MetricCounter:
		if off <= 0 {
			return abi.StatusBadArgument
		}
		m.value.Add(off)
	case abi.MetricGauge:
		m.value.Add(off)
	default:
		return abi.StatusBadArgument
	}
	return abi.StatusOK
}

// proxy_record_metric(id, value u64): adds to a counter, sets a gauge,
// records a histogram sample.
func hostRecordMetric(_ context.Context, in *instance, s []uint64) abi.Status {
	m := in.pool.metrics.get(uint32(s[0]))
	if m == nil {
		return abi.StatusNotFound
	}
	v := s[1]
	switch m.kind {
	case abi.MetricCounter:
		m.value.Add(int64(v))
	case abi.MetricGauge:
		m.value.Store(int64(v))
	case abi.MetricHistogram:
		m.hmu.Lock()
		m.hist.Count++
		m.hist.Sum += v
		i := 0
		for i < len(HistogramBuckets) && v > HistogramBuckets[i] {
			i++
		}
		m.hist.Buckets[i]++
		m.hmu.Unlock()
	}
	return abi.StatusOK
}

// proxy_get_metric(id, value_ptr): counters and gauges; a histogram has no
// single value (BadArgument, as in Envoy).
func hostGetMetric(_ context.Context, in *instance, s []uint64) abi.Status {
	m := in.pool.metrics.get(uint32(s[0]))
	if m == nil {
		return abi.StatusNotFound
	}
	if m.kind == abi.MetricHistogram {
		return abi.StatusBadArgument
	}
	if !in.mem.WriteUint64Le(uint32(s[1]), uint64(m.value.Load())) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// Histogram is a snapshot of a histogram metric. Buckets[i] counts samples
// at most HistogramBuckets[i]; the last bucket counts the rest.
type Histogram struct {
	Count, Sum uint64
	Buckets    []uint64
}

// Metrics is a snapshot of the filter's metrics and of the pool.
type Metrics struct {
	Counters   map[string]uint64
	Gauges     map[string]int64
	Histograms map[string]Histogram
	Pool       PoolStats
}

// PoolStats describes the VM pool.
type PoolStats struct {
	Size       int      // configured instances
	Instances  int      // live instances (idle and busy)
	Busy       int      // instances serving a request
	Generation uint64   // plugin configuration generation (1 = first)
	Created    uint64   // instances started since NewPool
	Replaced   uint64   // instances retired after a trap or timeout
	Traps      uint64   // guest traps
	Timeouts   uint64   // requests that hit RequestTimeout
	Rejected   uint64   // requests refused because the pool was closed or saturated
	Memory     []uint64 // linear memory bytes per live instance
}

func (r *metricRegistry) snapshot(m *Metrics) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, mt := range r.byID {
		switch mt.kind {
		case abi.MetricCounter:
			m.Counters[mt.name] = uint64(mt.value.Load())
		case abi.MetricGauge:
			m.Gauges[mt.name] = mt.value.Load()
		case abi.MetricHistogram:
			mt.hmu.Lock()
			h := mt.hist
			h.Buckets = append([]uint64(nil), mt.hist.Buckets...)
			mt.hmu.Unlock()
			m.Histograms[mt.name] = h
		}
	}
}
