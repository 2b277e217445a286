package measure

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/bench/hist"
)

func TestTimeCountsOnlyTimedCalls(t *testing.T) {
	var seen []int
	h, err := Time(context.Background(), 3, 5, func(_ context.Context, i int) error {
		seen = append(seen, i)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 8 || seen[0] != 0 || seen[7] != 7 {
		t.Fatalf("op saw indexes %v, want 0..7", seen)
	}
	if h.Count() != 5 {
		t.Fatalf("recorded %d samples, want 5 (warm-up excluded)", h.Count())
	}
}

func TestTimeStops(t *testing.T) {
	boom := errors.New("boom")
	_, err := Time(context.Background(), 0, 10, func(_ context.Context, i int) error {
		if i == 4 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "operation 4") {
		t.Fatalf("err = %v, want boom at operation 4", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	if _, err := Time(ctx, 0, 10, func(context.Context, int) error { calls++; return nil }); !errors.Is(err, context.Canceled) || calls != 0 {
		t.Fatalf("cancelled context: err %v after %d calls", err, calls)
	}
}

func TestPlanValidate(t *testing.T) {
	cases := []struct {
		name string
		plan Plan
		want []string
	}{
		{"ok", Plan{Warmup: 0, Requests: 1, Runs: 1}, nil},
		{"all wrong", Plan{Warmup: -1, Requests: 0, Runs: 0}, []string{"warm-up", "request count", "run count"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.plan.Validate()
			if (err == nil) != (c.want == nil) {
				t.Fatalf("Validate() = %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSpreadOf(t *testing.T) {
	cases := []struct {
		name string
		in   []float64
		want Spread
	}{
		{"none", nil, Spread{}},
		{"one", []float64{4}, Spread{4, 4, 4}},
		{"odd", []float64{9, 1, 5}, Spread{1, 5, 9}},
		{"even", []float64{4, 1, 3, 2}, Spread{1, 2.5, 4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := SpreadOf(c.in); got != c.want {
				t.Errorf("SpreadOf(%v) = %+v, want %+v", c.in, got, c.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	// Three runs of 1..1000 µs scaled by 1, 2 and 3: the median run is the
	// doubled one, and the spread spans the other two.
	var s Series
	s.Name = "x"
	for scale := int64(1); scale <= 3; scale++ {
		h := hist.New()
		for v := int64(1); v <= 1000; v++ {
			h.Record(v * 1000 * scale)
		}
		s.Runs = append(s.Runs, h)
	}
	sum := Summarize(s)
	if sum.Runs != 3 || sum.Count != 1000 || sum.Name != "x" {
		t.Fatalf("summary %+v", sum)
	}
	near := func(got, want float64) bool { return got > want*0.99 && got < want*1.01 }
	if !near(sum.P50US, 1000) || !near(sum.P99US, 1980) || !near(sum.MaxUS, 2000) || !near(sum.MinUS, 2) {
		t.Errorf("medians p50 %v p99 %v max %v min %v, want about 1000, 1980, 2000, 2", sum.P50US, sum.P99US, sum.MaxUS, sum.MinUS)
	}
	sp := sum.Spread["p99_us"]
	if !near(sp.Min, 990) || !near(sp.Median, 1980) || !near(sp.Max, 2970) {
		t.Errorf("p99 spread %+v, want about 990/1980/2970", sp)
	}
	if got := s.Merged().Count(); got != 3000 {
		t.Errorf("merged count %d", got)
	}
	if Summarize(Series{}).Count != 0 {
		t.Error("empty series must summarise to zeros")
	}
}

func TestRounding(t *testing.T) {
	cases := []struct {
		in   int64
		want float64
	}{{0, 0}, {1, 0}, {5, 0.01}, {1234, 1.23}, {1235, 1.24}, {2_500_000, 2500}}
	for _, c := range cases {
		if got := US(c.in); got != c.want {
			t.Errorf("US(%d) = %v, want %v", c.in, got, c.want)
		}
	}
	if Round2(-1.235) != -1.24 {
		t.Errorf("Round2(-1.235) = %v", Round2(-1.235))
	}
}

func TestLighter(t *testing.T) {
	cases := []struct{ in, want Plan }{
		{Plan{Warmup: 1000, Requests: 10000, Runs: 5}, Plan{Warmup: 100, Requests: 1000, Runs: 3}},
		{Plan{Warmup: 0, Requests: 3, Runs: 1}, Plan{Warmup: 0, Requests: 1, Runs: 1}},
	}
	for _, c := range cases {
		if got := c.in.Lighter(); got != c.want {
			t.Errorf("%+v.Lighter() = %+v, want %+v", c.in, got, c.want)
		}
		if err := c.in.Lighter().Validate(); err != nil {
			t.Errorf("lighter plan invalid: %v", err)
		}
	}
}
