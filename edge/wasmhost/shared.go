package wasmhost

import (
	"context"
	"sync"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// sharedData is the key-value store every instance of a pool sees (Envoy
// keeps one per vm_id). Versions come from one counter, as in
// proxy-wasm-cpp-host src/shared_data.cc: never 0, so that cas 0 can mean
// "unconditional".
type sharedData struct {
	mu   sync.Mutex
	cas  uint32
	data map[string]sharedValue
}

type sharedValue struct {
	value []byte
	cas   uint32
}

func newSharedData() *sharedData { return &sharedData{cas: 1, data: map[string]sharedValue{}} }

func (d *sharedData) nextCas() uint32 {
	c := d.cas
	d.cas++
	if d.cas == 0 {
		d.cas = 1
	}
	return c
}

// get returns the value and its version; ok is false when absent.
func (d *sharedData) get(key string) ([]byte, uint32, bool) {
	d.mu.Lock()
	v, ok := d.data[key]
	d.mu.Unlock()
	return v.value, v.cas, ok
}

// set stores value if cas is 0 or matches the key's current version; a
// missing key is created whatever cas is (Envoy's rule).
func (d *sharedData) set(key string, value []byte, cas uint32) abi.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur, ok := d.data[key]; ok && cas != 0 && cas != cur.cas {
		return abi.StatusCasMismatch
	}
	d.data[key] = sharedValue{value: value, cas: d.nextCas()}
	return abi.StatusOK
}

// proxy_get_shared_data(key_ptr, key_size, value_ptr_ptr, value_size_ptr, cas_ptr):
// NotFound when the key was never set.
func hostGetSharedData(ctx context.Context, in *instance, s []uint64) abi.Status {
	key, ok := in.view(uint32(s[0]), uint32(s[1]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	v, cas, found := in.pool.shared.get(string(key))
	if !found {
		return abi.StatusNotFound
	}
	if st := in.copyOut(ctx, v, uint32(s[2]), uint32(s[3])); st != abi.StatusOK {
		return st
	}
	if !in.mem.WriteUint32Le(uint32(s[4]), cas) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// proxy_set_shared_data(key_ptr, key_size, value_ptr, value_size, cas):
// CasMismatch when another write came first.
func hostSetSharedData(_ context.Context, in *instance, s []uint64) abi.Status {
	key, ok1 := in.str(uint32(s[0]), uint32(s[1]))
	val, ok2 := in.view(uint32(s[2]), uint32(s[3]))
	if !ok1 || !ok2 {
		return abi.StatusInvalidMemoryAccess
	}
	return in.pool.shared.set(key, append([]byte(nil), val...), uint32(s[4]))
}

// queues are the pool's shared queues. A queue belongs to the instance
// that registered it last (proxy-wasm-cpp-host moves ownership the same
// way); that instance's root context gets proxy_on_queue_ready.
type queues struct {
	mu     sync.Mutex
	byName map[string]uint32
	byID   map[uint32]*queue
	next   uint32
}

type queue struct {
	owner *instance
	items [][]byte
}

func newQueues() *queues {
	return &queues{byName: map[string]uint32{}, byID: map[uint32]*queue{}, next: 1}
}

func (q *queues) register(name string, owner *instance) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if id, ok := q.byName[name]; ok {
		q.byID[id].owner = owner
		return id
	}
	id := q.next
	q.next++
	q.byName[name] = id
	q.byID[id] = &queue{owner: owner}
	return id
}

func (q *queues) resolve(name string) (uint32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	id, ok := q.byName[name]
	return id, ok
}

func (q *queues) enqueue(id uint32, item []byte) (*instance, abi.Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.byID[id]
	if qu == nil {
		return nil, abi.StatusNotFound
	}
	qu.items = append(qu.items, item)
	return qu.owner, abi.StatusOK
}

func (q *queues) dequeue(id uint32) ([]byte, abi.Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.byID[id]
	if qu == nil {
		return nil, abi.StatusNotFound
	}
	if len(qu.items) == 0 {
		return nil, abi.StatusEmpty
	}
	item := qu.items[0]
	qu.items[0] = nil
	qu.items = qu.items[1:]
	return item, abi.StatusOK
}

// proxy_register_shared_queue(name_ptr, name_size, id_ptr).
func hostRegisterQueue(_ context.Context, in *instance, s []uint64) abi.Status {
	name, ok := in.str(uint32(s[0]), uint32(s[1]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	if !in.mem.WriteUint32Le(uint32(s[2]), in.pool.queues.register(name, in)) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// proxy_resolve_shared_queue(vm_id_ptr, vm_id_size, name_ptr, name_size, id_ptr):
// all instances of a pool share one vm_id, so only the name matters;
// NotFound when nobody registered it.
func hostResolveQueue(_ context.Context, in *instance, s []uint64) abi.Status {
	name, ok := in.view(uint32(s[2]), uint32(s[3]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	id, found := in.pool.queues.resolve(string(name))
	if !found {
		return abi.StatusNotFound
	}
	if !in.mem.WriteUint32Le(uint32(s[4]), id) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// proxy_dequeue_shared_queue(id, value_ptr_ptr, value_size_ptr): Empty
// when there is nothing, NotFound for an unknown queue.
func hostDequeue(ctx context.Context, in *instance, s []uint64) abi.Status {
	item, st := in.pool.queues.dequeue(uint32(s[0]))
	if st != abi.StatusOK {
		return st
	}
	return in.copyOut(ctx, item, uint32(s[1]), uint32(s[2]))
}

// proxy_enqueue_shared_queue(id, value_ptr, value_size): the owner is told
// with proxy_on_queue_ready, later, on its own turn (never inside the
// caller's call, which may be the owner itself).
func hostEnqueue(_ context.Context, in *instance, s []uint64) abi.Status {
	item, ok := in.view(uint32(s[1]), uint32(s[2]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	id := uint32(s[0])
	owner, st := in.pool.queues.enqueue(id, append([]byte(nil), item...))
	if st != abi.StatusOK {
		return st
	}
	in.pool.notifyQueue(owner, id)
	return abi.StatusOK
}
