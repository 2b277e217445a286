//go:build !wasm

package main

import (
	"io"
	"log"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/aegis-mesh/aegis/filter/internal/plugin"
	"github.com/aegis-mesh/aegis/token"
)

// BenchmarkWasmRequest measures one request through the built module under
// wazero (the SDK emulator's runtime), from request headers to the
// decision, for the three paths that let a request through or refuse it.
// Each request is timed on its own so that the tail shows: guest GC pauses
// land in p99.9 and max. Run with enough requests, e.g.
//
//	go test -run '^$' -bench WasmRequest -benchtime 100000x ./filter
//
// The time includes the emulator's own per-request work (header maps,
// copies across the wasm boundary), which Envoy does differently.
func BenchmarkWasmRequest(b *testing.B) {
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		b.Fatal(err)
	}
	paths := []struct {
		name    string
		body    string
		want    func(*proxytest.LocalHttpResponse) bool
		noToken bool
	}{
		{"allow", `{"title":"weekly","body":"all good","priority":2}`, func(r *proxytest.LocalHttpResponse) bool { return r == nil }, false},
		{"sanitize", `{"title":"weekly","body":"card 4111 1111 1111 1111","priority":2}`, func(r *proxytest.LocalHttpResponse) bool { return r == nil }, false},
		{"deny", `{"title":"weekly","body":"x","priority":9,"extra":1}`, func(r *proxytest.LocalHttpResponse) bool { return r != nil && r.StatusCode == 403 }, false},
		// The floor: refused before any policy work, so this is the cost of
		// the emulator, the wasm boundary and a local reply.
		{"unauthorized", `{}`, func(r *proxytest.LocalHttpResponse) bool { return r != nil && r.StatusCode == 401 }, true},
	}
	for _, p := range paths {
		for _, runtime := range []string{"wasm", "go"} {
			b.Run(p.name+"/"+runtime, func(b *testing.B) {
				var vm types.VMContext = plugin.NewVMContext()
				if runtime == "wasm" {
					wvm, err := proxytest.NewWasmVMContext(wasm)
					if err != nil {
						b.Fatal(err)
					}
					defer wvm.Close()
					vm = wvm
				}
				// Audit events are drained to an emulated control plane between
				// timed requests, so that every request appends its event (a
				// full queue would refuse the writes instead).
				host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm).
					WithVMConfiguration(vmConfig()).WithPluginConfiguration(pluginConfig(map[string][]byte{"bench": fx.bench},
					`"control_plane":{"cluster":"cp"},"audit":{"max_queue":8192,"batch_size":4096}`)))
				defer reset()
				if !host.StartVM() || host.StartPlugin() != types.OnPluginStartStatusOK {
					b.Fatalf("start: %q", host.GetCriticalLogs())
				}
				tok := mintB(b)
				headers := [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "notes.bench.internal"},
					{":path", "/v1/notes"}, {"content-type", "application/json"}, {"authorization", "Bearer " + tok}}
				if p.noToken {
					headers = headers[:len(headers)-1]
				}
				body := []byte(p.body)
				one := func() *proxytest.LocalHttpResponse {
					id := host.InitializeHttpContext()
					host.CallOnRequestHeaders(id, headers, false)
					host.CallOnRequestBody(id, body, true)
					r := host.GetSentLocalResponse(id)
					host.CompleteHttpContext(id)
					return r
				}
				if r := one(); !p.want(r) {
					b.Fatalf("unexpected outcome %+v", r)
				}
				// The emulator logs every callout body; not part of the filter.
				log.SetOutput(io.Discard)
				defer log.SetOutput(os.Stderr)
				drain := func() {
					host.Tick()
					cs := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
					if len(cs) > 0 {
						host.CallOnHttpCallResponse(cs[len(cs)-1].CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{}`))
					}
				}
				lat := make([]time.Duration, 0, b.N)
				wrong := 0
				b.ResetTimer()
				for i := range b.N {
					if i%4000 == 3999 {
						b.StopTimer()
						drain()
						b.StartTimer()
					}
					t0 := time.Now()
					r := one()
					lat = append(lat, time.Since(t0))
					if !p.want(r) {
						wrong++
					}
				}
				b.StopTimer()
				if wrong > 0 {
					b.Fatalf("%d of %d requests had another outcome", wrong, b.N)
				}
				slices.Sort(lat)
				q := func(f float64) float64 {
					return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Nanoseconds()) / 1e3
				}
				b.ReportMetric(q(0.50), "p50-µs")
				b.ReportMetric(q(0.99), "p99-µs")
				b.ReportMetric(q(0.999), "p99.9-µs")
				b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds())/1e3, "max-µs")
				if runtime == "wasm" {
					// The guest's collector, as its gauges report it (updated
					// on tick): cycles per 1000 requests and the longest pause.
					drain()
					gauge := func(name string) float64 {
						v, err := host.GetGaugeMetric(name)
						if err != nil {
							b.Fatalf("%s: %v", name, err)
						}
						return float64(v)
					}
					b.ReportMetric(gauge("aegis.runtime.gc_cycles")*1000/float64(b.N+1), "gc/1k-req")
					b.ReportMetric(gauge("aegis.runtime.gc_pause_max_us"), "gc-pause-max-µs")
					b.ReportMetric(gauge("aegis.runtime.heap_live_bytes")/(1<<20), "live-MiB")
				}
			})
		}
	}
}

func mintB(b *testing.B) string {
	now := time.Now()
	tok, err := token.Mint(fx.tokenKey, token.Claims{Subject: "bench-agent", Tenant: "bench", Region: "eu-west-1",
		IssuedAt: guestEpoch.Add(-time.Minute).Unix(), ExpiresAt: now.Add(time.Hour).Unix()})
	if err != nil {
		b.Fatal(err)
	}
	return tok
}
