package policies

import (
	"context"
	"os"
	"testing"
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
