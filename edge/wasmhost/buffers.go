package wasmhost

import (
	"context"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// buffer returns the buffer a call names in the effective context.
// Configuration buffers are readable from the root context only while the
// guest starts or is configured (the SDK documents the same limit).
func (in *instance) buffer(bt abi.BufferType) (*[]byte, bool, abi.Status) {
	switch bt {
	case abi.BufferRequestBody, abi.BufferResponseBody:
		s := in.currentStream()
		if s == nil {
			return nil, false, abi.StatusNotFound
		}
		if bt == abi.BufferRequestBody {
			return &s.reqBody, true, abi.StatusOK
		}
		if s.phase < phaseResponse {
			return nil, false, abi.StatusNotFound
		}
		return &s.respBody, true, abi.StatusOK
	case abi.BufferHTTPCallResponse:
		if in.response == nil {
			return nil, false, abi.StatusNotFound
		}
		return &in.response.body, false, abi.StatusOK
	case abi.BufferVMConfiguration:
		b := in.pool.cfg.VMConfig
		return &b, false, abi.StatusOK
	case abi.BufferPluginConfig:
		b := in.pool.pluginConfigFor(in)
		return &b, false, abi.StatusOK
	case abi.BufferDownstreamData, abi.BufferUpstreamData, abi.BufferGrpcReceive, abi.BufferCallData:
		return nil, false, abi.StatusNotFound
	}
	return nil, false, abi.StatusBadArgument
}

// proxy_get_buffer_status(buffer_type, length_ptr, flags_ptr): the
// buffer's length; flags are always 0.
func hostGetBufferStatus(_ context.Context, in *instance, s []uint64) abi.Status {
	b, _, st := in.buffer(abi.BufferType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	if !in.mem.WriteUint32Le(uint32(s[1]), uint32(len(*b))) || !in.mem.WriteUint32Le(uint32(s[2]), 0) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

// proxy_get_buffer_bytes(buffer_type, start, max_size, ptr_ptr, size_ptr):
// up to max_size bytes from start. Reading at the end (or an empty buffer)
// gives address 0, size 0; start past the end is BadArgument.
func hostGetBufferBytes(ctx context.Context, in *instance, s []uint64) abi.Status {
	b, _, st := in.buffer(abi.BufferType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	start, max := uint64(uint32(s[1])), uint64(uint32(s[2]))
	size := uint64(len(*b))
	if start > size {
		return abi.StatusBadArgument
	}
	end := min(start+max, size)
	return in.copyOut(ctx, (*b)[start:end], uint32(s[3]), uint32(s[4]))
}

// proxy_set_buffer_bytes(buffer_type, start, size, data_ptr, data_size):
// Envoy's three forms: start 0 drains size bytes (all of them when size
// covers the buffer) and prepends data; start at or past the end appends;
// anything else is BadArgument. Only HTTP bodies are writable.
func hostSetBufferBytes(_ context.Context, in *instance, s []uint64) abi.Status {
	b, writable, st := in.buffer(abi.BufferType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	if !writable {
		return abi.StatusBadArgument
	}
	start, length := uint64(uint32(s[1])), uint64(uint32(s[2]))
	data, ok := in.view(uint32(s[3]), uint32(s[4]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	cur := *b
	switch {
	case start == 0:
		drain := min(length, uint64(len(cur)))
		rest := cur[drain:]
		out := make([]byte, 0, len(data)+len(rest))
		out = append(out, data...)
		*b = append(out, rest...)
	case start >= uint64(len(cur)):
		*b = append(cur, data...)
	default:
		return abi.StatusBadArgument
	}
	if s := in.currentStream(); s != nil {
		s.bodyChanged = true
	}
	return abi.StatusOK
}
