package hist

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// exactQuantile is the nearest-rank quantile of sorted samples: the
// reference the histogram's answers are checked against.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	// Each bucket's lower bound maps back to the bucket, the value just
	// below it to the previous one, and widths stay within 1/128 of the
	// value: that is the precision promise.
	for i := 1; i < bucketCount; i++ {
		lo, w := bounds(i)
		if got := index(lo); got != i {
			t.Fatalf("index(lo of %d = %d) = %d", i, lo, got)
		}
		if got := index(lo - 1); got != i-1 {
			t.Fatalf("index(%d) = %d, want %d", lo-1, got, i-1)
		}
		if lo >= 256 && float64(w)/float64(lo) > 1.0/128 {
			t.Fatalf("bucket %d: width %d at %d is coarser than 1/128", i, w, lo)
		}
	}
	if got := index(math.MaxInt64); got != bucketCount-1 {
		t.Fatalf("index(MaxInt64) = %d, want the last bucket %d", got, bucketCount-1)
	}
}

func TestKnownDistributions(t *testing.T) {
	uniform := func(n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(i + 1)
		}
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	exponential := make([]int64, 200_000)
	for i := range exponential {
		exponential[i] = int64(rng.ExpFloat64() * 50_000) // mean 50 µs in ns
	}
	// A bimodal mix like a fast path with a slow tail: 99% near 3 µs, 1% near 2 ms.
	bimodal := make([]int64, 100_000)
	for i := range bimodal {
		if i%100 == 0 {
			bimodal[i] = 2_000_000 + rng.Int64N(100_000)
		} else {
			bimodal[i] = 3_000 + rng.Int64N(200)
		}
	}
	cases := []struct {
		name    string
		samples []int64
		want    map[float64]int64 // closed-form answers, where they exist
	}{
		{"uniform 1..100000", uniform(100_000), map[float64]int64{0.5: 50_000, 0.99: 99_000, 0.999: 99_900}},
		{"small exact values", []int64{5, 1, 3, 2, 4}, map[float64]int64{0.2: 1, 0.4: 2, 0.5: 3, 0.6: 3, 1: 5}},
		{"constant", []int64{777_777, 777_777, 777_777}, map[float64]int64{0: 777_777, 0.5: 777_777, 0.999: 777_777}},
		{"exponential", exponential, map[float64]int64{0.5: 34_657, 0.99: 230_259}},
		{"bimodal", bimodal, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := New()
			for _, v := range c.samples {
				h.Record(v)
			}
			sorted := slices.Clone(c.samples)
			slices.Sort(sorted)
			if h.Count() != int64(len(sorted)) || h.Min() != sorted[0] || h.Max() != sorted[len(sorted)-1] {
				t.Fatalf("count/min/max = %d/%d/%d, want %d/%d/%d", h.Count(), h.Min(), h.Max(), len(sorted), sorted[0], sorted[len(sorted)-1])
			}
			for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
				exact := exactQuantile(sorted, q)
				if q == 0 {
					exact = sorted[0]
				}
				got := h.Quantile(q)
				if !within(got, exact, 0.01) {
					t.Errorf("q%.3f = %d, exact %d: off by more than 1%%", q, got, exact)
				}
			}
			for q, want := range c.want {
				// Closed forms hold for the population; samples add a little
				// noise on top of the bucket error.
				if got := h.Quantile(q); !within(got, want, 0.02) {
					t.Errorf("q%.3f = %d, want about %d", q, got, want)
				}
			}
		})
	}
}

func TestBimodalTailIsVisible(t *testing.T) {
	// The reason for a histogram over a mean: 1% of slow calls must move
	// p99.9 but not p50.
	h := New()
	for i := range 10_000 {
		v := int64(3_000)
		if i%100 == 0 {
			v = 2_000_000
		}
		h.Record(v)
	}
	if got := h.Quantile(0.5); !within(got, 3_000, 0.01) {
		t.Errorf("p50 = %d, want about 3000", got)
	}
	if got := h.Quantile(0.995); !within(got, 2_000_000, 0.01) {
		t.Errorf("p99.5 = %d, want about 2000000", got)
	}
	if got := h.Quantile(0.99); !within(got, 3_000, 0.01) {
		t.Errorf("p99 = %d, want about 3000 (exactly 1%% are slow, so the 99th percentile is still fast)", got)
	}
}

func TestMergeEqualsRecordingTogether(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b, all := New(), New(), New()
	for i := range 50_000 {
		v := rng.Int64N(10_000_000)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
		all.Record(v)
	}
	a.Merge(b)
	for _, q := range []float64{0, 0.5, 0.99, 0.999, 1} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%v: merged %d, together %d", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() != all.Count() || a.Min() != all.Min() || a.Max() != all.Max() || a.Mean() != all.Mean() {
		t.Errorf("merged %v, together %v", a, all)
	}
	empty := New()
	a.Merge(empty)
	if a.Min() != all.Min() {
		t.Errorf("merging an empty histogram changed min to %d", a.Min())
	}
}

func TestEdgeValues(t *testing.T) {
	h := New()
	if h.Quantile(0.5) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 || h.Curve(10) != nil {
		t.Fatal("empty histogram must report zeros and no curve")
	}
	h.Record(-5) // a clock step backwards is a zero-length sample
	h.Record(math.MaxInt64)
	if h.Min() != 0 || h.Max() != math.MaxInt64 {
		t.Fatalf("min/max = %d/%d", h.Min(), h.Max())
	}
	if got := h.Quantile(math.NaN()); got != 0 {
		t.Errorf("NaN quantile = %d, want min", got)
	}
	if got := h.Quantile(2); got != math.MaxInt64 {
		t.Errorf("quantile above 1 = %d, want max", got)
	}
}

func TestCurve(t *testing.T) {
	h := New()
	for i := 1; i <= 1000; i++ {
		h.Record(int64(i))
	}
	c := h.Curve(4)
	// 1000 samples support three decades (q up to 0.999), 4 points each, plus q=0.
	if len(c) != 13 {
		t.Fatalf("curve has %d points, want 13", len(c))
	}
	if c[0].Quantile != 0 || c[0].Value != 1 {
		t.Errorf("first point %+v, want q=0 at the minimum", c[0])
	}
	last := c[len(c)-1]
	if !within(int64(last.Quantile*1e6), 999_000, 0.0001) || !within(last.Value, 999, 0.01) {
		t.Errorf("last point %+v, want q=0.999 at 999", last)
	}
	for i := 1; i < len(c); i++ {
		if c[i].Quantile <= c[i-1].Quantile || c[i].Value < c[i-1].Value {
			t.Fatalf("curve not monotonic at %d: %+v then %+v", i, c[i-1], c[i])
		}
	}
}

func within(got, want int64, rel float64) bool {
	if want == 0 {
		return got == 0
	}
	return math.Abs(float64(got-want))/float64(want) <= rel
}

func TestCountAbove(t *testing.T) {
	h := New()
	for v := int64(1); v <= 1000; v++ {
		h.Record(v)
	}
	cases := []struct {
		v    int64
		want int64
	}{{-1, 1000}, {0, 1000}, {100, 900}, {999, 1}, {1000, 0}, {5000, 0}}
	for _, c := range cases {
		got := h.CountAbove(c.v)
		// Above 256 a bucket holds several values; the ones sharing v's
		// bucket are not counted, so allow that many fewer.
		lo, w := bounds(index(c.v))
		slack := lo + w - 1 - c.v
		if c.v < 0 {
			slack = 0
		}
		if got > c.want || got < c.want-slack {
			t.Errorf("CountAbove(%d) = %d, want %d (slack %d)", c.v, got, c.want, slack)
		}
	}
}
