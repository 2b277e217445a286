package plugin

import (
	"runtime"
	"testing"
)

func TestMaxNewPause(t *testing.T) {
	// ring fills PauseNs as the runtime does for collections first..last:
	// collection k (1-based) lands at (k-1)%256 with pause k.
	ring := func(first, last uint32) *runtime.MemStats {
		ms := &runtime.MemStats{NumGC: last}
		for k := first; k != last+1; k++ {
			ms.PauseNs[(k-1)%256] = uint64(k)
		}
		return ms
	}
	tests := []struct {
		name string
		ms   *runtime.MemStats
		seen uint32
		want uint64
	}{
		{"no collection yet", &runtime.MemStats{}, 0, 0},
		{"nothing new", ring(1, 10), 10, 0},
		{"two new", ring(1, 10), 8, 10},
		{"the longest is not the last", func() *runtime.MemStats { ms := ring(1, 10); ms.PauseNs[8] = 99; return ms }(), 7, 99},
		{"an old long pause is not new", func() *runtime.MemStats { ms := ring(1, 10); ms.PauseNs[2] = 99; return ms }(), 5, 10},
		{"more than the ring holds", ring(1, 600), 0, 600},
		{"counter wrapped", ring(1<<32-3, 2), 1<<32 - 2, 1<<32 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := maxNewPause(tt.ms, tt.seen); got != tt.want {
				t.Errorf("maxNewPause = %d, want %d", got, tt.want)
			}
		})
	}
}
