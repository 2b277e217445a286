package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/bench/hist"
	"github.com/aegis-mesh/aegis/bench/machine"
	"github.com/aegis-mesh/aegis/bench/measure"
)

func sample(t *testing.T) *Report {
	t.Helper()
	series := func(name string, scale int64) measure.Summary {
		s := measure.Series{Name: name}
		for range 3 {
			h := hist.New()
			for v := int64(1); v <= 100; v++ {
				h.Record(v * scale)
			}
			s.Runs = append(s.Runs, h)
		}
		return measure.Summarize(s)
	}
	r := &Report{
		Scenario: "engine",
		Started:  time.Date(2026, 11, 24, 1, 2, 3, 0, time.UTC),
		Machine:  machine.Info{Cores: 2, GOMAXPROCS: 2, GOOS: "linux", GOARCH: "amd64", GoVersion: "go1.26.8", CPUModel: "Test CPU"},
		Plan:     measure.Plan{Warmup: 10, Requests: 100, Runs: 3},
		Params:   map[string]any{"policy": "payments"},
		Series:   []measure.Summary{series("aegis", 1000), series("opa", 50_000)},
		Notes:    []string{"a note"},
	}
	r.Set("p99_ratio_vs_opa", 50.0)
	r.Set("disagreements", 0)
	r.Set("disagreements", 1) // replaces
	return r
}

func TestJSONShape(t *testing.T) {
	r := sample(t)
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	aegis := got["aegis"].(map[string]any)
	opa := got["opa"].(map[string]any)
	near := func(v any, want float64) bool { f := v.(float64); return f > want*0.99 && f < want*1.01 }
	// Recorded in ns, reported in µs, within the histogram's 1%.
	if !near(aegis["p99_us"], 99) || !near(opa["p99_us"], 4950) || !near(aegis["spread"].(map[string]any)["p99_us"].(map[string]any)["max"], 99) {
		t.Errorf("p99: aegis %v opa %v", aegis["p99_us"], opa["p99_us"])
	}
	if got["p99_ratio_vs_opa"].(float64) != 50 || got["disagreements"].(float64) != 1 {
		t.Errorf("fields: %v %v", got["p99_ratio_vs_opa"], got["disagreements"])
	}
	if got["scenario"] != "engine" || got["time"] != "2026-11-24T01:02:03Z" || got["machine"].(map[string]any)["cores"].(float64) != 2 {
		t.Errorf("header: %v %v %v", got["scenario"], got["time"], got["machine"])
	}
	if v, ok := r.Get("disagreements"); !ok || v != 1 {
		t.Errorf("Get = %v %v", v, ok)
	}
	r.Set("aegis", 1) // collides with a series name
	if _, err := json.Marshal(r); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate field: err = %v", err)
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := sample(t).WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"aegis bench engine", "Test CPU, 2 cores", "3 runs × 100", "policy=payments",
		"series", "p99.9", "aegis", "opa", "p99_ratio_vs_opa: 50", "note: a note"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestSave(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	r := sample(t)
	path, err := r.Save(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "engine-20261124T010203Z.json" {
		t.Errorf("path %s", path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil || back["scenario"] != "engine" {
		t.Fatalf("saved JSON does not read back: %v %v", err, back["scenario"])
	}
}

func TestRatio(t *testing.T) {
	cases := []struct{ a, b, want float64 }{{10, 2, 5}, {1, 3, 0.33}, {5, 0, 0}}
	for _, c := range cases {
		if got := Ratio(c.a, c.b); got != c.want {
			t.Errorf("Ratio(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
