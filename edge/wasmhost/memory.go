package wasmhost

import (
	"context"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/pairs"
)

// Guest memory is touched only through api.Memory; a failed bounds check is
// StatusInvalidMemoryAccess, as in proxy-wasm-cpp-host, never a host panic.

// view returns guest memory [ptr, ptr+size) without copying; it is valid
// until the guest runs again (memory may grow and move).
func (in *instance) view(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	return in.mem.Read(ptr, size)
}

// str copies a guest string.
func (in *instance) str(ptr, size uint32) (string, bool) {
	b, ok := in.view(ptr, size)
	if !ok {
		return "", false
	}
	return string(b), true
}

// alloc asks the guest for size bytes with its allocator, under Envoy's
// allocation restrictions, and returns the address and a view of them.
func (in *instance) alloc(ctx context.Context, size uint32) (uint32, []byte, bool) {
	if in.fn.malloc == nil || size == 0 {
		return 0, nil, false
	}
	prev := in.phase
	in.phase = abi.PhaseAllocate
	in.allocStack[0] = uint64(size)
	err := in.fn.malloc.CallWithStack(ctx, in.allocStack[:])
	in.phase = prev
	if err != nil {
		// A trap inside the allocator propagates: the calling host
		// function panics with it so the guest call fails.
		panic(err)
	}
	ptr := uint32(in.allocStack[0])
	if ptr == 0 {
		return 0, nil, false
	}
	b, ok := in.mem.Read(ptr, size)
	return ptr, b, ok
}

// putPtrSize writes an address and a size into the guest's result slots.
func (in *instance) putPtrSize(ptrPtr, sizePtr, ptr, size uint32) abi.Status {
	if !in.mem.WriteUint32Le(ptrPtr, ptr) || !in.mem.WriteUint32Le(sizePtr, size) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// copyOut hands data to the guest: allocated in guest memory, address and
// size written at ptrPtr and sizePtr. Empty data is address 0, size 0,
// which the SDK reads as "not found" (Envoy does the same).
func (in *instance) copyOut(ctx context.Context, data []byte, ptrPtr, sizePtr uint32) abi.Status {
	if len(data) == 0 {
		return in.putPtrSize(ptrPtr, sizePtr, 0, 0)
	}
	ptr, b, ok := in.alloc(ctx, uint32(len(data)))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	copy(b, data)
	return in.putPtrSize(ptrPtr, sizePtr, ptr, uint32(len(data)))
}

// copyOutString is copyOut for a string, without converting it.
func (in *instance) copyOutString(ctx context.Context, s string, ptrPtr, sizePtr uint32) abi.Status {
	if len(s) == 0 {
		return in.putPtrSize(ptrPtr, sizePtr, 0, 0)
	}
	ptr, b, ok := in.alloc(ctx, uint32(len(s)))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	copy(b, s)
	return in.putPtrSize(ptrPtr, sizePtr, ptr, uint32(len(s)))
}

// copyOutPairs encodes a header map straight into guest memory.
func (in *instance) copyOutPairs(ctx context.Context, kvs []pairs.KV, ptrPtr, sizePtr uint32) abi.Status {
	size := uint32(pairs.Size(kvs))
	ptr, b, ok := in.alloc(ctx, size)
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	pairs.Encode(b, kvs)
	return in.putPtrSize(ptrPtr, sizePtr, ptr, size)
}
