// Package edgebench measures HTTP throughput and latency on loopback
// through five chains to the same upstream, in one run: the upstream
// directly, a plain httputil.ReverseProxy, the Aegis edge without a
// filter, the edge with the filter, and the ext_authz baseline (a proxy
// asking a gRPC authorization server that decides with OPA's Go
// evaluator). Every request is the same allowed tool call and every
// response is checked.
package edgebench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aegis-mesh/aegis/bench/filterbench"
	"github.com/aegis-mesh/aegis/bench/gen"
	"github.com/aegis-mesh/aegis/bench/hist"
	"github.com/aegis-mesh/aegis/bench/machine"
	"github.com/aegis-mesh/aegis/bench/measure"
	"github.com/aegis-mesh/aegis/bench/report"
)

// Chain names, also the JSON keys.
const (
	Direct   = "direct"
	Proxy    = "proxy"
	NoFilter = "nofilter"
	Filter   = "filter"
	ExtAuthz = "extauthz"
)

// Config is one edge benchmark. Plan counts are totals across the
// concurrent clients.
type Config struct {
	Plan        measure.Plan
	Concurrency int
	// Wasm is the filter module's path.
	Wasm string
	// Size is the generated policy set (agents = tools).
	Size int
	// Progress, if set, gets one line per step.
	Progress io.Writer
}

// Validate checks the counts.
func (c Config) Validate() error {
	var errs []error
	if err := c.Plan.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("concurrency %d: want 1–1024", c.Concurrency))
	}
	if c.Size < 1 {
		errs = append(errs, fmt.Errorf("policy size %d: need at least 1", c.Size))
	}
	if c.Wasm == "" {
		errs = append(errs, errors.New("filter module path: required"))
	}
	return errors.Join(errs...)
}

// Result is the report plus merged histograms for plots.
type Result struct {
	Report *report.Report
	Curves map[string]*hist.Histogram
}

// load sends n requests (after warmup) through url with conc clients in a
// closed loop and returns the latency histogram and the throughput.
func load(ctx context.Context, client *http.Client, url string, fx *filterbench.Fixture, conc, warmup, n int) (*hist.Histogram, float64, error) {
	body := filterbench.Paths[0].Body
	send := func() (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+gen.Path(0), bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Host = gen.Host(0)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+fx.Token)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, []byte(`{"ok":true}`)) {
			return 0, fmt.Errorf("status %d: %.200s", resp.StatusCode, got)
		}
		return d, nil
	}
	phase := func(total int, record bool) ([]*hist.Histogram, time.Duration, error) {
		hs := make([]*hist.Histogram, conc)
		errs := make([]error, conc)
		var wg sync.WaitGroup
		start := time.Now()
		for w := range conc {
			share := total / conc
			if w < total%conc {
				share++
			}
			hs[w] = hist.New()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range share {
					d, err := send()
					if err != nil {
						errs[w] = err
						return
					}
					if record {
						hs[w].Record(int64(d))
					}
				}
			}()
		}
		wg.Wait()
		return hs, time.Since(start), errors.Join(errs...)
	}
	if _, _, err := phase(warmup, false); err != nil {
		return nil, 0, fmt.Errorf("warm-up: %w", err)
	}
	hs, wall, err := phase(n, true)
	if err != nil {
		return nil, 0, err
	}
	h := hist.New()
	for _, x := range hs {
		h.Merge(x)
	}
	return h, float64(n) / wall.Seconds(), nil
}

// Run starts the five chains, measures them run by run (interleaved, so
// that a slow phase of a shared machine hits all of them) and builds the
// report.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Wasm); err != nil {
		return nil, fmt.Errorf("filter module: %w (build it with make filter)", err)
	}
	r := &report.Report{Scenario: "edge", Machine: machine.Current(), Plan: cfg.Plan, Started: time.Now().UTC().Truncate(time.Second),
		Params: map[string]any{"concurrency": cfg.Concurrency, "wasm": cfg.Wasm, "policy": fmt.Sprintf("generated, %d agents × %d tools", cfg.Size, cfg.Size),
			"request": "POST " + gen.Path(0) + " (allowed)"}}
	fx, err := filterbench.NewFixture(ctx, cfg.Size)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "aegis-bench-edge-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	upURL, upStop, err := serve(upstreamHandler())
	if err != nil {
		return nil, err
	}
	defer upStop(context.WithoutCancel(ctx))
	chains := []*chain{{name: Direct, url: upURL, close: func(context.Context) error { return nil }}}
	defer func() {
		for _, c := range chains {
			_ = c.close(context.WithoutCancel(ctx))
		}
	}()
	starters := []func() (*chain, error){
		func() (*chain, error) { return plainProxy(upURL, cfg.Concurrency) },
		func() (*chain, error) { return edgeChain(ctx, NoFilter, upURL, "none", fx, dir) },
		func() (*chain, error) { return edgeChain(ctx, Filter, upURL, cfg.Wasm, fx, dir) },
		func() (*chain, error) { return extauthzChain(ctx, upURL, fx, cfg.Concurrency) },
	}
	for _, start := range starters {
		c, err := start()
		if err != nil {
			return nil, err
		}
		chains = append(chains, c)
	}
	client := &http.Client{Transport: transport(cfg.Concurrency), Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()

	series := make([]measure.Series, len(chains))
	rps := make([][]float64, len(chains))
	for i, c := range chains {
		series[i].Name = c.name
	}
	for run := range cfg.Plan.Runs {
		for i, c := range chains {
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "bench edge: run %d/%d, %s, %d requests\n", run+1, cfg.Plan.Runs, c.name, cfg.Plan.Requests)
			}
			h, x, err := load(ctx, client, c.url, fx, cfg.Concurrency, cfg.Plan.Warmup, cfg.Plan.Requests)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			series[i].Runs = append(series[i].Runs, h)
			rps[i] = append(rps[i], x)
		}
	}
	res := &Result{Report: r, Curves: map[string]*hist.Histogram{}}
	sums := map[string]measure.Summary{}
	rpsMed := map[string]float64{}
	for i, s := range series {
		sum := measure.Summarize(s)
		r.Series = append(r.Series, sum)
		sums[s.Name] = sum
		res.Curves[s.Name] = s.Merged()
		sp := measure.SpreadOf(rps[i])
		rpsMed[s.Name] = measure.Round2(sp.Median)
		r.Set("rps_"+s.Name, rpsMed[s.Name])
	}
	r.Set("throughput_ratio", report.Ratio(rpsMed[Filter], rpsMed[NoFilter]))
	r.Set("throughput_ratio_vs_extauthz", report.Ratio(rpsMed[Filter], rpsMed[ExtAuthz]))
	// Added latency: the chain's percentile minus its no-decision twin's
	// (the edge without filter for the filter; the plain proxy for
	// ext_authz). Differences of percentiles, not percentiles of
	// differences: an estimate, stated as such.
	added := func(a, b string) map[string]float64 {
		return map[string]float64{
			"p50_us": measure.Round2(sums[a].P50US - sums[b].P50US),
			"p99_us": measure.Round2(sums[a].P99US - sums[b].P99US),
		}
	}
	addF, addX := added(Filter, NoFilter), added(ExtAuthz, Proxy)
	r.Set("added_filter", addF)
	r.Set("added_extauthz", addX)
	r.Set("added_p99_ratio_extauthz_vs_filter", report.Ratio(addX["p99_us"], addF["p99_us"]))
	r.Notes = append(r.Notes,
		fmt.Sprintf("closed loop: %d clients on loopback, keep-alive; latencies are client-side round trips; every response checked (200, upstream body)", cfg.Concurrency),
		"added_* = chain percentile minus its twin's (filter − nofilter, extauthz − proxy)",
		"the edge runs in-process (edge.NewServer) with its audit WAL; ext_authz verifies the token and builds input with the same packages and decides with OPA's prepared query")
	return res, nil
}
