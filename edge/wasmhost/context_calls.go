package wasmhost

import (
	"context"
	"sync"
	"time"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// proxy_get_current_time_nanoseconds(time_ptr): wall clock, from the
// pool's clock.
func hostGetCurrentTime(_ context.Context, in *instance, s []uint64) abi.Status {
	if !in.mem.WriteUint64Le(uint32(s[0]), uint64(in.pool.now().UnixNano())) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// proxy_set_effective_context(context_id): later host calls in this
// callback act on that context (the root context, or the instance's
// in-flight stream). BadArgument for any other id.
func hostSetEffectiveContext(_ context.Context, in *instance, s []uint64) abi.Status {
	id := uint32(s[0])
	if id != rootContextID && (in.stream == nil || in.stream.id != id) {
		return abi.StatusBadArgument
	}
	in.effective = id
	return abi.StatusOK
}

// proxy_done(): the root context finished the work it deferred when
// proxy_on_done returned false; the instance can be deleted. NotFound
// before proxy_on_done.
func hostDone(_ context.Context, in *instance, _ []uint64) abi.Status {
	if !in.draining {
		return abi.StatusNotFound
	}
	select {
	case <-in.doneCh:
	default:
		close(in.doneCh)
	}
	return abi.StatusOK
}

// proxy_get_status(code_ptr, msg_ptr_ptr, msg_size_ptr): the status of the
// http_call response being delivered (0 otherwise), no message.
func hostGetStatus(_ context.Context, in *instance, s []uint64) abi.Status {
	var code uint32
	if in.response == nil {
		return abi.StatusNotFound
	}
	if in.response.failed {
		code = 1
	}
	if !in.mem.WriteUint32Le(uint32(s[0]), code) {
		return abi.StatusInvalidMemoryAccess
	}
	return in.putPtrSize(uint32(s[1]), uint32(s[2]), 0, 0)
}

// ticker delivers proxy_on_tick to one instance.
// Its own lock: close stops ticks without waiting for the guest.
type ticker struct {
	mu     sync.Mutex
	stopCh chan struct{}
}

func (t *ticker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopCh != nil {
		close(t.stopCh)
		t.stopCh = nil
	}
}

// start replaces the current tick source with a new stop channel.
func (t *ticker) start() chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopCh != nil {
		close(t.stopCh)
	}
	t.stopCh = make(chan struct{})
	return t.stopCh
}

// proxy_set_tick_period_milliseconds(period): 0 stops ticks. Each
// instance ticks on its own schedule (each VM has its own timers in Envoy).
func hostSetTickPeriod(_ context.Context, in *instance, s []uint64) abi.Status {
	period := time.Duration(uint32(s[0])) * time.Millisecond
	if period == 0 || in.closed.Load() {
		in.tick.stop()
		return abi.StatusOK
	}
	stop := in.tick.start()
	c, cancel := in.pool.newTicker(period)
	go func() {
		defer cancel()
		for {
			select {
			case <-stop:
				return
			case <-c:
				in.pool.deliverTick(in)
			}
		}
	}()
	return abi.StatusOK
}
