package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// PoolConfig configures a Pool. Zero values take the documented defaults.
type PoolConfig struct {
	// Size is the number of VM instances, each serving one request at a
	// time (default: GOMAXPROCS).
	Size int
	// PluginConfig is what the filter reads in proxy_on_configure (Envoy's
	// plugin configuration); UpdateConfig replaces it.
	PluginConfig []byte
	// VMConfig is what the filter reads in proxy_on_vm_start.
	VMConfig []byte
	// Env is the guest's environment (Envoy's
	// vm_config.environment_variables): the trust root travels here.
	Env map[string]string
	// Clusters are the upstreams proxy_http_call may name. The request
	// URL is http://<:authority><:path>; see ClusterURL to pin a base URL.
	Clusters map[string]http.RoundTripper
	// RequestTimeout bounds a request from the first filter callback to
	// the last, upstream included (default 30s). Past it the request fails
	// closed with 503.
	RequestTimeout time.Duration
	// MaxBodyBytes bounds what the host buffers of a request or response
	// body, and of an http_call response (default 4 MiB). Keep it above
	// the filter's own body limit, as Envoy's buffer limit must be.
	MaxBodyBytes int
	// Logger receives the filter's log lines and the host's (default:
	// slog.Default()).
	Logger *slog.Logger
	// LogLevel is the proxy-wasm level below which filter logs are
	// dropped (0 trace … 5 critical; default 0: everything reaches
	// Logger, whose own level then applies).
	LogLevel uint32
	// OnLog, if set, sees every filter log line kept by LogLevel.
	OnLog func(level uint32, msg string)
	// Properties are extra proxy_get_property values, keyed by path with
	// segments joined by NUL ("node\x00id").
	Properties map[string][]byte
	// PluginName, RootID and VMID answer the plugin_* properties.
	PluginName, RootID, VMID string
	// Now is the clock of proxy_get_current_time_nanoseconds (default
	// time.Now). The guest's WASI clock is always the system clock.
	Now func() time.Time
	// DrainTimeout bounds how long a replaced instance may keep working
	// after proxy_on_done returned false, until it calls proxy_done
	// (default 5s).
	DrainTimeout time.Duration
	// NewTicker starts a tick source for proxy_set_tick_period_milliseconds
	// (default: time.NewTicker). Tests step ticks with it.
	NewTicker func(period time.Duration) (<-chan time.Time, func())
}

const (
	defaultRequestTimeout = 30 * time.Second
	defaultMaxBodyBytes   = 4 << 20
)

func (c PoolConfig) withDefaults() PoolConfig {
	if c.Size <= 0 {
		c.Size = runtime.GOMAXPROCS(0)
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defaultRequestTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = defaultMaxBodyBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewTicker == nil {
		c.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	return c
}

// Pool is a set of VM instances of one module running one filter
// configuration, sharing shared data, queues and metrics.
type Pool struct {
	cfg    PoolConfig
	mod    *Module
	log    *slog.Logger
	ctx    context.Context // cancelled by Close: stops callouts
	cancel context.CancelFunc

	shared  *sharedData
	queues  *queues
	metrics *metricRegistry

	// slots holds one entry per instance slot: an idle instance, or nil
	// for a slot whose instance must be (re)created by whoever takes it.
	// A slot out of the channel is busy.
	slots chan *instance

	mu           sync.Mutex
	gen          uint64
	pluginConfig []byte
	live         map[*instance]struct{}
	closed       bool

	bg sync.WaitGroup // tick, queue and callout deliveries; replacements

	nextInstance    atomic.Uint64
	created         atomic.Uint64
	replaced        atomic.Uint64
	traps           atomic.Uint64
	timeouts        atomic.Uint64
	rejected        atomic.Uint64
	calloutsStarted atomic.Uint64
}

// ErrPoolClosed is returned by a Pool after Close.
var ErrPoolClosed = errors.New("wasmhost: pool closed")

// NewPool starts cfg.Size instances of mod with cfg.PluginConfig. It fails
// if the filter refuses its configuration (errors.Is ErrConfigRejected) or
// traps while starting.
func NewPool(ctx context.Context, mod *Module, cfg PoolConfig) (*Pool, error) {
	cfg = cfg.withDefaults()
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &Pool{
		cfg: cfg, mod: mod, log: cfg.Logger, ctx: pctx, cancel: cancel,
		shared: newSharedData(), queues: newQueues(), metrics: newMetricRegistry(),
		slots: make(chan *instance, cfg.Size), gen: 1,
		pluginConfig: append([]byte(nil), cfg.PluginConfig...),
		live:         map[*instance]struct{}{},
	}
	for i := range cfg.Size {
		in, err := p.newInstance(ctx, p.pluginConfig, 1)
		if err != nil {
			for range cfg.Size - i {
				p.slots <- nil
			}
			_ = p.Close(ctx)
			return nil, err
		}
		p.addLive(in)
		p.slots <- in
	}
	return p, nil
}

func (p *Pool) addLive(in *instance) {
	p.created.Add(1)
	p.mu.Lock()
	p.live[in] = struct{}{}
	p.mu.Unlock()
}

func (p *Pool) retire(in *instance) {
	p.mu.Lock()
	delete(p.live, in)
	p.mu.Unlock()
	in.close()
}

func (p *Pool) current() (uint64, []byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen, p.pluginConfig, p.closed
}

// acquire takes an instance for one request, waiting while all are busy.
// A nil slot, a broken instance or one of an older configuration is
// replaced here, before use.
func (p *Pool) acquire(ctx context.Context) (*instance, error) {
	var in *instance
	select {
	case in = <-p.slots:
	case <-ctx.Done():
		p.rejected.Add(1)
		return nil, fmt.Errorf("waiting for a filter instance: %w", ctx.Err())
	}
	gen, conf, closed := p.current()
	if closed {
		p.slots <- in
		return nil, ErrPoolClosed
	}
	if in != nil && (in.broken.Load() || in.gen != gen) {
		if in.broken.Load() {
			p.replaced.Add(1)
			p.retire(in)
		} else {
			p.drainAsync(in)
		}
		in = nil
	}
	if in == nil {
		var err error
		in, err = p.newInstance(p.ctx, conf, gen)
		if err != nil {
			p.slots <- nil
			return nil, err
		}
		p.addLive(in)
	}
	return in, nil
}

// release returns an instance after a request. A broken or outdated one
// is retired and its slot refilled in the background, so the next request
// does not pay for a new instance.
func (p *Pool) release(in *instance) {
	gen, conf, closed := p.current()
	if closed {
		p.retire(in)
		p.slots <- nil
		return
	}
	if !in.broken.Load() && in.gen == gen {
		p.slots <- in
		return
	}
	if in.broken.Load() {
		p.replaced.Add(1)
		p.retire(in)
	} else {
		p.drainAsync(in)
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		fresh, err := p.newInstance(p.ctx, conf, gen)
		if err != nil {
			p.log.Error("replacing a filter instance", "error", err)
			p.slots <- nil
			return
		}
		p.addLive(fresh)
		p.slots <- fresh
	}()
}

// pluginConfigFor is the configuration in's generation was started with.
func (p *Pool) pluginConfigFor(in *instance) []byte { return in.pluginConfig }

func (p *Pool) setPluginConfig(in *instance, conf []byte) { in.pluginConfig = conf }

// UpdateConfig swaps the plugin configuration (a new bundle) without
// dropping requests: a new instance is started with it first, so a
// configuration the filter refuses returns the error and leaves the old
// one in force; then idle instances are replaced, and busy ones are
// replaced when their request ends.
func (p *Pool) UpdateConfig(ctx context.Context, pluginConfig []byte) error {
	conf := append([]byte(nil), pluginConfig...)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	gen := p.gen + 1
	p.mu.Unlock()
	first, err := p.newInstance(ctx, conf, gen)
	if err != nil {
		return fmt.Errorf("new plugin configuration: %w", err)
	}
	p.mu.Lock()
	if p.closed || p.gen >= gen {
		// Closed, or another update won meanwhile: this one is moot.
		p.mu.Unlock()
		first.close()
		if p.closed {
			return ErrPoolClosed
		}
		return errors.New("new plugin configuration: superseded by a concurrent update")
	}
	p.gen, p.pluginConfig = gen, conf
	p.mu.Unlock()
	p.addLive(first)

	// Replace the idle instances now, reusing the one already started.
	spare := first
	for range len(p.slots) {
		var in *instance
		got := false
		select {
		case in = <-p.slots:
			got = true
		default:
		}
		if !got {
			break
		}
		if in != nil && in.gen == gen && !in.broken.Load() {
			p.slots <- in
			continue
		}
		if in != nil {
			if in.broken.Load() {
				p.retire(in)
			} else {
				p.drainAsync(in)
			}
		}
		if spare != nil {
			p.slots <- spare
			spare = nil
			continue
		}
		fresh, err := p.newInstance(ctx, conf, gen)
		if err != nil {
			p.slots <- nil
			p.log.Error("starting a filter instance for the new configuration", "error", err)
			continue
		}
		p.addLive(fresh)
		p.slots <- fresh
	}
	if spare != nil {
		p.retire(spare)
	}
	return nil
}

// Close stops every instance once its request has finished (or ctx ends)
// and releases the pool. The Module stays open.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	var err error
	var drains sync.WaitGroup
	for range p.cfg.Size {
		select {
		case in := <-p.slots:
			if in != nil {
				drains.Add(1)
				go func() {
					defer drains.Done()
					p.drain(ctx, in)
				}()
			}
		case <-ctx.Done():
			err = fmt.Errorf("closing the pool: %w", ctx.Err())
		}
		if err != nil {
			break
		}
	}
	drains.Wait()
	p.cancel()
	p.mu.Lock()
	rest := make([]*instance, 0, len(p.live))
	for in := range p.live {
		rest = append(rest, in)
	}
	p.mu.Unlock()
	for _, in := range rest {
		p.retire(in)
	}
	done := make(chan struct{})
	go func() { p.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("closing the pool: %w", ctx.Err())
		}
	}
	return err
}

// Metrics returns a snapshot of the filter's metrics and the pool's state.
func (p *Pool) Metrics() Metrics {
	m := Metrics{Counters: map[string]uint64{}, Gauges: map[string]int64{}, Histograms: map[string]Histogram{}}
	p.metrics.snapshot(&m)
	p.mu.Lock()
	m.Pool.Generation = p.gen
	m.Pool.Instances = len(p.live)
	for in := range p.live {
		m.Pool.Memory = append(m.Pool.Memory, in.memoryBytes())
	}
	p.mu.Unlock()
	m.Pool.Size = p.cfg.Size
	m.Pool.Busy = p.cfg.Size - len(p.slots)
	m.Pool.Created = p.created.Load()
	m.Pool.Replaced = p.replaced.Load()
	m.Pool.Traps = p.traps.Load()
	m.Pool.Timeouts = p.timeouts.Load()
	m.Pool.Rejected = p.rejected.Load()
	return m
}

// SharedData returns a shared-data value and its CAS version, as a filter
// would see it (for embedders and tests).
func (p *Pool) SharedData(key string) ([]byte, uint32, bool) {
	v, cas, ok := p.shared.get(key)
	return append([]byte(nil), v...), cas, ok
}

func (p *Pool) now() time.Time { return p.cfg.Now() }

func (p *Pool) newTicker(d time.Duration) (<-chan time.Time, func()) { return p.cfg.NewTicker(d) }

// deliverTick runs proxy_on_tick on in's root context when in is free.
func (p *Pool) deliverTick(in *instance) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed.Load() || in.broken.Load() {
		return
	}
	if _, err := in.call(in.fn.onTick, rootContextID, rootContextID); err != nil {
		p.guestFailed(in, "proxy_on_tick", err)
	}
}

// notifyQueue tells a queue's owner that an item arrived, on its turn.
func (p *Pool) notifyQueue(owner *instance, id uint32) {
	if owner == nil || owner.closed.Load() {
		return
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		owner.mu.Lock()
		defer owner.mu.Unlock()
		if owner.closed.Load() || owner.broken.Load() {
			return
		}
		if _, err := owner.call(owner.fn.onQueueReady, rootContextID, rootContextID, uint64(id)); err != nil {
			p.guestFailed(owner, "proxy_on_queue_ready", err)
		}
	}()
}

// deliverCallout hands an http_call response to the filter on the root
// context, then lets a request paused on it look at its stream again.
func (p *Pool) deliverCallout(in *instance, token uint32, resp *calloutResponse) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.callouts[token]; !ok || in.closed.Load() || in.broken.Load() {
		return
	}
	delete(in.callouts, token)
	in.response = resp
	_, err := in.call(in.fn.onHTTPCallResponse, rootContextID, rootContextID, uint64(token),
		uint64(len(resp.headers)), uint64(len(resp.body)), uint64(len(resp.trailers)))
	in.response = nil
	if err != nil {
		p.guestFailed(in, "proxy_on_http_call_response", err)
	}
	if s := in.stream; s != nil {
		s.wakeup()
	}
}

// guestFailed counts and logs a trap or timeout; the instance is already
// marked broken by call and is replaced when next released or acquired.
func (p *Pool) guestFailed(in *instance, where string, err error) {
	if errors.Is(err, errTimeout) {
		p.timeouts.Add(1)
	} else if errors.Is(err, errTrap) {
		p.traps.Add(1)
	}
	p.log.Error("filter failed", "vm", in.id, "callback", where, "error", err)
	if s := in.stream; s != nil {
		s.wakeup()
	}
}

// drainAsync ends an outdated instance in the background (see drain).
func (p *Pool) drainAsync(in *instance) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		p.drain(p.ctx, in)
	}()
}

// drain ends an instance the way Envoy ends a VM it no longer needs:
// proxy_on_done on the root context; a filter that returns false there
// still has work (an audit batch to ship) and keeps its ticks and
// http_call responses until it calls proxy_done, DrainTimeout passes or
// ctx ends; then proxy_on_delete, and the instance is closed.
func (p *Pool) drain(ctx context.Context, in *instance) {
	defer p.retire(in)
	if in.broken.Load() || in.closed.Load() {
		return
	}
	in.mu.Lock()
	in.draining = true
	r, err := in.call(in.fn.onDone, rootContextID, rootContextID)
	in.mu.Unlock()
	if err != nil {
		p.guestFailed(in, "proxy_on_done", err)
		return
	}
	if in.fn.onDone != nil && uint32(r) == 0 {
		t := time.NewTimer(p.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-in.doneCh:
		case <-t.C:
			p.log.Warn("filter instance did not finish its work before the drain timeout", "vm", in.id)
		case <-ctx.Done():
		}
	}
	in.mu.Lock()
	if _, err := in.call(in.fn.onDelete, rootContextID, rootContextID); err != nil {
		p.guestFailed(in, "proxy_on_delete", err)
	}
	in.mu.Unlock()
}
