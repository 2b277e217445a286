package xdsbench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRun is a small fleet through the whole measurement, for each client
// mode and store: every node must ACK the new release. (It is a
// correctness test of the harness; the numbers belong to aegis bench xds.)
func TestRun(t *testing.T) {
	nodes := 12
	if v := os.Getenv("AEGIS_XDSBENCH_NODES"); v != "" {
		nodes, _ = strconv.Atoi(v)
	}
	for _, tc := range []struct{ mode, store string }{
		{ModeSotW, "none"}, {ModeDelta, "sqlite"}, {ModeMixed, "sqlite"},
	} {
		t.Run(tc.mode+"/"+tc.store, func(t *testing.T) {
			res, err := Run(context.Background(), Options{Nodes: nodes, Mode: tc.mode, Store: tc.store, BundleBytes: 4096, Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if res.Acked != nodes || res.Nodes != nodes || res.ServerSyncedMs <= 0 || res.MaxMs < res.P99Ms || res.P99Ms < res.P50Ms || res.ConfigBytes <= 4096 {
				t.Fatalf("result %+v", res)
			}
			t.Logf("%+v", res)
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{Nodes: 0, Mode: "x", Store: "pg", BundleBytes: 1}.Validate()
	for _, want := range []string{"nodes:", "mode:", "store:", "bundle-bytes:", "timeout:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}
