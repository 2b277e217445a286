package policies

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/aegis-mesh/aegis/engine"
)

func BenchmarkLoadPayments(b *testing.B) {
	data, err := os.ReadFile("examples/payments.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := Load("payments.yaml", data); errs != nil {
			b.Fatal(errs)
		}
	}
}

func BenchmarkCompilePayments(b *testing.B) {
	ps, errs := LoadPath("examples/payments.yaml")
	if errs != nil {
		b.Fatal(errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(context.Background(), ps, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecision evaluates the generated payments policy for one small
// allowed payment, on the engine (what nodes run) and on OPA topdown.
func BenchmarkDecision(b *testing.B) {
	c := compilePayments(b)
	raw := []byte(`{"agent":{"id":"billing-agent","chain":["billing-agent"],"region":"eu-west-1"},
		"request":{"method":"POST","host":"payments.acme.internal","path":"/v1/payments","query":{},"body_type":"json"},
		"params":{"amount":120.5,"currency":"EUR","beneficiary_iban":"DE89370400440532013000","memo":"thanks"},
		"context":{"region":"eu-west-1","time":"2026-11-24T10:00:00Z","intent":"","budget":{"spent_micro_usd_today":0}}}`)
	b.Run("engine", func(b *testing.B) {
		p := loadEngine(b, c)
		in, err := engine.FromJSON(raw)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := p.EvalOne(context.Background(), "aegis/decision", in); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("topdown", func(b *testing.B) {
		pq, err := c.Topdown(context.Background(), "aegis/decision")
		if err != nil {
			b.Fatal(err)
		}
		var in any
		if err := json.Unmarshal(raw, &in); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pq.Eval(context.Background(), rego.EvalInput(in)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecisionLongQuery evaluates, on the engine, a call whose integer
// query parameter is 64 KiB of digits: the cost of a hostile value that
// fits in a proxy's header limit.
func BenchmarkDecisionLongQuery(b *testing.B) {
	p := loadEngine(b, compilePayments(b))
	raw := []byte(`{"agent":{"id":"billing-agent","chain":["billing-agent"],"region":"eu-west-1"},
		"request":{"method":"GET","host":"billing.acme.internal","path":"/v1/invoices","query":{"limit":"` + strings.Repeat("9", 64<<10) + `"},"body_type":"none"},
		"context":{"region":"eu-west-1","time":"2026-11-24T10:00:00Z","intent":"","budget":{"spent_micro_usd_today":0}}}`)
	in, err := engine.FromJSON(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		v, ok, err := p.EvalOne(context.Background(), "aegis/decision", in)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		if a, _ := engine.ToJSON(v); !strings.Contains(string(a), `"action":"deny"`) {
			b.Fatalf("decision %s", a)
		}
	}
}

func compilePayments(b *testing.B) *Compiled {
	b.Helper()
	ps, errs := LoadPath("examples/payments.yaml")
	if errs != nil {
		b.Fatal(errs)
	}
	c, err := Compile(context.Background(), ps, Options{SkipWasm: true})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// loadEngine loads c's plan and data as a node does.
func loadEngine(b *testing.B, c *Compiled) *engine.Policy {
	b.Helper()
	data, err := engine.FromJSON(c.Data)
	if err != nil {
		b.Fatal(err)
	}
	p, err := engine.Load(c.Plan, data)
	if err != nil {
		b.Fatal(err)
	}
	return p
}
