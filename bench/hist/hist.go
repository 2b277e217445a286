// Package hist is a log-linear latency histogram in the style of
// HdrHistogram: values below 256 are counted exactly, and above that every
// power of two is split into 128 equal buckets, so any recorded value is
// known to within 1/128 (0.8%) of itself. Recording is one array increment,
// so it can sit inside a timed loop without disturbing what it measures.
package hist

import (
	"fmt"
	"math"
	"math/bits"
)

const (
	subBits  = 7
	subCount = 1 << subBits // buckets per power of two
	// Values up to 2^63-1 fit: the top block is the one holding bit 62.
	bucketCount = (64 - subBits) * subCount
)

// Histogram counts non-negative int64 values (nanoseconds, in this
// harness). The zero value is not usable; call New.
//
// # Notes
//
// A Histogram is not safe for concurrent use; give each goroutine its own
// and Merge them afterwards.
type Histogram struct {
	counts   []uint64
	total    uint64
	min, max int64
	sum      float64
}

// New returns an empty histogram.
func New() *Histogram {
	return &Histogram{counts: make([]uint64, bucketCount), min: math.MaxInt64}
}

// index maps v to its bucket.
func index(v int64) int {
	u := uint64(v)
	if u < subCount {
		return int(u)
	}
	k := bits.Len64(u) - 1 // position of the top bit, >= subBits
	shift := k - subBits
	return (shift+1)*subCount + int(u>>shift) - subCount
}

// bounds returns the smallest value of bucket i and the bucket's width.
func bounds(i int) (lo, width int64) {
	block, sub := i/subCount, i%subCount
	if block == 0 {
		return int64(sub), 1
	}
	return int64(subCount+sub) << (block - 1), int64(1) << (block - 1)
}

// Record counts one value. Negative values are counted as 0: a clock that
// ran backwards is still a sample, and dropping it would hide that.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[index(v)]++
	h.total++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() int64 { return int64(h.total) }

// Min is the smallest recorded value, exactly (0 when empty).
func (h *Histogram) Min() int64 {
	if h.total == 0 {
		return 0
	}
	return h.min
}

// Max is the largest recorded value, exactly (0 when empty).
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact arithmetic mean (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Quantile returns the value at quantile q in [0, 1] by the nearest-rank
// definition (the smallest value v such that at least q of the samples are
// <= v), as the midpoint of v's bucket clamped to the exact min and max.
// An empty histogram returns 0; q outside [0, 1] is clamped.
func (h *Histogram) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	if !(q > 0) { // also catches NaN
		return h.Min()
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			lo, w := bounds(i)
			v := lo + (w-1)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// CountAbove is the number of recorded values in buckets wholly above v
// (values within v's own bucket are not counted, so the answer is exact
// to the histogram's precision and never overstates).
func (h *Histogram) CountAbove(v int64) int64 {
	if v < 0 {
		return int64(h.total)
	}
	var n uint64
	for i := index(v) + 1; i < len(h.counts); i++ {
		n += h.counts[i]
	}
	return int64(n)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	if o.total > 0 {
		h.min = min(h.min, o.min)
		h.max = max(h.max, o.max)
	}
}

// Point is one point of a percentile curve.
type Point struct {
	Quantile float64 // in [0, 1)
	Value    int64
}

// Curve returns the values at a fixed ladder of quantiles from 0 to
// 1 - 1/n (n the sample count, so the curve ends at a quantile the data can
// support), spaced evenly on the log(1/(1-q)) scale a percentile plot uses.
func (h *Histogram) Curve(pointsPerDecade int) []Point {
	if h.total == 0 || pointsPerDecade <= 0 {
		return nil
	}
	maxDecades := math.Log10(float64(h.total))
	var out []Point
	for i := 0; ; i++ {
		d := float64(i) / float64(pointsPerDecade)
		if d > maxDecades {
			break
		}
		q := 1 - math.Pow(10, -d)
		out = append(out, Point{Quantile: q, Value: h.Quantile(q)})
	}
	return out
}

// String summarises the histogram for debugging.
func (h *Histogram) String() string {
	return fmt.Sprintf("n=%d min=%d p50=%d p99=%d max=%d", h.total, h.Min(), h.Quantile(0.5), h.Quantile(0.99), h.max)
}
