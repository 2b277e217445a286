package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/pairs"
)

// ClusterURL returns a cluster that sends every proxy_http_call to base
// (scheme and host; the call's :path is kept) through rt (nil:
// http.DefaultTransport). The :authority header still becomes Host.
func ClusterURL(base *url.URL, rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.URL.Scheme, r.URL.Host = base.Scheme, base.Host
		return rt.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// callout is an http_call in flight.
type callout struct {
	cancel context.CancelFunc
}

// calloutResponse is what proxy_on_http_call_response reads. A failed
// call (no cluster answer, timeout, oversized body) has no headers and no
// body, as in Envoy.
type calloutResponse struct {
	headers, trailers []pairs.KV
	body              []byte
	failed            bool
}

// defaultCalloutTimeout applies when the filter passes timeout 0.
const defaultCalloutTimeout = 30 * time.Second

// proxy_http_call(cluster_ptr, cluster_size, headers_ptr, headers_size,
// body_ptr, body_size, trailers_ptr, trailers_size, timeout_ms, token_ptr):
// an asynchronous request to a named cluster. BadArgument for an unknown
// cluster or missing :method, :path or :authority (Envoy's checks). The
// response arrives through proxy_on_http_call_response on the root
// context, when the instance is free.
func hostHTTPCall(_ context.Context, in *instance, s []uint64) abi.Status {
	cluster, ok1 := in.str(uint32(s[0]), uint32(s[1]))
	hb, ok2 := in.view(uint32(s[2]), uint32(s[3]))
	body, ok3 := in.view(uint32(s[4]), uint32(s[5]))
	tb, ok4 := in.view(uint32(s[6]), uint32(s[7]))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return abi.StatusInvalidMemoryAccess
	}
	headers, err := pairs.Decode(nil, hb)
	if err != nil {
		return abi.StatusBadArgument
	}
	trailers, err := pairs.Decode(nil, tb)
	if err != nil {
		return abi.StatusBadArgument
	}
	rt := in.pool.cfg.Clusters[cluster]
	if rt == nil {
		return abi.StatusBadArgument
	}
	req, err := calloutRequest(headers, trailers, body)
	if err != nil {
		return abi.StatusBadArgument
	}
	tokenPtr := uint32(s[9])
	in.nextToken++
	if in.nextToken == 0 {
		in.nextToken = 1
	}
	token := in.nextToken
	if !in.mem.WriteUint32Le(tokenPtr, token) {
		return abi.StatusInvalidMemoryAccess
	}
	timeout := time.Duration(uint32(s[8])) * time.Millisecond
	if timeout == 0 {
		timeout = defaultCalloutTimeout
	}
	ctx, cancel := context.WithTimeout(in.pool.ctx, timeout)
	in.callouts[token] = &callout{cancel: cancel}
	in.pool.calloutsStarted.Add(1)
	go func() {
		defer cancel()
		resp := in.pool.roundTrip(ctx, rt, req)
		in.pool.deliverCallout(in, token, resp)
	}()
	return abi.StatusOK
}

func calloutRequest(headers, trailers []pairs.KV, body []byte) (*http.Request, error) {
	var method, path, authority, scheme string
	h := http.Header{}
	for _, kv := range headers {
		switch strings.ToLower(kv.Key) {
		case ":method":
			method = kv.Value
		case ":path":
			path = kv.Value
		case ":authority", "host":
			authority = kv.Value
		case ":scheme":
			scheme = kv.Value
		default:
			if strings.HasPrefix(kv.Key, ":") {
				continue
			}
			h.Add(kv.Key, kv.Value)
		}
	}
	if method == "" || path == "" || authority == "" {
		return nil, errors.New("http_call needs :method, :path and :authority")
	}
	if scheme == "" {
		scheme = "http"
	}
	u, err := url.Parse(scheme + "://" + authority + path)
	if err != nil {
		return nil, err
	}
	req := &http.Request{
		Method: method, URL: u, Host: authority, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		ContentLength: int64(len(body)),
	}
	if len(body) > 0 {
		b := append([]byte(nil), body...)
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	if len(trailers) > 0 {
		req.Trailer = http.Header{}
		for _, kv := range trailers {
			req.Trailer.Add(kv.Key, kv.Value)
		}
	}
	return req, nil
}

// roundTrip runs one callout and reads its response, bounded by
// MaxBodyBytes; any failure becomes a failed response.
func (p *Pool) roundTrip(ctx context.Context, rt http.RoundTripper, req *http.Request) *calloutResponse {
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		p.log.Warn("http_call failed", "host", req.Host, "path", req.URL.Path, "error", err)
		return &calloutResponse{failed: true}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(p.cfg.MaxBodyBytes)+1))
	if err != nil || len(body) > p.cfg.MaxBodyBytes {
		if err == nil {
			err = fmt.Errorf("response body over %d bytes", p.cfg.MaxBodyBytes)
		}
		p.log.Warn("http_call response unreadable", "host", req.Host, "path", req.URL.Path, "error", err)
		return &calloutResponse{failed: true}
	}
	out := &calloutResponse{body: body}
	out.headers = append(out.headers, pairs.KV{Key: ":status", Value: fmt.Sprint(resp.StatusCode)})
	out.headers = appendHeader(out.headers, resp.Header)
	out.trailers = appendHeader(out.trailers, resp.Trailer)
	return out
}
