// Package pairs encodes and decodes proxy-wasm header maps: a little-endian
// uint32 count, then a (key length, value length) uint32 pair per entry,
// then every key and value each followed by a NUL byte.
package pairs

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// KV is one header entry.
type KV struct{ Key, Value string }

// ErrMalformed is wrapped by Decode for input that is not a header map.
var ErrMalformed = errors.New("malformed header map")

// Size is the encoded size of kvs.
func Size(kvs []KV) int {
	n := 4
	for _, kv := range kvs {
		n += 8 + len(kv.Key) + len(kv.Value) + 2
	}
	return n
}

// Encode writes kvs into dst, which must be Size(kvs) bytes long; it does
// not allocate, so the host can encode straight into guest memory.
func Encode(dst []byte, kvs []KV) {
	binary.LittleEndian.PutUint32(dst, uint32(len(kvs)))
	lens := 4
	data := 4 + 8*len(kvs)
	for _, kv := range kvs {
		binary.LittleEndian.PutUint32(dst[lens:], uint32(len(kv.Key)))
		binary.LittleEndian.PutUint32(dst[lens+4:], uint32(len(kv.Value)))
		lens += 8
		data += copy(dst[data:], kv.Key)
		dst[data] = 0
		data++
		data += copy(dst[data:], kv.Value)
		dst[data] = 0
		data++
	}
}

// Decode parses an encoded map, appending to dst. Every length is checked
// against the input and every terminator must be NUL: the input comes from
// the guest and is not trusted. An empty input is an empty map.
func Decode(dst []KV, b []byte) ([]KV, error) {
	if len(b) == 0 {
		return dst, nil
	}
	if len(b) < 4 {
		return dst, fmt.Errorf("%w: %d bytes, no count", ErrMalformed, len(b))
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	if 4+8*n > uint64(len(b)) {
		return dst, fmt.Errorf("%w: %d entries do not fit in %d bytes", ErrMalformed, n, len(b))
	}
	lens := 4
	data := uint64(4 + 8*n)
	for range n {
		kl := uint64(binary.LittleEndian.Uint32(b[lens:]))
		vl := uint64(binary.LittleEndian.Uint32(b[lens+4:]))
		lens += 8
		if data+kl+1+vl+1 > uint64(len(b)) {
			return dst, fmt.Errorf("%w: entry overruns the input", ErrMalformed)
		}
		k := b[data : data+kl]
		if b[data+kl] != 0 {
			return dst, fmt.Errorf("%w: key not NUL-terminated", ErrMalformed)
		}
		data += kl + 1
		v := b[data : data+vl]
		if b[data+vl] != 0 {
			return dst, fmt.Errorf("%w: value not NUL-terminated", ErrMalformed)
		}
		data += vl + 1
		dst = append(dst, KV{Key: string(k), Value: string(v)})
	}
	if data != uint64(len(b)) {
		return dst, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, uint64(len(b))-data)
	}
	return dst, nil
}
