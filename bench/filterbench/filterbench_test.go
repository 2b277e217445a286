package filterbench

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/bench/measure"
)

// wasmPath is the module make filter builds; the test fails without it,
// as the filter's own dual-runtime tests do: a skipped benchmark test
// would hide a broken build.
const wasmPath = "../../build/aegis-filter.wasm"

func readWasm(t *testing.T) []byte {
	t.Helper()
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatalf("%v: build it with make filter", err)
	}
	return wasm
}

// TestRunChecksEveryPath runs a short filter benchmark: each path's
// requests were all answered as the policy says (Run fails otherwise),
// each series holds the planned samples, audit batches were shipped, and
// a size the filter refuses is reported, not fatal.
func TestRunChecksEveryPath(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Plan: measure.Plan{Warmup: 5, Requests: 40, Runs: 2}, WasmName: "test", Size: 3, Scaling: []int{2}}
	res, err := Run(ctx, readWasm(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if len(r.Series) != len(Paths) {
		t.Fatalf("series %v", r.Series)
	}
	for _, s := range r.Series {
		if s.Count != 40 || s.Runs != 2 || s.P50US <= 0 || s.P999US < s.P50US {
			t.Errorf("series %s: %+v", s.Name, s)
		}
	}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"allow", "deny", "sanitize"} {
		for _, f := range []string{"p50_us", "p99_us", "p999_us"} {
			if _, ok := got[path].(map[string]any)[f].(float64); !ok {
				t.Errorf("%s.%s missing", path, f)
			}
		}
	}
	if _, ok := got["gc_pauses"].(map[string]any)["host_gc_cycles"]; !ok {
		t.Errorf("gc_pauses: %v", got["gc_pauses"])
	}
	// Each path's events reach the sink with their decision time.
	decide, _ := got["guest_decide_us"].(map[string]any)
	for _, path := range []string{"allow", "deny", "sanitize"} {
		q, _ := decide[path].(map[string]any)
		if p50, _ := q["p50_us"].(float64); p50 <= 0 {
			t.Errorf("guest_decide_us.%s: %v", path, q)
		}
	}
	sc := got["scaling"].(map[string]any)["2"].(map[string]any)
	if _, ok := sc["allow_p99_us"].(float64); !ok {
		t.Errorf("scaling: %v", sc)
	}
}

func TestAnswersAreChecked(t *testing.T) {
	// A path whose expectation is wrong must fail the run: the checks are
	// what makes the latencies mean something.
	ctx := context.Background()
	fx, err := NewFixture(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := compileModule(ctx, readWasm(t))
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(ctx)
	b, err := newBench(ctx, mod, fx, &AuditSink{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.pool.Close(ctx)
	cases := []struct {
		name string
		p    Path
		want string
	}{
		{"deny expected to pass", Path{Name: "deny", Body: Paths[2].Body, Status: 200, Reached: true}, "status 403"},
		{"allow expected to redact", Path{Name: "allow", Body: Paths[0].Body, Status: 200, Reached: true, Forwarded: "[card]"}, "lacks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := b.do(c.p); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("do = %v, want an error with %q", err, c.want)
			}
		})
	}
	for _, p := range Paths {
		if err := b.do(p); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Size: 1}, {Plan: measure.Plan{Requests: 1, Runs: 1}}, {Plan: measure.Plan{Requests: 1, Runs: 1}, Size: 1, Scaling: []int{-1}}} {
		if c.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
}
