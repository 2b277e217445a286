package policies

import (
	"strings"
	"testing"
)

func TestMatchToolPattern(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"invoices.*", "invoices.read", true},
		{"invoices.*", "invoices.a.b", true},
		{"invoices.*", "invoices", false},
		{"*", "a", true},
		{"*", "a.b.c", true},
		{"a.*.c", "a.b.c", true},
		{"a.*.c", "a.b.x.c", true},
		{"a.*.c", "a.c", false},
		{"payments.create", "payments.create", true},
		{"payments.create", "payments.created", false},
		{"*.read", "invoices.read", true},
		{"*.read", "read", false},
		{strings.Repeat("*.", 40) + "x", strings.Repeat("a.", 60) + "y", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.name, func(t *testing.T) {
			if got := matchToolPattern(tt.pattern, tt.name); got != tt.want {
				t.Fatalf("matchToolPattern(%q, %q) = %v", tt.pattern, tt.name, got)
			}
		})
	}
}

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in    string
		micro int64
		exact bool
		err   bool
	}{
		{"20", 20_000_000, true, false},
		{"0.05", 50_000, true, false},
		{"19.98", 19_980_000, true, false},
		{"0.000001", 1, true, false},
		{"0.0000001", 0, false, false},
		{"-1.5", -1_500_000, true, false},
		{"1e3", 0, false, true},
		{".5", 0, false, true},
		{"01", 0, false, true},
		{"1.", 0, false, true},
		{"NaN", 0, false, true},
		{strings.Repeat("9", 41), 0, false, true},
		{"9999999999999999999", 0, false, false}, // parses, but does not fit micro-units in int64
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDecimal(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			m, ok := d.Micro()
			if ok != tt.exact || m != tt.micro {
				t.Fatalf("Micro() = %d, %v; want %d, %v", m, ok, tt.micro, tt.exact)
			}
		})
	}
}
