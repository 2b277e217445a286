package wasmhost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// exitTimeout is the exit code the host closes an instance with when a
// request's deadline passes while the guest runs.
const exitTimeout = 0xdead

// rootContextID is the plugin's root context; stream contexts count up
// from it. The VM itself is context 0 (proxy-wasm-cpp-host does the same).
const rootContextID = 1

// exports are the guest functions the host calls.
type exports struct {
	malloc, onContextCreate, onVMStart, onConfigure, onDone, onDelete, onLog    api.Function
	onTick, onQueueReady, onHTTPCallResponse                                    api.Function
	onReqHeaders, onReqBody, onReqTrailers, onRespHeaders, onRespBody, onRespTr api.Function
}

// instance is one VM: a module instance with one root context. Guest code
// runs under mu only; requests, ticks, queue notifications and http_call
// responses take turns, as on an Envoy worker thread.
type instance struct {
	pool *Pool
	id   uint64
	gen  uint64
	mod  api.Module
	mem  api.Memory
	fn   exports

	mu     sync.Mutex
	cctx   callCtx
	phase  abi.Phase
	nextID uint32
	// effective is the context host calls act on; each callback starts
	// with its own context and proxy_set_effective_context changes it.
	effective uint32
	stream    *stream
	rootState map[string][]byte // set_property outside a stream
	callouts  map[uint32]*callout
	nextToken uint32
	// response is the http_call response being delivered, if any.
	response *calloutResponse
	tick     ticker
	// pluginConfig is what proxy_on_configure read at start.
	pluginConfig []byte
	// broken is set when the guest trapped, or was stopped on a timeout:
	// the instance is never used again.
	broken   atomic.Bool
	timedOut atomic.Bool
	closed   atomic.Bool
	// running is set while guest code runs on behalf of a request.
	running atomic.Bool

	// draining is set once proxy_on_done ran on the root context; doneCh
	// closes when the filter then calls proxy_done.
	draining bool
	doneCh   chan struct{}

	// wake and spare are reused by the requests the instance serves, one
	// at a time.
	wake  chan struct{}
	spare *stream

	stack      [8]uint64
	allocStack [1]uint64
}

// callCtx is the context every guest call runs with: it carries the
// instance to host functions. Done is nil on purpose: wazero would start a
// goroutine per call to watch it; request deadlines are enforced by
// closing the module instead (see Pool.serve).
type callCtx struct {
	parent context.Context
	in     *instance
}

type instanceKey struct{}

func (c *callCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *callCtx) Done() <-chan struct{}       { return nil }
func (c *callCtx) Err() error                  { return nil }
func (c *callCtx) Value(key any) any {
	if key == (instanceKey{}) {
		return c.in
	}
	return c.parent.Value(key)
}

// instanceFrom finds the instance a host call belongs to.
func instanceFrom(ctx context.Context) *instance {
	if c, ok := ctx.(*callCtx); ok {
		return c.in
	}
	in, _ := ctx.Value(instanceKey{}).(*instance)
	return in
}

// errRestricted is the trap for a host call Envoy refuses in the current
// phase.
type errRestricted struct {
	name  string
	phase abi.Phase
}

func (e errRestricted) Error() string {
	where := "_initialize"
	if e.phase == abi.PhaseAllocate {
		where = "proxy_on_memory_allocate"
	}
	return fmt.Sprintf("restricted_callback: %s may not be called during %s", e.name, where)
}

// newInstance instantiates the module, runs _initialize under Envoy's
// restrictions, and starts the VM and plugin contexts. A configuration the
// guest refuses is an error (the instance is closed).
func (p *Pool) newInstance(ctx context.Context, pluginConfig []byte, gen uint64) (*instance, error) {
	id := p.nextInstance.Add(1)
	in := &instance{pool: p, id: id, gen: gen, nextID: rootContextID + 1, callouts: map[uint32]*callout{},
		wake: make(chan struct{}, 1), doneCh: make(chan struct{})}
	// Guest calls never see the caller's context values or cancellation:
	// deadlines are the host's business (see kill).
	in.cctx = callCtx{parent: context.Background(), in: in}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithSysWalltime().WithSysNanotime().
		WithRandSource(rand.Reader).
		WithStdout(&logWriter{p: p, in: in, level: abi.LogInfo}).
		WithStderr(&logWriter{p: p, in: in, level: abi.LogError})
	keys := make([]string, 0, len(p.cfg.Env))
	for k := range p.cfg.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cfg = cfg.WithEnv(k, p.cfg.Env[k])
	}
	mod, err := p.mod.rt.InstantiateModule(&in.cctx, p.mod.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiating the filter: %w", err)
	}
	in.mod = mod
	in.mem = mod.Memory()
	if err := in.start(pluginConfig); err != nil {
		in.close()
		return nil, err
	}
	return in, nil
}

func (in *instance) start(pluginConfig []byte) error {
	mod := in.mod
	get := mod.ExportedFunction
	in.fn = exports{
		malloc: get("malloc"), onContextCreate: get("proxy_on_context_create"),
		onVMStart: get("proxy_on_vm_start"), onConfigure: get("proxy_on_configure"),
		onDone: get("proxy_on_done"), onDelete: get("proxy_on_delete"), onLog: get("proxy_on_log"),
		onTick: get("proxy_on_tick"), onQueueReady: get("proxy_on_queue_ready"),
		onHTTPCallResponse: get("proxy_on_http_call_response"),
		onReqHeaders:       get("proxy_on_request_headers"), onReqBody: get("proxy_on_request_body"),
		onReqTrailers: get("proxy_on_request_trailers"), onRespHeaders: get("proxy_on_response_headers"),
		onRespBody: get("proxy_on_response_body"), onRespTr: get("proxy_on_response_trailers"),
	}
	if in.fn.malloc == nil {
		in.fn.malloc = get("proxy_on_memory_allocate")
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	// A WASI reactor initialises in _initialize (Go: package init and the
	// runtime); Envoy restricts host calls meanwhile.
	in.phase = abi.PhaseInitialize
	if f := get("_initialize"); f != nil {
		if _, err := f.Call(&in.cctx); err != nil {
			return fmt.Errorf("filter _initialize: %w", err)
		}
	} else if f := get("_start"); f != nil {
		if _, err := f.Call(&in.cctx); err != nil {
			return fmt.Errorf("filter _start: %w", err)
		}
	}
	in.phase = abi.PhaseRunning
	if in.fn.onContextCreate == nil {
		return errors.New("filter exports no proxy_on_context_create")
	}
	if _, err := in.call(in.fn.onContextCreate, rootContextID, rootContextID, 0); err != nil {
		return fmt.Errorf("filter proxy_on_context_create: %w", err)
	}
	if in.fn.onVMStart != nil {
		ok, err := in.call(in.fn.onVMStart, rootContextID, rootContextID, uint64(len(in.pool.cfg.VMConfig)))
		if err != nil {
			return fmt.Errorf("filter proxy_on_vm_start: %w", err)
		}
		if uint32(ok) == 0 {
			return fmt.Errorf("%w: proxy_on_vm_start returned false", ErrConfigRejected)
		}
	}
	in.pool.setPluginConfig(in, pluginConfig)
	if in.fn.onConfigure != nil {
		ok, err := in.call(in.fn.onConfigure, rootContextID, rootContextID, uint64(len(pluginConfig)))
		if err != nil {
			return fmt.Errorf("filter proxy_on_configure: %w", err)
		}
		if uint32(ok) == 0 {
			return fmt.Errorf("%w: proxy_on_configure returned false", ErrConfigRejected)
		}
	}
	return nil
}

// ErrConfigRejected is wrapped when the filter refuses its VM or plugin
// configuration.
var ErrConfigRejected = errors.New("filter rejected its configuration")

// call runs one guest export on behalf of context ctxID. The caller holds
// mu. A trap marks the instance broken.
func (in *instance) call(f api.Function, ctxID uint32, args ...uint64) (uint64, error) {
	if f == nil {
		return 0, nil
	}
	if in.broken.Load() {
		return 0, errBroken
	}
	in.effective = ctxID
	stack := in.stack[:]
	n := copy(stack, args)
	if r := len(f.Definition().ResultTypes()); r > n {
		n = r
	}
	if n == 0 {
		n = 1
	}
	in.running.Store(true)
	err := f.CallWithStack(&in.cctx, stack[:n])
	in.running.Store(false)
	if err != nil {
		in.broken.Store(true)
		if in.timedOut.Load() {
			return 0, fmt.Errorf("%w: %v", errTimeout, err)
		}
		return 0, fmt.Errorf("%w: %v", errTrap, err)
	}
	return stack[0], nil
}

var (
	errTrap    = errors.New("filter trapped")
	errTimeout = errors.New("filter timed out")
	errBroken  = errors.New("filter instance is broken")
)

// newContextID hands out a stream context id.
func (in *instance) newContextID() uint32 {
	id := in.nextID
	in.nextID++
	if in.nextID == 0 {
		in.nextID = rootContextID + 1
	}
	return id
}

// close stops ticks, cancels callouts and closes the module instance.
func (in *instance) close() {
	if in.closed.Swap(true) {
		return
	}
	in.tick.stop()
	if in.mod != nil {
		_ = in.mod.Close(context.Background())
	}
	// A guest stuck in an endless loop holds mu forever; its callouts are
	// then left to their own timeouts (the pool's context cancels them on
	// Close).
	if in.mu.TryLock() {
		for _, c := range in.callouts {
			c.cancel()
		}
		in.mu.Unlock()
	}
}

// memoryBytes is the instance's linear memory size.
func (in *instance) memoryBytes() uint64 {
	if in.mem == nil {
		return 0
	}
	return uint64(in.mem.Size())
}
