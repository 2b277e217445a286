// Package measure is the method every scenario shares: a warm-up that is
// not recorded, a fixed number of individually timed operations per run,
// several runs, and a summary that gives each percentile as the median
// across runs together with the smallest and largest run, so that one
// noisy run on a shared machine is visible rather than averaged away.
package measure

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/aegis-mesh/aegis/bench/hist"
)

// Plan fixes how much work a measurement does. Counts, not durations, so
// that two runs of a scenario do the same work whatever the machine.
type Plan struct {
	Warmup   int `json:"warmup"`   // untimed operations before each run
	Requests int `json:"requests"` // timed operations per run
	Runs     int `json:"runs"`     // repeated runs
}

// Validate reports every out-of-range count at once.
func (p Plan) Validate() error {
	var errs []error
	if p.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warm-up count %d is negative", p.Warmup))
	}
	if p.Requests < 1 {
		errs = append(errs, fmt.Errorf("request count %d: need at least 1", p.Requests))
	}
	if p.Runs < 1 {
		errs = append(errs, fmt.Errorf("run count %d: need at least 1", p.Runs))
	}
	return errors.Join(errs...)
}

// Lighter is the plan for secondary measurements (scaling sizes): at most
// three runs and a tenth of the requests and warm-up, never below one
// request, so that a sweep over sizes, whose largest policies are the
// slowest to evaluate, costs about as much as the main measurement.
func (p Plan) Lighter() Plan {
	return Plan{Warmup: p.Warmup / 10, Requests: max(p.Requests/10, 1), Runs: max(min(p.Runs, 3), 1)}
}

// Op is one operation; i counts from 0 across warm-up and timed calls, so
// an Op can cycle through a fixed set of inputs.
type Op func(ctx context.Context, i int) error

// checkEvery is how often the loop looks at ctx: often enough to stop
// promptly, rarely enough to stay out of the timings.
const checkEvery = 1024

// Time runs op warmup times without recording, then n times, timing each
// call on its own with the monotonic clock. The first error stops the loop
// and is returned with the call's index. It collects garbage first, so
// that a series does not pay for the garbage the one before it left.
func Time(ctx context.Context, warmup, n int, op Op) (*hist.Histogram, error) {
	h := hist.New()
	runtime.GC()
	for i := 0; i < warmup+n; i++ {
		if i%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("stopped after %d operations: %w", i, err)
			}
		}
		start := time.Now()
		err := op(ctx, i)
		d := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("operation %d: %w", i, err)
		}
		if i >= warmup {
			h.Record(int64(d))
		}
	}
	return h, nil
}

// Series is one measured thing (an evaluator, a request path, a proxy
// chain) with one histogram per run.
type Series struct {
	Name string
	Runs []*hist.Histogram
}

// Merged is every run's samples in one histogram, for plots.
func (s *Series) Merged() *hist.Histogram {
	m := hist.New()
	for _, r := range s.Runs {
		m.Merge(r)
	}
	return m
}

// Spread is a statistic's median across runs with the extremes.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// SpreadOf summarises vals; the median of an even count is the mean of the
// middle two. It returns the zero Spread for no values.
func SpreadOf(vals []float64) Spread {
	if len(vals) == 0 {
		return Spread{}
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	mid := len(s) / 2
	med := s[mid]
	if len(s)%2 == 0 {
		med = (s[mid-1] + s[mid]) / 2
	}
	return Spread{Min: s[0], Median: med, Max: s[len(s)-1]}
}

// Summary is a series reduced to the numbers the reports carry, in
// microseconds. Each percentile is the median across runs; Spread keeps
// the run-to-run range of the ones worth tuning for.
type Summary struct {
	Name   string            `json:"-"`
	Count  int64             `json:"count_per_run"`
	Runs   int               `json:"runs"`
	MinUS  float64           `json:"min_us"`
	MeanUS float64           `json:"mean_us"`
	P50US  float64           `json:"p50_us"`
	P90US  float64           `json:"p90_us"`
	P99US  float64           `json:"p99_us"`
	P999US float64           `json:"p999_us"`
	MaxUS  float64           `json:"max_us"`
	Spread map[string]Spread `json:"spread"`
}

// Summarize reduces s. Counts per run are equal under one Plan; Count is
// the first run's.
func Summarize(s Series) Summary {
	out := Summary{Name: s.Name, Runs: len(s.Runs), Spread: map[string]Spread{}}
	if len(s.Runs) == 0 {
		return out
	}
	out.Count = s.Runs[0].Count()
	stat := func(key string, f func(h *hist.Histogram) float64) float64 {
		vals := make([]float64, len(s.Runs))
		for i, h := range s.Runs {
			vals[i] = f(h)
		}
		sp := SpreadOf(vals)
		if key != "" {
			out.Spread[key] = sp
		}
		return sp.Median
	}
	q := func(p float64) func(*hist.Histogram) float64 {
		return func(h *hist.Histogram) float64 { return US(h.Quantile(p)) }
	}
	out.MinUS = stat("", func(h *hist.Histogram) float64 { return US(h.Min()) })
	out.MeanUS = stat("", func(h *hist.Histogram) float64 { return h.Mean() / 1e3 })
	out.P50US = stat("p50_us", q(0.50))
	out.P90US = stat("", q(0.90))
	out.P99US = stat("p99_us", q(0.99))
	out.P999US = stat("p999_us", q(0.999))
	out.MaxUS = stat("max_us", func(h *hist.Histogram) float64 { return US(h.Max()) })
	return out
}

// US converts nanoseconds to microseconds rounded to 0.01 µs, the
// resolution the reports print.
func US(ns int64) float64 { return Round2(float64(ns) / 1e3) }

// Round2 rounds to two decimals so that JSON numbers stay readable.
func Round2(f float64) float64 {
	if f >= 0 {
		return float64(int64(f*100+0.5)) / 100
	}
	return -float64(int64(-f*100+0.5)) / 100
}
