package edgebench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/bench/measure"
)

// TestRunAllChains drives a few requests through every chain. Run checks
// each response itself (status 200 and the upstream's body), so reaching
// the report means every chain forwarded every request; the test checks
// that the report holds what the issue asks for.
func TestRunAllChains(t *testing.T) {
	cfg := Config{Plan: measure.Plan{Warmup: 2, Requests: 30, Runs: 1}, Concurrency: 3, Wasm: "../../build/aegis-filter.wasm", Size: 2}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rps_filter", "rps_nofilter", "rps_extauthz", "rps_proxy", "rps_direct", "throughput_ratio"} {
		if v, ok := got[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v", k, got[k])
		}
	}
	for _, k := range []string{"added_filter", "added_extauthz"} {
		m, ok := got[k].(map[string]any)
		if !ok || m["p50_us"] == nil || m["p99_us"] == nil {
			t.Errorf("%s = %v", k, got[k])
		}
	}
	for _, name := range []string{Direct, Proxy, NoFilter, Filter, ExtAuthz} {
		if h := res.Curves[name]; h == nil || h.Count() != 30 {
			t.Errorf("chain %s: %v samples", name, h)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Plan: measure.Plan{Requests: 1, Runs: 1}, Concurrency: 1, Wasm: "x", Size: 1}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"concurrency", func(c *Config) { c.Concurrency = 0 }, "concurrency"},
		{"size", func(c *Config) { c.Size = 0 }, "policy size"},
		{"wasm", func(c *Config) { c.Wasm = "" }, "filter module"},
		{"plan", func(c *Config) { c.Plan.Runs = 0 }, "run count"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.mod(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want %q", err, c.want)
			}
		})
	}
	if _, err := Run(context.Background(), Config{Plan: ok.Plan, Concurrency: 1, Wasm: "/does/not/exist.wasm", Size: 1}); err == nil ||
		!strings.Contains(err.Error(), "make filter") {
		t.Fatalf("missing module: %v", err)
	}
}
