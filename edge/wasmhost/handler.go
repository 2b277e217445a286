package wasmhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/pairs"
)

// StreamInfo is what the embedder learns about a request after the
// handler returns (for access logs): the filter state the filter wrote
// with proxy_set_property (the Aegis filter writes "aegis.decision"),
// whether the filter answered, and why a request failed closed.
type StreamInfo struct {
	FilterState map[string][]byte
	LocalReply  bool   // the filter answered with proxy_send_local_response
	Status      int    // status sent downstream (0: connection reset)
	Failure     string // "" or why the host failed the request closed
	Instance    uint64 // VM instance that served the request
}

type streamInfoKey struct{}

// WithStreamInfo returns a context for a request to Pool.Handler and the
// StreamInfo the handler fills in.
func WithStreamInfo(ctx context.Context) (context.Context, *StreamInfo) {
	info := &StreamInfo{}
	return context.WithValue(ctx, streamInfoKey{}, info), info
}

// Failure reasons in StreamInfo.Failure, also the "message" prefix of the
// JSON reply.
const (
	FailureTrap        = "filter trapped"
	FailureTimeout     = "request timed out in the filter"
	FailureUnavailable = "no filter instance available"
	FailureBodyTooBig  = "body larger than the host buffer limit"
	FailureBadRequest  = "request body could not be read"
)

// chunkSize is the largest body piece read from the client per callback.
const chunkSize = 32 << 10

// cleanupTimeout bounds the end-of-stream callbacks of a request that
// already timed out.
const cleanupTimeout = time.Second

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// Handler runs every request through a VM instance as Envoy's HTTP filter
// chain would, and forwards what the filter lets through to next (with
// its header and body changes); next's response goes back through the
// filter. Requests wait for a free instance up to RequestTimeout.
func (p *Pool) Handler(next http.Handler) http.Handler { return &handler{p: p, next: next} }

type handler struct {
	p    *Pool
	next http.Handler
}

// server is one request's run through an instance.
type server struct {
	p    *Pool
	in   *instance
	s    *stream
	w    http.ResponseWriter
	r    *http.Request
	ctx  context.Context
	info *StreamInfo

	expired atomic.Bool
	ended   atomic.Bool // finish ran: the instance may serve another request
	replied bool        // a complete response was written by the host or filter
	abort   bool        // reset the client connection
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := h.p
	info, _ := r.Context().Value(streamInfoKey{}).(*StreamInfo)
	if info == nil {
		info = &StreamInfo{}
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.RequestTimeout)
	defer cancel()
	in, err := p.acquire(ctx)
	if err != nil {
		p.log.Warn("request refused", "error", err)
		info.Failure = FailureUnavailable
		info.Status = http.StatusServiceUnavailable
		writeFailure(w, http.StatusServiceUnavailable, FailureUnavailable)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	sv := &server{p: p, in: in, w: w, r: r, ctx: ctx, info: info, s: in.newStream(r, scheme)}
	info.Instance = in.id
	timer := time.AfterFunc(p.cfg.RequestTimeout, sv.expire)
	defer func() {
		rec := recover()
		timer.Stop()
		sv.finish()
		p.release(in)
		if rec != nil {
			if rec == http.ErrAbortHandler && sv.replied {
				// The filter replaced the upstream's response; the
				// upstream copy was cut short on purpose.
				return
			}
			panic(rec)
		}
		if sv.abort {
			panic(http.ErrAbortHandler)
		}
	}()
	sv.serve(h.next)
}

// expire stops a request at its deadline: a guest still running is
// interrupted by closing its module (the instance is then replaced); a
// request waiting on a paused stream is woken and failed.
func (sv *server) expire() {
	if sv.ended.Load() {
		return
	}
	sv.expired.Store(true)
	in := sv.in
	if in.running.Load() {
		in.kill()
	}
	// The instance's channel, not the stream's field: the stream may be
	// recycled concurrently once the request ends.
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// kill marks the instance timed out and broken, and interrupts the guest
// when the module was compiled interruptible; otherwise the guest's
// current call finishes and nothing more runs on the instance.
func (in *instance) kill() {
	in.timedOut.Store(true)
	in.broken.Store(true)
	if in.pool.mod.interruptible {
		_ = in.mod.CloseWithExitCode(context.Background(), exitTimeout)
	}
}

func (sv *server) serve(next http.Handler) {
	in, s, r := sv.in, sv.s, sv.r
	in.mu.Lock()
	s.id = in.newContextID()
	in.stream = s
	_, err := in.call(in.fn.onContextCreate, s.id, uint64(s.id), rootContextID)
	in.mu.Unlock()
	if err != nil {
		sv.fail(err)
		return
	}

	s.reqHeaders = requestHeaders(s.reqHeaders, r, s.scheme)
	eos := r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && len(r.TransferEncoding) == 0)
	act, err := sv.guest(in.fn.onReqHeaders, uint64(len(s.reqHeaders)), b2u(eos))
	if sv.over(err) {
		return
	}
	paused := act == abi.ActionPause
	var out []byte
	if !eos {
		var ok bool
		if paused, out, ok = sv.requestBody(paused); !ok {
			return
		}
	}
	if paused && !sv.resumed(abi.StreamRequest) {
		if !sv.waitResume(abi.StreamRequest) {
			return
		}
	}
	in.mu.Lock()
	out = append(out, s.reqBody...)
	s.reqBody = s.reqBody[:0]
	in.mu.Unlock()

	outReq, err := sv.outbound(out)
	if err != nil {
		sv.p.log.Error("filter produced an unusable request", "error", err)
		sv.failWith(http.StatusInternalServerError, "filter produced an invalid request")
		return
	}
	rw := &respWriter{sv: sv, w: sv.w, h: http.Header{}}
	next.ServeHTTP(rw, outReq)
	rw.finish()
}

// requestBody delivers the body to the filter chunk by chunk with Envoy's
// buffering: while the filter pauses, chunks accumulate and bodySize is
// everything buffered; a continue releases the buffer. It reads one chunk
// ahead, so end of stream is known when the last chunk is delivered.
func (sv *server) requestBody(paused bool) (bool, []byte, bool) {
	in, s, r := sv.in, sv.s, sv.r
	bufA, bufB := chunkPool.Get().(*[]byte), chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufA)
	defer chunkPool.Put(bufB)
	cur, ahead := *bufA, *bufB
	var out []byte
	deliver := func(chunk []byte, eos bool) bool {
		if len(out)+len(s.reqBody)+len(chunk) > sv.p.cfg.MaxBodyBytes {
			sv.info.Failure = FailureBodyTooBig
			sv.failWith(http.StatusRequestEntityTooLarge, FailureBodyTooBig)
			return false
		}
		in.mu.Lock()
		s.reqBody = append(s.reqBody, chunk...)
		s.reqBytes += len(chunk)
		size := len(s.reqBody)
		in.mu.Unlock()
		act, err := sv.guest(in.fn.onReqBody, uint64(size), b2u(eos))
		if sv.over(err) {
			return false
		}
		if act == abi.ActionContinue || sv.resumed(abi.StreamRequest) {
			in.mu.Lock()
			out = append(out, s.reqBody...)
			s.reqBody = s.reqBody[:0]
			in.mu.Unlock()
			paused = false
		} else {
			paused = true
		}
		return true
	}
	n, err := readSome(r.Body, cur)
	for {
		if err != nil && err != io.EOF {
			sv.info.Failure = FailureBadRequest
			sv.failWith(http.StatusBadRequest, FailureBadRequest)
			return paused, out, false
		}
		if err == io.EOF {
			// The last chunk (possibly empty, as Envoy's end-of-stream
			// data frame).
			if !deliver(cur[:n], !hasTrailers(r)) {
				return paused, out, false
			}
			break
		}
		n2, err2 := readSome(r.Body, ahead)
		last := n2 == 0 && err2 == io.EOF
		if !deliver(cur[:n], last && !hasTrailers(r)) {
			return paused, out, false
		}
		if last {
			break
		}
		cur, ahead = ahead, cur
		n, err = n2, err2
	}
	if hasTrailers(r) {
		in.mu.Lock()
		s.reqTrailers = appendHeader(s.reqTrailers[:0], r.Trailer)
		n := len(s.reqTrailers)
		in.mu.Unlock()
		act, err := sv.guest(in.fn.onReqTrailers, uint64(n))
		if sv.over(err) {
			return paused, out, false
		}
		paused = act == abi.ActionPause && !sv.resumed(abi.StreamRequest)
	}
	return paused, out, true
}

// readSome reads until it has bytes or an error.
func readSome(r io.Reader, b []byte) (int, error) {
	for {
		n, err := r.Read(b)
		if n > 0 {
			if err == io.EOF {
				// Deliver the bytes now; the next Read reports EOF again.
				return n, nil
			}
			return n, err
		}
		if err != nil {
			return 0, err
		}
	}
}

func hasTrailers(r *http.Request) bool {
	for _, v := range r.Trailer {
		if len(v) > 0 {
			return true
		}
	}
	return false
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// guest runs one stream callback.
func (sv *server) guest(f api.Function, args ...uint64) (abi.Action, error) {
	if sv.expired.Load() {
		return 0, errTimeout
	}
	in := sv.in
	in.mu.Lock()
	var buf [4]uint64
	buf[0] = uint64(sv.s.id)
	n := 1 + copy(buf[1:], args)
	r, err := in.call(f, sv.s.id, buf[:n]...)
	in.mu.Unlock()
	return abi.Action(uint32(r)), err
}

// resumed reports (and consumes) a proxy_continue_stream for dir.
func (sv *server) resumed(dir abi.StreamType) bool {
	sv.in.mu.Lock()
	defer sv.in.mu.Unlock()
	ok := sv.s.resumed[dir]
	sv.s.resumed[dir] = false
	return ok
}

// over reports whether the request ended after a callback: the guest
// failed, answered locally, or closed the stream.
func (sv *server) over(err error) bool {
	if err != nil {
		sv.fail(err)
		return true
	}
	sv.in.mu.Lock()
	local, closed := sv.s.local, sv.s.closed
	sv.in.mu.Unlock()
	switch {
	case local != nil:
		sv.sendLocal(local)
		return true
	case closed:
		sv.abort = true
		return true
	}
	return false
}

// waitResume waits while a stream is paused: for proxy_continue_stream, a
// local reply, close_stream, a failure, or the deadline.
func (sv *server) waitResume(dir abi.StreamType) bool {
	for {
		if sv.in.broken.Load() {
			sv.fail(errBroken)
			return false
		}
		if sv.over(nil) {
			return false
		}
		if sv.resumed(dir) {
			return true
		}
		if sv.expired.Load() {
			sv.fail(errTimeout)
			return false
		}
		select {
		case <-sv.s.wake:
		case <-sv.ctx.Done():
			sv.expired.Store(true)
		}
	}
}

// fail fails the request closed after a guest error.
func (sv *server) fail(err error) {
	if errors.Is(err, errTimeout) || sv.expired.Load() {
		sv.p.timeouts.Add(1)
		sv.info.Failure = FailureTimeout
		sv.failWith(http.StatusServiceUnavailable, FailureTimeout)
		return
	}
	if errors.Is(err, errTrap) {
		sv.p.traps.Add(1)
	}
	sv.p.log.Error("filter failed; request failed closed", "vm", sv.in.id, "error", err)
	sv.info.Failure = FailureTrap
	sv.failWith(http.StatusInternalServerError, FailureTrap)
}

// failWith answers with the JSON failure reply, or resets the connection
// when the response has already started.
func (sv *server) failWith(status int, msg string) {
	if sv.replied || sv.info.Status != 0 {
		sv.abort = true
		return
	}
	sv.replied = true
	sv.info.Status = status
	writeFailure(sv.w, status, msg)
}

func writeFailure(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{"filter_failure", msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// sendLocal writes the filter's local reply, unless the response already
// started (then the connection is reset, as Envoy does).
func (sv *server) sendLocal(l *localReply) {
	sv.info.LocalReply = true
	if sv.replied || sv.info.Status != 0 {
		sv.abort = true
		return
	}
	h := sv.w.Header()
	for k := range h {
		delete(h, k)
	}
	for _, kv := range l.headers {
		if len(kv.Key) == 0 || kv.Key[0] == ':' || kv.Key == "content-length" || kv.Key == "transfer-encoding" {
			continue
		}
		ck := http.CanonicalHeaderKey(kv.Key)
		h[ck] = append(h[ck], kv.Value)
	}
	if len(l.body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(l.body)))
	sv.replied = true
	sv.info.Status = l.status
	sv.w.WriteHeader(l.status)
	_, _ = sv.w.Write(l.body)
}

// outbound is the request next sees: the filter's header map (pseudo
// headers become method, path and host) and the body it let through, with
// Content-Length recomputed.
func (sv *server) outbound(body []byte) (*http.Request, error) {
	r, s := sv.r, sv.s
	out := r.WithContext(sv.ctx)
	sv.in.mu.Lock()
	hs := s.reqHeaders
	method, _ := value(hs, ":method")
	path, _ := value(hs, ":path")
	authority, _ := value(hs, ":authority")
	out.Header = toHeader(hs)
	if len(s.reqTrailers) > 0 {
		out.Trailer = toHeader(s.reqTrailers)
	} else {
		out.Trailer = nil
	}
	sv.in.mu.Unlock()
	if method == "" || path == "" {
		return nil, errors.New(":method or :path removed")
	}
	out.Method = method
	if path != requestPath(r) {
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return nil, err
		}
		out.URL = u
		out.RequestURI = path
	}
	out.Host = authority
	out.ContentLength = int64(len(body))
	out.TransferEncoding = nil
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
	} else {
		out.Body = http.NoBody
	}
	return out, nil
}

// finish ends the stream in the filter (proxy_on_done, proxy_on_log,
// proxy_on_delete) and hands its filter state to the embedder.
func (sv *server) finish() {
	in, s := sv.in, sv.s
	if sv.expired.Load() {
		guard := time.AfterFunc(cleanupTimeout, func() {
			if in.running.Load() {
				in.kill()
			}
		})
		defer guard.Stop()
	}
	// From here the deadline timer no longer acts: the instance may soon
	// serve another request.
	sv.ended.Store(true)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stream != s {
		return
	}
	s.phase = phaseDone
	if s.id != 0 && !in.broken.Load() {
		for _, f := range []api.Function{in.fn.onDone, in.fn.onLog, in.fn.onDelete} {
			if _, err := in.call(f, s.id, uint64(s.id)); err != nil {
				sv.p.guestFailed(in, "stream end", err)
				break
			}
		}
	}
	in.stream = nil
	sv.info.FilterState = s.state
	in.recycle(s)
}

// newStream returns a stream for r, reusing the buffers of the instance's
// previous one.
func (in *instance) newStream(r *http.Request, scheme string) *stream {
	s := in.spare
	in.spare = nil
	if s == nil {
		s = &stream{}
	}
	select {
	case <-in.wake: // a stale wakeup from the previous request
	default:
	}
	s.req, s.scheme, s.start, s.wake = r, scheme, time.Now(), in.wake
	return s
}

// recycle keeps a finished stream's buffers for the next request; the
// filter state map went to the embedder and is not reused.
func (in *instance) recycle(s *stream) {
	*s = stream{
		reqHeaders: s.reqHeaders[:0], reqTrailers: s.reqTrailers[:0],
		respHeaders: s.respHeaders[:0], respTrailers: s.respTrailers[:0],
		reqBody: s.reqBody[:0], respBody: s.respBody[:0],
	}
	in.spare = s
}

// respWriter is the ResponseWriter next writes to: it runs the response
// through the filter before anything reaches the client.
type respWriter struct {
	sv         *server
	w          http.ResponseWriter
	h          http.Header
	status     int
	headersRun bool
	sent       bool
	paused     bool
	done       bool
	sawBody    bool // the upstream wrote body bytes
}

var errStreamStopped = errors.New("wasmhost: the filter stopped the stream")

func (rw *respWriter) Header() http.Header { return rw.h }

func (rw *respWriter) WriteHeader(code int) {
	if rw.status != 0 || code < 200 {
		// 1xx informational responses are not forwarded.
		return
	}
	rw.status = code
}

func (rw *respWriter) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.done {
		return 0, errStreamStopped
	}
	if !rw.headersRun && !rw.runHeaders(false) {
		return 0, errStreamStopped
	}
	if len(b) == 0 {
		return 0, nil
	}
	if !rw.runBody(b, false) {
		return 0, errStreamStopped
	}
	return len(b), nil
}

// Flush sends the response headers through the filter (an event stream
// flushes before its first event) and flushes what the filter released.
func (rw *respWriter) Flush() {
	if rw.status == 0 || rw.done {
		return
	}
	if !rw.headersRun && !rw.runHeaders(false) {
		return
	}
	if rw.sent {
		if f, ok := rw.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (rw *respWriter) Unwrap() http.ResponseWriter { return rw.w }

func (rw *respWriter) stop() {
	rw.done = true
}

func (rw *respWriter) trailers() http.Header {
	var t http.Header
	for k, v := range rw.h {
		if len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
			if t == nil {
				t = http.Header{}
			}
			t[http.CanonicalHeaderKey(k[len(http.TrailerPrefix):])] = v
		}
	}
	for _, decl := range rw.h.Values("Trailer") {
		for _, k := range splitComma(decl) {
			if v := rw.h.Values(k); len(v) > 0 {
				if t == nil {
					t = http.Header{}
				}
				t[http.CanonicalHeaderKey(k)] = v
			}
		}
	}
	return t
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			part := bytes.TrimSpace([]byte(s[start:i]))
			if len(part) > 0 {
				out = append(out, string(part))
			}
			start = i + 1
		}
	}
	return out
}

// finish runs after next returned: end of stream for the filter, then
// whatever it still holds is released (after a continue if paused).
func (rw *respWriter) finish() {
	sv := rw.sv
	if rw.done || sv.replied || sv.abort {
		return
	}
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	tr := rw.trailers()
	if !rw.headersRun {
		if !rw.runHeaders(len(tr) == 0) {
			return
		}
	} else if !rw.runBody(nil, len(tr) == 0) {
		return
	}
	if len(tr) > 0 {
		in, s := sv.in, sv.s
		in.mu.Lock()
		s.respTrailers = appendHeader(s.respTrailers[:0], tr)
		n := len(s.respTrailers)
		in.mu.Unlock()
		act, err := sv.guest(in.fn.onRespTr, uint64(n))
		if sv.over(err) {
			rw.stop()
			return
		}
		if act == abi.ActionPause && !sv.resumed(abi.StreamResponse) {
			rw.paused = true
		}
	}
	if rw.paused {
		if !sv.waitResume(abi.StreamResponse) {
			rw.stop()
			return
		}
		rw.paused = false
	}
	if !rw.sent {
		rw.sendHeaders(true)
	}
	rw.writeBody()
	if len(tr) > 0 {
		sv.in.mu.Lock()
		for _, kv := range sv.s.respTrailers {
			rw.w.Header().Add(http.TrailerPrefix+kv.Key, kv.Value)
		}
		sv.in.mu.Unlock()
	}
	sv.replied = true
}

func (rw *respWriter) runHeaders(eos bool) bool {
	sv := rw.sv
	in, s := sv.in, sv.s
	in.mu.Lock()
	s.phase = phaseResponse
	s.status = rw.status
	s.respHeaders = append(s.respHeaders[:0], pairs.KV{Key: ":status", Value: strconv.Itoa(rw.status)})
	s.respHeaders = appendHeader(s.respHeaders, rw.h)
	n := len(s.respHeaders)
	in.mu.Unlock()
	act, err := sv.guest(in.fn.onRespHeaders, uint64(n), b2u(eos))
	if sv.over(err) {
		rw.stop()
		return false
	}
	rw.headersRun = true
	if act == abi.ActionContinue || sv.resumed(abi.StreamResponse) {
		if !eos {
			rw.sendHeaders(false)
		}
	} else {
		rw.paused = true
	}
	return true
}

func (rw *respWriter) runBody(b []byte, eos bool) bool {
	sv := rw.sv
	in, s := sv.in, sv.s
	in.mu.Lock()
	if rw.paused && len(s.respBody)+len(b) > sv.p.cfg.MaxBodyBytes {
		in.mu.Unlock()
		sv.info.Failure = FailureBodyTooBig
		sv.failWith(http.StatusBadGateway, FailureBodyTooBig)
		rw.stop()
		return false
	}
	s.respBody = append(s.respBody, b...)
	s.respBytes += len(b)
	if len(b) > 0 {
		rw.sawBody = true
	}
	size := len(s.respBody)
	in.mu.Unlock()
	act, err := sv.guest(in.fn.onRespBody, uint64(size), b2u(eos))
	if sv.over(err) {
		rw.stop()
		return false
	}
	if act == abi.ActionContinue || sv.resumed(abi.StreamResponse) {
		rw.paused = false
		if eos {
			// finish sends headers and body together, with the length.
			return true
		}
		if !rw.sent {
			rw.sendHeaders(false)
		}
		rw.writeBody()
	} else {
		rw.paused = true
	}
	return true
}

// sendHeaders writes the filter's response header map downstream. When
// the whole body is known (complete) and the filter changed it,
// Content-Length is recomputed; a streamed body keeps the upstream's
// framing unless the filter removed the length.
func (rw *respWriter) sendHeaders(complete bool) {
	sv := rw.sv
	in, s := sv.in, sv.s
	in.mu.Lock()
	dst := rw.w.Header()
	status := rw.status
	// The length is recomputed when the whole body is known and went
	// through the filter; a body-less response (HEAD, 204, 304) keeps the
	// upstream's header.
	recompute := complete && (s.bodyChanged || rw.sawBody)
	for _, kv := range s.respHeaders {
		if kv.Key == ":status" {
			if n, err := strconv.Atoi(kv.Value); err == nil && n >= 200 && n <= 599 {
				status = n
			}
			continue
		}
		if len(kv.Key) == 0 || kv.Key[0] == ':' {
			continue
		}
		if kv.Key == "content-length" && recompute {
			continue
		}
		ck := http.CanonicalHeaderKey(kv.Key)
		dst[ck] = append(dst[ck], kv.Value)
	}
	if recompute {
		dst.Set("Content-Length", strconv.Itoa(len(s.respBody)))
	}
	in.mu.Unlock()
	rw.sent = true
	sv.info.Status = status
	rw.w.WriteHeader(status)
}

// writeBody writes what the filter released and empties the buffer.
func (rw *respWriter) writeBody() {
	sv := rw.sv
	sv.in.mu.Lock()
	body := sv.s.respBody
	sv.in.mu.Unlock()
	if len(body) > 0 {
		_, _ = rw.w.Write(body)
	}
	sv.in.mu.Lock()
	sv.s.respBody = sv.s.respBody[:0]
	sv.in.mu.Unlock()
}
