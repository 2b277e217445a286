package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// echo is an upstream that answers with what it received, and counts the
// requests whose bodies it read completely.
type echo struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

type echoed struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
	Proto  string      `json:"proto"`
}

func newEcho(t *testing.T, name string) *echo {
	t.Helper()
	e := &echo{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "body: "+err.Error(), 400)
			return
		}
		e.mu.Lock()
		e.paths = append(e.paths, r.URL.Path)
		e.mu.Unlock()
		w.Header().Set("X-Upstream", name)
		json.NewEncoder(w).Encode(echoed{r.Method, r.URL.Path, r.Host, r.Header, string(body), r.Proto})
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *echo) seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.paths...)
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// serve runs the proxy the way the edge does: guarded listener, framing
// rejection, CONNECT, then the proxy handler.
func serve(t *testing.T, cfg Config) (string, *Proxy) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           RejectFraming(p.Connect(p.Handler())),
		ConnContext:       ConnContext,
		Protocols:         &protos,
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(GuardListener(l, 0))
	t.Cleanup(func() { srv.Close(); p.Close() })
	return l.Addr().String(), p
}

// raw sends bytes on a fresh connection and returns every response read
// until the server closes or stops answering.
func raw(t *testing.T, addr, req string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
		if resp.Close {
			return out
		}
	}
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return string(b)
}

func TestFramingOnTheWire(t *testing.T) {
	up := newEcho(t, "a")
	addr, _ := serve(t, Config{Default: mustURL(t, up.URL)})

	for _, tc := range []struct {
		name string
		req  string
		// want lists the statuses of the responses, in order; the last
		// one carries wantCode when it is an error.
		want     []int
		wantCode string
		// upstream lists the paths the upstream must have seen.
		upstream []string
	}{
		{"plain", "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", []int{200}, "", []string{"/ok"}},
		{"content-length", "POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", []int{200}, "", []string{"/cl"}},
		{"chunked", "POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n", []int{200}, "", []string{"/ch"}},
		{"keep-alive pair", "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", []int{200, 200}, "", []string{"/1", "/2"}},
		{"CL and TE", "POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, "ambiguous_length", nil},
		{"TE and CL", "POST /smuggle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", []int{400}, "ambiguous_length", nil},
		{"two CL", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab", []int{400}, "ambiguous_length", nil},
		{"CL with sign", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na", []int{400}, "ambiguous_length", nil},
		{"TE list", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []int{400}, "ambiguous_length", nil},
		{"TE twice", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}, "ambiguous_length", nil},
		{"TE with space before colon", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", []int{400}, "bad_request", nil},
		{"TE in HTTP/1.0", "POST /x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}, "ambiguous_length", nil},
		{"obs-fold", "GET /x HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", []int{400}, "bad_request", nil},
		{"bare LF", "GET /x HTTP/1.1\nHost: x\n\n", []int{400}, "bad_request", nil},
		{"upgrade", "GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", []int{400}, "upgrade_not_supported", nil},
		{"reserved header", "GET /x HTTP/1.1\r\nHost: x\r\nX-Aegis-Framing-Violation: nothing\r\n\r\n", []int{400}, "bad_request", nil},
		{"bad chunk size", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", []int{400}, "bad_chunking", nil},
		{"chunk without CRLF", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", []int{400}, "bad_chunking", nil},
		{"chunk size with space", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", []int{400}, "bad_chunking", nil},
		{"CL shorter than body", "POST /short HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcdefgh\r\n\r\n", []int{200, 400}, "bad_request", []string{"/short"}},
		{"huge head", "GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", []int{431}, "header_too_large", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.seen())
			resps := raw(t, addr, tc.req)
			var got []int
			for _, r := range resps {
				got = append(got, r.StatusCode)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				for _, r := range resps {
					t.Log(bodyOf(r))
				}
				t.Fatalf("statuses %v, want %v", got, tc.want)
			}
			if tc.wantCode != "" {
				last := resps[len(resps)-1]
				var e struct{ Error string }
				if err := json.Unmarshal([]byte(bodyOf(last)), &e); err != nil || e.Error != tc.wantCode {
					t.Fatalf("error body %q, want code %s", bodyOf(last), tc.wantCode)
				}
			}
			seen := up.seen()[before:]
			if fmt.Sprint(seen) != fmt.Sprint(tc.upstream) {
				t.Fatalf("upstream saw %v, want %v", seen, tc.upstream)
			}
		})
	}
}

func TestHopByHopHeadersRemoved(t *testing.T) {
	up := newEcho(t, "a")
	addr, _ := serve(t, Config{Default: mustURL(t, up.URL)})
	resps := raw(t, addr, "GET /h HTTP/1.1\r\nHost: tool.example\r\nConnection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\n"+
		"Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n")
	if len(resps) != 1 || resps[0].StatusCode != 200 {
		t.Fatalf("responses %v", resps)
	}
	var e echoed
	if err := json.Unmarshal([]byte(bodyOf(resps[0])), &e); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"X-Secret-Hop", "Keep-Alive", "Proxy-Authorization"} {
		if _, ok := e.Header[h]; ok {
			t.Errorf("hop-by-hop header %s reached the upstream", h)
		}
	}
	if e.Header.Get("X-Kept") != "yes" || e.Host != "tool.example" {
		t.Errorf("end-to-end header or Host lost: %+v", e)
	}
}

func TestGatewayRoutesByHost(t *testing.T) {
	a, b := newEcho(t, "a"), newEcho(t, "b")
	addr, _ := serve(t, Config{Routes: map[string]*url.URL{"b.example": mustURL(t, b.URL)}, Default: mustURL(t, a.URL)})
	for _, tc := range []struct{ host, want string }{
		{"b.example", "b"}, {"B.Example:8080", "b"}, {"other.example", "a"},
	} {
		resps := raw(t, addr, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\nConnection: close\r\n\r\n")
		if len(resps) != 1 || resps[0].Header.Get("X-Upstream") != tc.want {
			t.Errorf("host %s: routed to %v", tc.host, resps)
		}
	}
	addr2, _ := serve(t, Config{Routes: map[string]*url.URL{"b.example": mustURL(t, b.URL)}})
	if resps := raw(t, addr2, "GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: close\r\n\r\n"); len(resps) != 1 || resps[0].StatusCode != 404 {
		t.Errorf("unrouted host: %v", resps)
	}
}

func TestHTTP2PriorKnowledge(t *testing.T) {
	up := newEcho(t, "a")
	addr, _ := serve(t, Config{Default: mustURL(t, up.URL)})
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	resp, err := c.Post("http://"+addr+"/h2", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echoed
	json.NewDecoder(resp.Body).Decode(&e)
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || e.Body != `{"a":1}` {
		t.Fatalf("h2c: %s %d %+v", resp.Proto, resp.StatusCode, e)
	}
}

func TestForwardProxy(t *testing.T) {
	up := newEcho(t, "a")
	u := mustURL(t, up.URL)
	addr, p := serve(t, Config{Forward: true, Egress: []string{"127.0.0.1"}})
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustURL(t, "http://"+addr))}}
	resp, err := c.Get(up.URL + "/fwd")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "a" {
		t.Fatalf("allowed egress: %d", resp.StatusCode)
	}
	resps := raw(t, addr, "GET http://denied.example:"+u.Port()+"/x HTTP/1.1\r\nHost: denied.example\r\nConnection: close\r\n\r\n")
	if len(resps) != 1 || resps[0].StatusCode != 403 || !strings.Contains(bodyOf(resps[0]), "egress_denied") {
		t.Fatalf("denied egress: %v", resps)
	}
	if p.Refusals() != 1 {
		t.Errorf("refusals %d", p.Refusals())
	}
}

func TestConnect(t *testing.T) {
	tlsUp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "through the tunnel")
	}))
	defer tlsUp.Close()
	port := mustURL(t, tlsUp.URL).Port()
	var portN int
	fmt.Sscan(port, &portN)
	addr, p := serve(t, Config{Forward: true, Egress: []string{"localhost", "tools.example"}, Ports: []int{portN},
		ToolHosts: func(h string) bool { return h == "tools.example" }, TunnelIdleTimeout: 300 * time.Millisecond})

	for _, tc := range []struct {
		name, target string
		status       int
		code         string
	}{
		{"tool host", "tools.example:" + port, 403, "tunnel_to_tool_host"},
		{"not allowed", "elsewhere.example:" + port, 403, "egress_denied"},
		{"port", "localhost:22", 403, "egress_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resps := raw(t, addr, "CONNECT "+tc.target+" HTTP/1.1\r\nHost: "+tc.target+"\r\n\r\n")
			if len(resps) != 1 || resps[0].StatusCode != tc.status || !strings.Contains(bodyOf(resps[0]), tc.code) {
				t.Fatalf("got %v", resps)
			}
		})
	}

	tunnel := func(sni string) (string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT localhost:%s HTTP/1.1\r\nHost: localhost:%s\r\n\r\n", port, port)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil || resp.StatusCode != 200 {
			return "", fmt.Errorf("CONNECT: %v %v", resp, err)
		}
		tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true}) // test upstream's self-signed certificate
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		r2, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			return "", err
		}
		b, _ := io.ReadAll(r2.Body)
		return string(b), nil
	}
	if got, err := tunnel("localhost"); err != nil || got != "through the tunnel" {
		t.Fatalf("tunnel with matching SNI: %q, %v", got, err)
	}
	if got, err := tunnel("evil.example"); err == nil {
		t.Fatalf("tunnel with SNI evil.example worked: %q", got)
	}
	if p.Tunnels() != 1 {
		t.Errorf("tunnels %d, want 1", p.Tunnels())
	}

	// An idle tunnel is closed by the proxy.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // guard only
	fmt.Fprintf(c, "CONNECT localhost:%s HTTP/1.1\r\nHost: localhost:%s\r\n\r\n", port, port)
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v", err)
	}
	tc := tls.Client(&bufConn{Conn: c, r: br}, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}) // test upstream's self-signed certificate
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := tc.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from an idle tunnel")
	} else if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the idle tunnel was not closed by the proxy (the test's guard deadline fired)")
	}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// TestEventStreamIsNotBuffered: an upstream's event stream reaches the
// client event by event; the upstream sends the second event only after
// the client has the first one.
func TestEventStreamIsNotBuffered(t *testing.T) {
	got := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			return
		}
		io.WriteString(w, "data: two\n\n")
	}))
	defer up.Close()
	addr, _ := serve(t, Config{Default: mustURL(t, up.URL)})
	resp, err := http.Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	close(got)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: two") {
		t.Fatalf("second event missing: %q", rest)
	}
}

// pipeConn joins an HTTP/2 CONNECT stream's two halves into a net.Conn
// for a TLS client.
type pipeConn struct {
	net.Conn // nil: only Read, Write and Close are used by crypto/tls here
	r        io.Reader
	w        io.WriteCloser
}

func (p *pipeConn) Read(b []byte) (int, error)       { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)      { return p.w.Write(b) }
func (p *pipeConn) Close() error                     { return p.w.Close() }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

func TestConnectOverHTTP2(t *testing.T) {
	tlsUp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "h2 tunnel")
	}))
	defer tlsUp.Close()
	port := mustURL(t, tlsUp.URL).Port()
	var portN int
	fmt.Sscan(port, &portN)
	addr, _ := serve(t, Config{Forward: true, Egress: []string{"localhost"}, Ports: []int{portN},
		ToolHosts: func(h string) bool { return h == "tools.example" }})
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()

	connect := func(target string) (*http.Response, io.WriteCloser, error) {
		pr, pw := io.Pipe()
		req := &http.Request{Method: "CONNECT", URL: &url.URL{Scheme: "http", Host: addr}, Host: target, Header: http.Header{}, Body: pr}
		resp, err := tr.RoundTrip(req)
		return resp, pw, err
	}
	resp, pw, err := connect("tools.example:" + port)
	if err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if resp.StatusCode != 403 || resp.ProtoMajor != 2 {
		t.Fatalf("h2 CONNECT to a tool host: %s %d", resp.Proto, resp.StatusCode)
	}
	resp.Body.Close()

	resp, pw, err = connect("localhost:" + port)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("h2 CONNECT: %d", resp.StatusCode)
	}
	tc := tls.Client(&pipeConn{r: resp.Body, w: pw}, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}) // test upstream's self-signed certificate
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	r2, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	if string(b) != "h2 tunnel" {
		t.Fatalf("through the h2 tunnel: %q", b)
	}
}

func TestUpstreamTimeoutAndFailure(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()
	addr, _ := serve(t, Config{
		Routes:                map[string]*url.URL{"slow.example": mustURL(t, slow.URL), "gone.example": mustURL(t, goneURL)},
		ResponseHeaderTimeout: 200 * time.Millisecond,
	})
	for _, tc := range []struct {
		host   string
		status int
		code   string
	}{
		{"slow.example", 504, "upstream_timeout"},
		{"gone.example", 502, "upstream_unavailable"},
	} {
		resps := raw(t, addr, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\nConnection: close\r\n\r\n")
		if len(resps) != 1 || resps[0].StatusCode != tc.status || !strings.Contains(bodyOf(resps[0]), tc.code) {
			t.Errorf("%s: %v", tc.host, resps)
		}
	}
}

// TestSlowHeadIsCut: a client that never finishes its request head is
// disconnected at the server's ReadHeaderTimeout, although the guard holds
// the partial head back from net/http.
func TestSlowHeadIsCut(t *testing.T) {
	p, err := New(Config{Default: mustURL(t, "http://127.0.0.1:1")})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: RejectFraming(p.Handler()), ConnContext: ConnContext, ReadHeaderTimeout: 200 * time.Millisecond}
	go srv.Serve(GuardListener(l, 0))
	defer srv.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // guard only
	_, err = io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept a connection with an unfinished head open")
	}
}

func TestConfigValidate(t *testing.T) {
	good := mustURL(t, "http://127.0.0.1:9000")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"ok", Config{Routes: map[string]*url.URL{"a.example": good}, Egress: []string{"*.example.com", "api.example.com"}, Ports: []int{443}}, ""},
		{"upper-case route", Config{Routes: map[string]*url.URL{"A.example": good}}, "lower case"},
		{"route with port", Config{Routes: map[string]*url.URL{"a.example:80": good}}, "without port"},
		{"bad upstream", Config{Default: mustURL(t, "ftp://x")}, "default upstream"},
		{"upstream with credentials", Config{Default: mustURL(t, "http://u:p@x")}, "default upstream"},
		{"bad egress", Config{Egress: []string{"*"}}, "egress"},
		{"egress with path", Config{Egress: []string{"a.example/x"}}, "egress"},
		{"port", Config{Ports: []int{70000}}, "port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
