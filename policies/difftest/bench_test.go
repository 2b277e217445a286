package difftest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/policies"
)

// BenchmarkPaymentsDecision evaluates the payments example's decision on a
// fixed mix of generated inputs with the engine and with OPA's prepared
// query, in the same run. Besides ns/op and allocs/op it reports p50, p99
// and p99.9 of per-evaluation latency (µs) from the recorded samples.
//
//	go test -run '^$' -bench PaymentsDecision -benchmem ./policies/difftest
func BenchmarkPaymentsDecision(b *testing.B) {
	ctx := context.Background()
	ps, errs := policies.LoadPath(filepath.Join("..", "examples", "payments.yaml"))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	c, err := policies.Compile(ctx, ps, policies.Options{SkipWasm: true})
	if err != nil {
		b.Fatal(err)
	}
	data, err := engine.FromJSON(c.Data)
	if err != nil {
		b.Fatal(err)
	}
	pol, err := engine.Load(c.Plan, data)
	if err != nil {
		b.Fatal(err)
	}
	pq, err := c.Topdown(ctx, "aegis/decision")
	if err != nil {
		b.Fatal(err)
	}
	g := New(ps, 42)
	docs := make([]engine.Value, 1024)
	goDocs := make([]any, len(docs))
	for i := range docs {
		docs[i] = g.Next()
		goDocs[i] = engine.ToGoWith(docs[i], func(lit string) any { return json.Number(lit) })
	}

	b.Run("engine", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, _, err := pol.EvalOne(ctx, "aegis/decision", docs[i%len(docs)]); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		reportPercentiles(b, lat)
	})
	b.Run("opa", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, err := pq.Eval(ctx, regoInput(goDocs[i%len(goDocs)])); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		reportPercentiles(b, lat)
	})
}

// BenchmarkPaymentsAllow is the allow path alone (a small valid payment), to
// watch allocations where they matter most.
func BenchmarkPaymentsAllow(b *testing.B) {
	ctx := context.Background()
	ps, errs := policies.LoadPath(filepath.Join("..", "examples", "payments.yaml"))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	c, err := policies.Compile(ctx, ps, policies.Options{SkipWasm: true})
	if err != nil {
		b.Fatal(err)
	}
	data, _ := engine.FromJSON(c.Data)
	pol, err := engine.Load(c.Plan, data)
	if err != nil {
		b.Fatal(err)
	}
	doc, err := engine.FromJSON([]byte(`{"version":1,
	 "agent":{"id":"billing-agent","tenant":"acme","chain":["billing-agent"],"region":"eu-west-1","scope":[],"claims":{}},
	 "request":{"method":"POST","scheme":"https","host":"payments.acme.internal","path":"/v1/payments","query":{},
	   "headers":{"content-type":"application/json"},"body_type":"json"},
	 "params":{"amount":120.5,"currency":"EUR","beneficiary_iban":"DE89370400440532013000","memo":"invoice 42"},
	 "context":{"region":"eu-west-1","time":"2026-11-24T10:00:00Z","time_ns":1795514400000000000,"intent":"",
	   "budget":{"spent_micro_usd_today":0,"spent_usd_today":0},"state_seq":0}}`))
	if err != nil {
		b.Fatal(err)
	}
	v, _, err := pol.EvalOne(ctx, "aegis/decision", doc)
	if err != nil {
		b.Fatal(err)
	}
	if a, _ := v.(*engine.Object).Get("action"); !engine.Equal(a, engine.String("allow")) {
		b.Fatalf("want allow, got %v", engine.ToGo(v))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := pol.EvalOne(ctx, "aegis/decision", doc); err != nil {
			b.Fatal(err)
		}
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) < 100 {
		return // calibration rounds
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(q(0.999), "p99.9-µs")
}
