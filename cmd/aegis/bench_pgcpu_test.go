package main

import "testing"

func TestPostgresCPUSince(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after map[int]int64
		want          int64
		ok            bool
	}{
		{"not local", map[int]int64{1: 5}, nil, 0, false},
		{"same backends", map[int]int64{1: 5, 2: 7}, map[int]int64{1: 15, 2: 8}, 11, true},
		{"backend started in between", map[int]int64{1: 5}, map[int]int64{1: 6, 3: 20}, 21, true},
		{"backend gone", map[int]int64{1: 5, 2: 7}, map[int]int64{1: 6}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := postgresCPUSince(tc.before, tc.after); got != tc.want || ok != tc.ok {
				t.Fatalf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	// No database has this name: nothing to measure, and no panic on
	// whatever processes the machine runs.
	if got := postgresCPU("aegis_bench_no_such_database"); len(got) != 0 {
		t.Fatalf("found %d backends of a database that does not exist", len(got))
	}
}
