package wasmhost

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/pairs"
)

type streamPhase uint8

const (
	phaseRequest streamPhase = iota
	phaseResponse
	phaseDone
)

// stream is one HTTP request on an instance: the maps and buffers the
// filter reads and writes, and what it asked for (local reply, resume,
// close). Fields are guarded by the instance's mu.
type stream struct {
	id     uint32
	req    *http.Request
	scheme string
	start  time.Time
	phase  streamPhase

	reqHeaders, reqTrailers, respHeaders, respTrailers []pairs.KV
	reqBody, respBody                                  []byte
	bodyChanged                                        bool

	local   *localReply
	resumed [2]bool // continue_stream for request, response
	closed  bool    // close_stream
	wake    chan struct{}

	state     map[string][]byte
	status    int
	reqBytes  int
	respBytes int
}

type localReply struct {
	status  int
	details string
	headers []pairs.KV
	body    []byte
}

// wakeup tells a request waiting on a paused stream to look again.
func (s *stream) wakeup() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// proxy_send_local_response(status, details_ptr, details_size, body_ptr,
// body_size, headers_ptr, headers_size, grpc_status): the stream is
// answered by the filter and goes no further. BadArgument outside a stream
// or for a malformed header map.
func hostSendLocalResponse(_ context.Context, in *instance, s []uint64) abi.Status {
	st := in.currentStream()
	if st == nil {
		return abi.StatusBadArgument
	}
	details, ok1 := in.str(uint32(s[1]), uint32(s[2]))
	body, ok2 := in.view(uint32(s[3]), uint32(s[4]))
	hb, ok3 := in.view(uint32(s[5]), uint32(s[6]))
	if !ok1 || !ok2 || !ok3 {
		return abi.StatusInvalidMemoryAccess
	}
	hs, err := pairs.Decode(nil, hb)
	if err != nil {
		return abi.StatusBadArgument
	}
	code := int(uint32(s[0]))
	if code < 200 || code > 599 {
		return abi.StatusBadArgument
	}
	for i := range hs {
		hs[i].Key = lowerKey(hs[i].Key)
	}
	st.local = &localReply{status: code, details: details, headers: hs, body: append([]byte(nil), body...)}
	st.wakeup()
	return abi.StatusOK
}

// proxy_continue_stream(stream_type): resumes a paused request or
// response. Unimplemented for TCP streams, BadArgument outside an HTTP
// stream.
func hostContinueStream(_ context.Context, in *instance, s []uint64) abi.Status {
	st := in.currentStream()
	switch t := abi.StreamType(uint32(s[0])); {
	case t > abi.StreamUpstream:
		return abi.StatusBadArgument
	case t > abi.StreamResponse:
		return abi.StatusUnimplemented
	case st == nil:
		return abi.StatusBadArgument
	default:
		st.resumed[t] = true
		st.wakeup()
		return abi.StatusOK
	}
}

// proxy_close_stream(stream_type): resets the stream; the client's
// connection is dropped (Envoy resets it).
func hostCloseStream(_ context.Context, in *instance, s []uint64) abi.Status {
	st := in.currentStream()
	switch t := abi.StreamType(uint32(s[0])); {
	case t > abi.StreamUpstream:
		return abi.StatusBadArgument
	case t > abi.StreamResponse:
		return abi.StatusUnimplemented
	case st == nil:
		return abi.StatusBadArgument
	default:
		st.closed = true
		st.wakeup()
		return abi.StatusOK
	}
}

// requestHeaders builds the request header map as Envoy presents it:
// pseudo-headers first, then every header lower-cased (sorted by name:
// net/http does not keep the wire order), values in received order.
func requestHeaders(dst []pairs.KV, r *http.Request, scheme string) []pairs.KV {
	dst = append(dst,
		pairs.KV{Key: ":authority", Value: r.Host},
		pairs.KV{Key: ":path", Value: requestPath(r)},
		pairs.KV{Key: ":method", Value: r.Method},
		pairs.KV{Key: ":scheme", Value: scheme},
	)
	dst = appendHeader(dst, r.Header)
	if len(r.TransferEncoding) > 0 && r.Header.Get("Transfer-Encoding") == "" {
		dst = append(dst, pairs.KV{Key: "transfer-encoding", Value: strings.Join(r.TransferEncoding, ", ")})
	}
	return dst
}

// requestPath is :path as Envoy sets it: the origin-form target; an
// absolute-form target (a forward-proxy request) is reduced to its path
// and query, its host going to :authority.
func requestPath(r *http.Request) string {
	p := r.RequestURI
	if p == "*" || (p != "" && p[0] == '/') {
		return p
	}
	return r.URL.RequestURI()
}

// appendHeader appends h lower-cased and sorted by name.
func appendHeader(dst []pairs.KV, h http.Header) []pairs.KV {
	if len(h) == 0 {
		return dst
	}
	var small [32]string
	keys := small[:0]
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue // announced trailers, not headers
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := lowerKey(k)
		for _, v := range h[k] {
			dst = append(dst, pairs.KV{Key: lk, Value: v})
		}
	}
	return dst
}

// toHeader turns a map back into an http.Header, leaving out
// pseudo-headers and hop-by-hop framing the server computes itself.
func toHeader(kvs []pairs.KV) http.Header {
	h := make(http.Header, len(kvs))
	for _, kv := range kvs {
		if strings.HasPrefix(kv.Key, ":") {
			continue
		}
		switch kv.Key {
		case "content-length", "transfer-encoding":
			continue
		}
		ck := http.CanonicalHeaderKey(kv.Key)
		h[ck] = append(h[ck], kv.Value)
	}
	return h
}

// value returns the first value of key.
func value(kvs []pairs.KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}
