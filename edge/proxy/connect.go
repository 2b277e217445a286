package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Connect handles CONNECT before next (the filter): CONNECT is refused
// unless Forward is on, the port is allowed, the host has no declared
// tools and is in the egress allowlist. The tunnel must carry TLS whose
// ClientHello names the same host (SNI), so that an allowed CONNECT
// cannot front for another name. Other methods go to next.
func (p *Proxy) Connect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			next.ServeHTTP(w, r)
			return
		}
		// The framing guard stops at a CONNECT head (what follows is a
		// tunnel): a refused CONNECT must end the connection, or later
		// requests on it would go unchecked.
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		if !p.cfg.Forward {
			p.refusals.Add(1)
			WriteError(w, http.StatusMethodNotAllowed, "connect_not_allowed", "this edge is a gateway, not a forward proxy")
			return
		}
		host, port, status, code, msg := p.connectTarget(r)
		if status != 0 {
			p.refusals.Add(1)
			p.cfg.Logger.Info("CONNECT refused", "host", r.Host, "code", code)
			WriteError(w, status, code, msg)
			return
		}
		if r.ProtoMajor == 1 {
			p.tunnelHTTP1(w, r, host, port)
			return
		}
		p.tunnelHTTP2(w, r, host, port)
	})
}

func (p *Proxy) tunnelHTTP1(w http.ResponseWriter, r *http.Request, host string, port int) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "internal", "tunnel not supported on this connection")
		return
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		return
	}
	// Bytes the server already buffered belong to the tunnel.
	var client io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		buffered, _ := brw.Reader.Peek(n)
		client = io.MultiReader(bytes.NewReader(append([]byte(nil), buffered...)), conn)
	}
	conn.SetReadDeadline(time.Now().Add(p.cfg.HelloTimeout))
	hello, err := p.readHello(client, host)
	if err != nil {
		p.refusals.Add(1)
		p.cfg.Logger.Warn("CONNECT tunnel closed before use", "host", host, "err", err)
		return
	}
	conn.SetReadDeadline(time.Time{})
	p.splice(host, port, hello, client, conn, func() {
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}, conn.SetReadDeadline)
}

func (p *Proxy) tunnelHTTP2(w http.ResponseWriter, r *http.Request, host string, port int) {
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	rc.SetReadDeadline(time.Now().Add(p.cfg.HelloTimeout))
	hello, err := p.readHello(r.Body, host)
	if err != nil {
		p.refusals.Add(1)
		p.cfg.Logger.Warn("CONNECT tunnel closed before use", "host", host, "err", err)
		return
	}
	rc.SetReadDeadline(time.Time{})
	p.splice(host, port, hello, r.Body, flushWriter{w, rc}, func() {}, rc.SetReadDeadline)
}

type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// splice dials the target, replays the ClientHello and copies both ways
// until either side ends or the tunnel carries nothing for
// TunnelIdleTimeout.
func (p *Proxy) splice(host string, port int, hello []byte, client io.Reader, toClient io.Writer,
	closeClientWrite func(), clientDeadline func(time.Time) error) {
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	up, err := d.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		p.cfg.Logger.Warn("CONNECT dial failed", "host", host, "err", err)
		return
	}
	defer up.Close()
	p.tunnels.Add(1)
	if _, err := up.Write(hello); err != nil {
		return
	}
	idle := p.cfg.TunnelIdleTimeout
	// Traffic in either direction keeps both sides open.
	touch := func() {
		t := time.Now().Add(idle)
		up.SetReadDeadline(t)
		clientDeadline(t)
	}
	touch()
	done := make(chan struct{})
	go func() {
		io.Copy(toClient, &idleReader{r: up, touch: touch})
		closeClientWrite()
		close(done)
	}()
	io.Copy(up, &idleReader{r: client, touch: touch})
	if tc, ok := up.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	<-done
}

// idleReader moves a read deadline forward after every read that got
// data.
type idleReader struct {
	r     io.Reader
	touch func()
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.touch()
	}
	return n, err
}

var errHelloRead = errors.New("ClientHello read")

// recordConn feeds a TLS server the client's bytes while keeping them,
// and swallows everything the server would write.
type recordConn struct {
	net.Conn
	r   io.Reader
	buf bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	if c.buf.Len() > 16<<10 {
		return 0, errors.New("ClientHello over 16 KiB")
	}
	n, err := c.r.Read(p)
	c.buf.Write(p[:n])
	return n, err
}
func (c *recordConn) Write(p []byte) (int, error)      { return 0, errHelloRead }
func (c *recordConn) Close() error                     { return nil }
func (c *recordConn) SetDeadline(time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }
func (c *recordConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *recordConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// readHello reads the client's TLS ClientHello with crypto/tls's own
// parser and checks its SNI against host. It returns the bytes read, to
// be replayed to the target.
func (p *Proxy) readHello(client io.Reader, host string) ([]byte, error) {
	rc := &recordConn{r: client}
	var sni string
	var sawHello bool
	srv := tls.Server(rc, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni, sawHello = h.ServerName, true
		return nil, errHelloRead
	}})
	err := srv.Handshake()
	if !sawHello {
		return nil, errors.Join(errors.New("the tunnel does not start with a TLS ClientHello"), err)
	}
	if !strings.EqualFold(strings.TrimSuffix(sni, "."), host) {
		return nil, errors.New("TLS SNI " + strconvQuote(sni) + " differs from the CONNECT host " + host)
	}
	return rc.buf.Bytes(), nil
}

func strconvQuote(s string) string { return strconv.Quote(s) }
