//go:build !wasm

package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/edge/wasmhost"
	"github.com/aegis-mesh/aegis/filter/internal/audit"
	"github.com/aegis-mesh/aegis/filter/internal/quota"
)

// poolHost runs the built filter module in the edge's wasm host: several
// VMs at once over one shared-data store, as Envoy's worker threads are.
type poolHost struct {
	pool  *wasmhost.Pool
	front *httptest.Server
	// batches the fake control plane received, each verified on arrival.
	mu      sync.Mutex
	events  []audit.Event
	batchEr []error
}

func newPoolHost(t *testing.T, vms int, vmConf, conf []byte, pub ed25519.PublicKey) *poolHost {
	t.Helper()
	ctx := context.Background()
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatalf("filter module: %v", err)
	}
	mod, err := wasmhost.Compile(ctx, wasm, wasmhost.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mod.Close(ctx) })
	h := &poolHost{}
	cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b audit.Batch
		err := json.NewDecoder(r.Body).Decode(&b)
		if err == nil && (r.URL.Path != "/v1/audit/batches" || r.Method != http.MethodPost) {
			err = fmt.Errorf("%s %s", r.Method, r.URL.Path)
		}
		if err == nil {
			err = audit.VerifyBatch(b, pub)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil {
			h.batchEr = append(h.batchEr, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.events = append(h.events, b.Events...)
		fmt.Fprintf(w, `{"accepted":%d,"duplicates":0}`, len(b.Events))
	}))
	t.Cleanup(cp.Close)
	u, _ := url.Parse(cp.URL)
	h.pool, err = wasmhost.NewPool(ctx, mod, wasmhost.PoolConfig{
		Size: vms, VMConfig: vmConf, PluginConfig: conf,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Clusters: map[string]http.RoundTripper{"aegis-cp": wasmhost.ClusterURL(u, nil)},
		// Ticks never come: only the drain ships audit batches.
		NewTicker: func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.pool.Close(ctx) })
	h.front = httptest.NewServer(h.pool.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	})))
	t.Cleanup(h.front.Close)
	return h
}

// TestPoolSpendAndDrain runs the filter module on several VMs of the
// edge's wasm host. Concurrent payments from every VM, starting with the
// counter missing, all reach the spend counter (no lost creation or
// increment); closing the pool retires every VM, and each ships its
// queued audit events to the control plane before proxy_done.
func TestPoolSpendAndDrain(t *testing.T) {
	const vms, workers, perWorker = 4, 8, 5
	vmConf, pub := auditVMConf(t)
	conf := pluginConfig(allBundles(), `"control_plane":{"cluster":"aegis-cp","timeout_ms":5000},"audit":{"batch_size":3,"flush_interval_ms":600000}`)
	h := newPoolHost(t, vms, vmConf, conf, pub)
	tok := mint(t, tokenOpts{agent: "billing-agent", tenant: "acme"})
	body := `{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}`

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range perWorker {
				req, _ := http.NewRequest(http.MethodPost, h.front.URL+"/v1/payments", strings.NewReader(body))
				req.Host = "payments.acme.internal"
				req.Header.Set("authorization", "Bearer "+tok)
				req.Header.Set("content-type", "application/json")
				resp, err := h.front.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errs <- fmt.Errorf("status %d: %s", resp.StatusCode, b)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const calls = workers * perWorker
	v, _, ok := h.pool.SharedData(quota.SpendKey("acme", "billing-agent"))
	if want := fmt.Sprintf("%s %d", quota.Day(time.Now()), calls*50000); !ok || string(v) != want {
		t.Errorf("spend counter %q, want %q (an update was lost)", v, want)
	}

	if err := h.pool.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, err := range h.batchEr {
		t.Errorf("batch refused: %v", err)
	}
	seen := map[string]bool{}
	var cost int64
	for _, ev := range h.events {
		seen[ev.ID] = true
		cost += ev.CostMicroUSD
	}
	if len(h.events) != calls || len(seen) != calls {
		t.Errorf("control plane got %d events (%d distinct), want %d", len(h.events), len(seen), calls)
	}
	if cost != calls*50000 {
		t.Errorf("events carry %d micro-USD, the counter %d", cost, calls*50000)
	}
}
