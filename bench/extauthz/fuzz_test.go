package extauthz

import (
	"context"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/aegis-mesh/aegis/bench/filterbench"
)

var fuzzFx struct {
	once sync.Once
	fx   *filterbench.Fixture
	srv  *Server
	err  error
}

// FuzzCheck sends hostile CheckRequests to the authorization server: it
// must answer every one without panicking, never allow anything without
// the agent's token, and carry a denied response with every refusal.
func FuzzCheck(f *testing.F) {
	fuzzFx.once.Do(func() {
		ctx := context.Background()
		if fuzzFx.fx, fuzzFx.err = filterbench.NewFixture(ctx, 1); fuzzFx.err == nil {
			fuzzFx.srv, fuzzFx.err = NewServer(ctx, fuzzFx.fx.Compiled, fuzzFx.fx.JWKS, "eu-west-1")
		}
	})
	if fuzzFx.err != nil {
		f.Fatal(fuzzFx.err)
	}
	fx := fuzzFx.fx
	f.Add("POST", "svc0.gen.internal", "/v1/tool0", "application/json", string(filterbench.Paths[0].Body), true)
	f.Add("POST", "svc0.gen.internal", "/v1/tool0", "application/json", string(filterbench.Paths[1].Body), true)
	f.Add("GET", "svc0.gen.internal", "/v1/tool0?x=1", "", "", true)
	f.Add("POST", "svc0.gen.internal", "/v1/tool0", "application/json", string(filterbench.Paths[0].Body), false)
	f.Add("POST", "SVC0.gen.internal:443", "/v1/tool0/../tool0", "text/plain", "{\"amount\":1e400}", true)
	f.Add("", "", "", "", "\x00\xff", true)
	f.Fuzz(func(t *testing.T, method, host, path, ctype, body string, withToken bool) {
		headers := map[string]string{"content-type": ctype}
		if withToken {
			headers["authorization"] = "Bearer " + fx.Token
		}
		resp, err := fuzzFx.srv.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Host: host, Path: path, Headers: headers, RawBody: []byte(body)}}}})
		if err != nil {
			return // an internal error is a refusal: the proxy denies on errors
		}
		allowed := resp.GetStatus().GetCode() == int32(code.Code_OK)
		if allowed && !withToken {
			t.Fatalf("allowed without a token: %s %s%s", method, host, path)
		}
		if !allowed && resp.GetDeniedResponse() == nil {
			t.Fatalf("refusal without a denied response: %v", resp)
		}
	})
}
