// Package testfilter is a proxy-wasm filter that exercises one ABI area
// per configuration, for the host's conformance tests: the same code runs
// natively under the SDK's emulator (proxytest) and, built to wasm from
// testdata/filters/conformance, under this host. Its observable effects
// (headers, bodies, local replies, logs, metrics, shared data) are what
// the tests compare.
//
// The plugin configuration is the area name: headers, body, local_reply,
// shared_data, queue, http_call, tick, metrics, properties, logging,
// trap, hang, drain; reject fails the plugin start.
package testfilter

import (
	"errors"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// NewVMContext returns the filter's root context.
func NewVMContext() types.VMContext { return &vm{} }

type vm struct{ types.DefaultVMContext }

// NewPluginContext implements types.VMContext.
func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type plugin struct {
	types.DefaultPluginContext
	area      string
	finishing bool
	queue     uint32
	ticks     proxywasm.MetricCounter
	counter   proxywasm.MetricCounter
	gauge     proxywasm.MetricGauge
	hist      proxywasm.MetricHistogram
}

// CounterKey is the shared-data key the shared_data area increments.
const CounterKey = "conformance/hits"

// QueueName is the queue the queue area uses.
const QueueName = "conformance-queue"

// OnPluginStart implements types.PluginContext.
func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	conf, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		proxywasm.LogCriticalf("no configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.area = strings.TrimSpace(string(conf))
	switch p.area {
	case "headers", "body", "local_reply", "http_call", "properties", "logging", "trap", "hang":
	case "reject":
		return types.OnPluginStartStatusFailed
	case "shared_data":
		// Created once, before any request, so that every later write is a
		// CAS on an existing key: creating with cas 0 from two VMs at once
		// would let the later write win.
		if _, _, err := proxywasm.GetSharedData(CounterKey); errors.Is(err, types.ErrorStatusNotFound) {
			if err := proxywasm.SetSharedData(CounterKey, []byte("0"), 0); err != nil {
				proxywasm.LogCriticalf("creating the counter: %v", err)
				return types.OnPluginStartStatusFailed
			}
		}
	case "queue":
		id, err := proxywasm.RegisterSharedQueue(QueueName)
		if err != nil {
			proxywasm.LogCriticalf("registering the queue: %v", err)
			return types.OnPluginStartStatusFailed
		}
		p.queue = id
	case "drain":
		if err := proxywasm.SetTickPeriodMilliSeconds(1000); err != nil {
			proxywasm.LogCriticalf("tick: %v", err)
			return types.OnPluginStartStatusFailed
		}
	case "tick":
		p.ticks = proxywasm.DefineCounterMetric("conformance.ticks")
		if err := proxywasm.SetTickPeriodMilliSeconds(1000); err != nil {
			proxywasm.LogCriticalf("tick: %v", err)
			return types.OnPluginStartStatusFailed
		}
	case "metrics":
		p.counter = proxywasm.DefineCounterMetric("conformance.counter")
		p.gauge = proxywasm.DefineGaugeMetric("conformance.gauge")
		p.hist = proxywasm.DefineHistogramMetric("conformance.histogram")
	default:
		proxywasm.LogCriticalf("unknown area %q", p.area)
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfof("started %s", p.area)
	return types.OnPluginStartStatusOK
}

// OnPluginDone implements types.PluginContext: the drain area defers the
// end to its next tick, as a filter with audit events still to ship would.
func (p *plugin) OnPluginDone() bool {
	if p.area != "drain" {
		return true
	}
	proxywasm.LogInfo("done requested")
	p.finishing = true
	return false
}

// OnTick implements types.PluginContext.
func (p *plugin) OnTick() {
	if p.area == "drain" && p.finishing {
		proxywasm.LogInfo("finished")
		proxywasm.PluginDone()
		return
	}
	if p.area == "tick" {
		p.ticks.Increment(1)
		proxywasm.LogInfof("tick %d", p.ticks.Value())
	}
}

// OnQueueReady implements types.PluginContext: everything queued is logged
// in order, then the empty queue is reported.
func (p *plugin) OnQueueReady(id uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(id)
		if errors.Is(err, types.ErrorStatusEmpty) {
			return
		}
		if err != nil {
			proxywasm.LogErrorf("dequeue: %v", err)
			return
		}
		proxywasm.LogInfof("dequeued %s", item)
	}
}

// NewHttpContext implements types.PluginContext.
func (p *plugin) NewHttpContext(id uint32) types.HttpContext { return &stream{p: p, id: id} }

type stream struct {
	types.DefaultHttpContext
	p  *plugin
	id uint32
}

func (s *stream) OnHttpRequestHeaders(n int, endOfStream bool) types.Action {
	switch s.p.area {
	case "headers":
		path, _ := proxywasm.GetHttpRequestHeader(":path")
		hs, _ := proxywasm.GetHttpRequestHeaders()
		proxywasm.LogInfof("path %s, end %v", path, endOfStream)
		must(proxywasm.AddHttpRequestHeader("x-header-count", strconv.Itoa(len(hs))))
		must(proxywasm.AddHttpRequestHeader("x-added", "1"))
		must(proxywasm.ReplaceHttpRequestHeader("x-replace", "new"))
		must(proxywasm.RemoveHttpRequestHeader("x-remove"))
		if _, err := proxywasm.GetHttpRequestHeader("x-absent"); errors.Is(err, types.ErrorStatusNotFound) {
			must(proxywasm.AddHttpRequestHeader("x-absent-status", "not_found"))
		}
		if v, err := proxywasm.GetHttpRequestHeader("X-Mixed-Case"); err == nil {
			must(proxywasm.AddHttpRequestHeader("x-mixed-seen", v))
		}
	case "body":
		if endOfStream {
			return types.ActionContinue
		}
		return types.ActionPause
	case "local_reply":
		if v, _ := proxywasm.GetHttpRequestHeader("x-deny"); v != "" {
			must(proxywasm.SendHttpResponse(403, [][2]string{{"content-type", "application/json"}, {"x-why", v}},
				[]byte(`{"error":"denied","why":"`+v+`"}`), -1))
			return types.ActionPause
		}
	case "shared_data":
		n, err := increment()
		if err != nil {
			proxywasm.LogErrorf("increment: %v", err)
			must(proxywasm.SendHttpResponse(500, nil, []byte(err.Error()), -1))
			return types.ActionPause
		}
		must(proxywasm.AddHttpRequestHeader("x-count", strconv.Itoa(n)))
	case "queue":
		path, _ := proxywasm.GetHttpRequestHeader(":path")
		// The SDK's emulator does not implement resolve; only the host's
		// own tests read these.
		if id, err := proxywasm.ResolveSharedQueue("", QueueName); err == nil && id == s.p.queue {
			must(proxywasm.AddHttpRequestHeader("x-resolved", "same"))
		}
		if _, err := proxywasm.ResolveSharedQueue("", "no-such-queue"); errors.Is(err, types.ErrorStatusNotFound) {
			must(proxywasm.AddHttpRequestHeader("x-missing-queue", "not_found"))
		}
		// Last: the emulator runs OnQueueReady inside this call and leaves
		// the plugin context active afterwards.
		must(proxywasm.EnqueueSharedQueue(s.p.queue, []byte(path)))
	case "http_call":
		_, err := proxywasm.DispatchHttpCall("backend", [][2]string{{":method", "POST"}, {":path", "/callout"},
			{":authority", "backend.internal"}, {"x-from", "filter"}}, []byte("ping"), nil, 5000,
			func(numHeaders, bodySize, numTrailers int) {
				var status string
				hs, _ := proxywasm.GetHttpCallResponseHeaders()
				for _, h := range hs {
					if h[0] == ":status" {
						status = h[1]
					}
				}
				body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
				must(proxywasm.AddHttpRequestHeader("x-callout", status+" "+string(body)))
				must(proxywasm.ResumeHttpRequest())
			})
		if err != nil {
			proxywasm.LogErrorf("dispatch: %v", err)
			return types.ActionContinue
		}
		return types.ActionPause
	case "metrics":
		s.p.counter.Increment(2)
		s.p.gauge.Add(5)
		s.p.gauge.Add(-2)
		s.p.hist.Record(42)
		must(proxywasm.AddHttpRequestHeader("x-counter", strconv.FormatUint(s.p.counter.Value(), 10)))
	case "properties":
		must(proxywasm.SetProperty([]string{"conformance.state"}, []byte("set-in-request")))
		v, err := proxywasm.GetProperty([]string{"conformance.state"})
		if err == nil {
			must(proxywasm.AddHttpRequestHeader("x-prop", string(v)))
		}
		// Request attributes exist in Envoy (and this host), not in the
		// emulator.
		if v, err := proxywasm.GetProperty([]string{"request", "path"}); err == nil {
			must(proxywasm.AddHttpRequestHeader("x-request-path", string(v)))
		}
		if _, err := proxywasm.GetProperty([]string{"no", "such", "property"}); errors.Is(err, types.ErrorStatusNotFound) {
			must(proxywasm.AddHttpRequestHeader("x-prop-missing", "not_found"))
		}
	case "logging":
		proxywasm.LogTrace("trace line")
		proxywasm.LogDebug("debug line")
		proxywasm.LogInfo("info line")
		proxywasm.LogWarn("warn line")
		proxywasm.LogError("error line")
		proxywasm.LogCritical("critical line")
	case "trap":
		if v, _ := proxywasm.GetHttpRequestHeader("x-trap"); v != "" {
			panic("trap requested: " + v)
		}
	case "hang":
		if v, _ := proxywasm.GetHttpRequestHeader("x-hang"); v != "" {
			spin()
		}
	}
	return types.ActionContinue
}

// spin never returns: the host must stop it at the request deadline.
func spin() {
	n := 0
	for {
		n++
		if n < 0 {
			proxywasm.LogInfo("wrapped")
		}
	}
}

// increment adds one to the shared counter with CAS retries.
func increment() (int, error) {
	for range 1000 {
		v, cas, err := proxywasm.GetSharedData(CounterKey)
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return 0, err
		}
		err = proxywasm.SetSharedData(CounterKey, []byte(strconv.Itoa(n+1)), cas)
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			continue
		}
		return n + 1, err
	}
	return 0, errors.New("too much contention")
}

func (s *stream) OnHttpRequestBody(size int, endOfStream bool) types.Action {
	if s.p.area != "body" {
		return types.ActionContinue
	}
	if !endOfStream {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpRequestBody(0, size)
	if err != nil {
		proxywasm.LogErrorf("request body: %v", err)
		return types.ActionContinue
	}
	must(proxywasm.ReplaceHttpRequestBody([]byte(strings.ToUpper(string(body)))))
	must(proxywasm.ReplaceHttpRequestHeader("x-body-size", strconv.Itoa(size)))
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(n int, endOfStream bool) types.Action {
	switch s.p.area {
	case "headers":
		status, _ := proxywasm.GetHttpResponseHeader(":status")
		must(proxywasm.AddHttpResponseHeader("x-resp", "yes "+status))
		must(proxywasm.RemoveHttpResponseHeader("x-upstream-secret"))
	case "body":
		must(proxywasm.RemoveHttpResponseHeader("content-length"))
		if !endOfStream {
			return types.ActionPause
		}
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseBody(size int, endOfStream bool) types.Action {
	if s.p.area != "body" {
		return types.ActionContinue
	}
	if !endOfStream {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpResponseBody(0, size)
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogErrorf("response body: %v", err)
	}
	must(proxywasm.ReplaceHttpResponseBody(append(body, " [filtered]"...)))
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	if s.p.area == "properties" {
		proxywasm.LogInfo("stream done")
	}
}

// must logs a failed host call: a status the test did not expect shows up
// as an error line the tests check for.
func must(err error) {
	if err != nil {
		proxywasm.LogErrorf("host call failed: %v", err)
	}
}
