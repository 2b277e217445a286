package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// rejectHeader marks the request a guarded connection synthesizes after a
// framing violation. The framer refuses it in client heads, so only the
// guard can produce it.
const rejectHeader = "x-aegis-framing-violation"

// GuardListener wraps l so that every accepted connection's HTTP/1.1
// framing is checked before net/http parses it (see framer). A violation
// ends the connection: the server receives, instead of the offending head,
// one synthesized request that RejectHandler answers with 400 and closes.
func GuardListener(l net.Listener, maxHeadBytes int) net.Listener {
	if maxHeadBytes <= 0 {
		maxHeadBytes = 64 << 10
	}
	return &guardListener{Listener: l, maxHead: maxHeadBytes}
}

type guardListener struct {
	net.Listener
	maxHead int
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, f: framer{maxHead: l.maxHead}}, nil
}

// guardConn is a connection whose reads pass through a framer.
type guardConn struct {
	net.Conn
	mu      sync.Mutex
	f       framer
	pending []byte // released bytes not yet returned
	buf     []byte
	final   bool // after pending: no more client bytes
	v       *Violation
	// seen publishes v to handlers without c.mu, which a blocked Read
	// holds.
	seen atomic.Pointer[Violation]
}

func (c *guardConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) == 0 {
		if c.final {
			if c.f.state != stateHead {
				// A bad body: the handler reading it gets the violation.
				return 0, c.v
			}
			// After the synthesized request the server answers and
			// closes. Until then this side must look like a quiet client:
			// an EOF now would cancel the request still being answered
			// (net/http treats it as the client going away).
			return c.drain()
		}
		if cap(c.buf) == 0 {
			c.buf = make([]byte, 32<<10)
		}
		n, err := c.Conn.Read(c.buf[:cap(c.buf)])
		if n > 0 {
			out, v := c.f.feed(c.buf[:n], c.pending[:0])
			c.pending = out
			if v != nil {
				c.v = v
				c.seen.Store(v)
				c.final = true
				if c.f.state == stateHead {
					// A bad head: the server gets a request that
					// RejectFraming answers. A bad body ends the
					// stream instead; the handler reading the body sees
					// an error and asks BodyViolation.
					c.pending = append(c.pending, synthesized(v)...)
				}
			}
		}
		if err != nil {
			if len(c.pending) > 0 {
				break
			}
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// drain discards what the client still sends until the connection ends.
// It runs with c.mu held: nothing else reads a finished connection.
func (c *guardConn) drain() (int, error) {
	for {
		if _, err := c.Conn.Read(c.buf[:cap(c.buf)]); err != nil {
			return 0, err
		}
	}
}

// synthesized is the request the server reads after a violation.
func synthesized(v *Violation) []byte {
	return fmt.Appendf(nil, "GET / HTTP/1.1\r\nHost: aegis-edge\r\n%s: %s\r\nConnection: close\r\n\r\n", rejectHeader, v.Code)
}

// CloseWrite half-closes the underlying TCP connection (CONNECT tunnels).
func (c *guardConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// violation returns the connection's violation, if any.
func (c *guardConn) violation() *Violation { return c.seen.Load() }

type connKey struct{}

// ConnContext is the http.Server ConnContext hook that lets handlers find
// the guard of their connection.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if gc, ok := c.(*guardConn); ok {
		return context.WithValue(ctx, connKey{}, gc)
	}
	return ctx
}

// FramingViolation returns the framing violation of the request's
// connection when r is the request synthesized for it.
func FramingViolation(r *http.Request) *Violation {
	if r.Header.Get(rejectHeader) == "" {
		return nil
	}
	gc, ok := r.Context().Value(connKey{}).(*guardConn)
	if !ok {
		return nil
	}
	return gc.violation()
}

// ConnViolation returns the framing violation recorded on r's connection,
// for handlers whose body read failed.
func ConnViolation(r *http.Request) *Violation {
	gc, ok := r.Context().Value(connKey{}).(*guardConn)
	if !ok {
		return nil
	}
	return gc.violation()
}

// RejectFraming answers requests synthesized after a framing violation
// with the violation (JSON, Connection: close) and passes the rest to
// next. Put it first in the chain.
func RejectFraming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(rejectHeader) != "" {
			v := FramingViolation(r)
			if v == nil {
				// Only the guard sets the header, and the framer refuses
				// it from clients; without a guard it is refused too.
				v = violation("bad_request", "reserved header %s", rejectHeader)
			}
			w.Header().Set("Connection", "close")
			WriteError(w, v.Status, v.Code, v.Message)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// WriteError writes the edge's JSON error body.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%s,"message":%s}`+"\n", jsonString(code), jsonString(msg))
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
