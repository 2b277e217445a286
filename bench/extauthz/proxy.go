package extauthz

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// Proxy forwards requests to an upstream after asking the authorization
// server, like Envoy with the ext_authz HTTP filter configured with
// with_request_body and failure_mode_allow: false.
type Proxy struct {
	client  authv3.AuthorizationClient
	rp      *httputil.ReverseProxy
	maxBody int64
	timeout time.Duration
}

// NewProxy returns a proxy to upstream that checks every request with
// client. Bodies over maxBody are refused (413), as Envoy's
// max_request_bytes without allow_partial_message.
func NewProxy(client authv3.AuthorizationClient, upstream *url.URL, transport http.RoundTripper, maxBody int64) *Proxy {
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = transport
	return &Proxy{client: client, rp: rp, maxBody: maxBody, timeout: 5 * time.Second}
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, p.maxBody+1))
	if err != nil {
		http.Error(w, `{"error":"bad_request"}`, http.StatusBadRequest)
		return
	}
	if int64(len(body)) > p.maxBody {
		http.Error(w, `{"error":"payload_too_large"}`, http.StatusRequestEntityTooLarge)
		return
	}
	headers := make(map[string]string, len(r.Header)+1)
	for k, v := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	resp, err := p.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: r.RemoteAddr}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.Method, Host: r.Host, Path: r.URL.RequestURI(), Scheme: scheme, Protocol: r.Proto,
			Headers: headers, RawBody: body, Size: int64(len(body)),
		}},
	}})
	if err != nil {
		// failure_mode_allow: false — an unreachable authorizer denies.
		http.Error(w, `{"error":"authorization_unavailable"}`, http.StatusForbidden)
		return
	}
	if resp.GetStatus().GetCode() != int32(code.Code_OK) {
		d := resp.GetDeniedResponse()
		status := http.StatusForbidden
		if c := d.GetStatus().GetCode(); c != 0 {
			status = int(c)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, d.GetBody())
		return
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		r.Header.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	r.Header.Del("Authorization")
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	p.rp.ServeHTTP(w, r)
}
