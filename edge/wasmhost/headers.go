package wasmhost

import (
	"context"
	"strings"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/pairs"
)

// headerMap returns the map a header call names, for the effective
// context: a stream's maps, or the http_call response being delivered.
// Keys are stored lower-case, as Envoy's header maps are.
func (in *instance) headerMap(mt abi.MapType) (*[]pairs.KV, abi.Status) {
	switch mt {
	case abi.MapHTTPCallResponse, abi.MapHTTPCallResponseTrlr:
		if in.response == nil {
			return nil, abi.StatusNotFound
		}
		if mt == abi.MapHTTPCallResponse {
			return &in.response.headers, abi.StatusOK
		}
		return &in.response.trailers, abi.StatusOK
	case abi.MapRequestHeaders, abi.MapRequestTrailers, abi.MapResponseHeaders, abi.MapResponseTrailers:
	default:
		return nil, abi.StatusBadArgument
	}
	s := in.currentStream()
	if s == nil {
		return nil, abi.StatusNotFound
	}
	var m *[]pairs.KV
	var present bool
	switch mt {
	case abi.MapRequestHeaders:
		m, present = &s.reqHeaders, true
	case abi.MapRequestTrailers:
		m, present = &s.reqTrailers, true
	case abi.MapResponseHeaders:
		m, present = &s.respHeaders, s.phase >= phaseResponse
	case abi.MapResponseTrailers:
		m, present = &s.respTrailers, s.phase >= phaseResponse
	}
	if !present {
		return nil, abi.StatusNotFound
	}
	return m, abi.StatusOK
}

// currentStream is the stream the effective context names, if any.
func (in *instance) currentStream() *stream {
	if s := in.stream; s != nil && s.id == in.effective {
		return s
	}
	return nil
}

// lowerKey returns k lower-cased, without allocating when it already is.
func lowerKey(k string) string {
	for i := 0; i < len(k); i++ {
		if c := k[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(k)
		}
	}
	return k
}

// proxy_get_header_map_value(map_type, key_ptr, key_size, value_ptr_ptr, value_size_ptr):
// the first value of key (Envoy returns only the first). NotFound when
// absent or when the map does not exist in this context.
func hostGetHeaderValue(ctx context.Context, in *instance, s []uint64) abi.Status {
	m, st := in.headerMap(abi.MapType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	key, ok := in.view(uint32(s[1]), uint32(s[2]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	for _, kv := range *m {
		if strings.EqualFold(kv.Key, string(key)) {
			return in.copyOutString(ctx, kv.Value, uint32(s[3]), uint32(s[4]))
		}
	}
	return abi.StatusNotFound
}

// proxy_add_header_map_value(map_type, key_ptr, key_size, value_ptr, value_size):
// appends an entry (an existing key gets a second value).
func hostAddHeaderValue(_ context.Context, in *instance, s []uint64) abi.Status {
	m, st := in.headerMap(abi.MapType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	key, ok1 := in.str(uint32(s[1]), uint32(s[2]))
	val, ok2 := in.str(uint32(s[3]), uint32(s[4]))
	if !ok1 || !ok2 {
		return abi.StatusInvalidMemoryAccess
	}
	*m = append(*m, pairs.KV{Key: lowerKey(key), Value: val})
	return abi.StatusOK
}

// proxy_replace_header_map_value(map_type, key_ptr, key_size, value_ptr, value_size):
// sets key to one value: the first entry is updated in place, later
// entries of the same key removed; a missing key is added.
func hostReplaceHeaderValue(_ context.Context, in *instance, s []uint64) abi.Status {
	m, st := in.headerMap(abi.MapType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	key, ok1 := in.str(uint32(s[1]), uint32(s[2]))
	val, ok2 := in.str(uint32(s[3]), uint32(s[4]))
	if !ok1 || !ok2 {
		return abi.StatusInvalidMemoryAccess
	}
	key = lowerKey(key)
	out := (*m)[:0]
	found := false
	for _, kv := range *m {
		if kv.Key == key {
			if found {
				continue
			}
			found = true
			kv.Value = val
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, pairs.KV{Key: key, Value: val})
	}
	*m = out
	return abi.StatusOK
}

// proxy_remove_header_map_value(map_type, key_ptr, key_size): removes
// every entry of key; removing an absent key is OK.
func hostRemoveHeaderValue(_ context.Context, in *instance, s []uint64) abi.Status {
	m, st := in.headerMap(abi.MapType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	key, ok := in.view(uint32(s[1]), uint32(s[2]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	out := (*m)[:0]
	for _, kv := range *m {
		if !strings.EqualFold(kv.Key, string(key)) {
			out = append(out, kv)
		}
	}
	clear((*m)[len(out):])
	*m = out
	return abi.StatusOK
}

// proxy_get_header_map_pairs(map_type, ptr_ptr, size_ptr): the whole map,
// encoded (see package pairs) directly in guest memory.
func hostGetHeaderPairs(ctx context.Context, in *instance, s []uint64) abi.Status {
	m, st := in.headerMap(abi.MapType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	return in.copyOutPairs(ctx, *m, uint32(s[1]), uint32(s[2]))
}

// proxy_set_header_map_pairs(map_type, ptr, size): replaces the whole map.
// A malformed encoding is BadArgument and leaves the map unchanged.
func hostSetHeaderPairs(_ context.Context, in *instance, s []uint64) abi.Status {
	m, st := in.headerMap(abi.MapType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	b, ok := in.view(uint32(s[1]), uint32(s[2]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	kvs, err := pairs.Decode(nil, b)
	if err != nil {
		return abi.StatusBadArgument
	}
	for i := range kvs {
		kvs[i].Key = lowerKey(kvs[i].Key)
	}
	*m = kvs
	return abi.StatusOK
}

// proxy_get_header_map_size(map_type, size_ptr): the encoded size of the
// map in bytes, as proxy-wasm-cpp-host reports it.
func hostGetHeaderMapSize(_ context.Context, in *instance, s []uint64) abi.Status {
	m, st := in.headerMap(abi.MapType(uint32(s[0])))
	if st != abi.StatusOK {
		return st
	}
	if !in.mem.WriteUint32Le(uint32(s[1]), uint32(pairs.Size(*m))) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}
