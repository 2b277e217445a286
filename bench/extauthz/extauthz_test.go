package extauthz

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/aegis-mesh/aegis/bench/filterbench"
	"github.com/aegis-mesh/aegis/bench/gen"
)

// TestProxyDecidesLikeTheFilter runs the whole baseline on loopback: a
// real gRPC authorization server, the proxy calling it per request, and
// an upstream that records what reached it.
func TestProxyDecidesLikeTheFilter(t *testing.T) {
	ctx := context.Background()
	fx, err := filterbench.NewFixture(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ctx, fx.Compiled, fx.JWKS, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The upstream runs on server goroutines: what it records is read
	// under a lock (TCP gives no happens-before the race detector sees).
	var mu sync.Mutex
	var reached []http.Header
	var bodies []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reached = append(reached, r.Header.Clone())
		bodies = append(bodies, string(b))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(reached) }
	defer up.Close()
	u, _ := url.Parse(up.URL)
	front := httptest.NewServer(NewProxy(authv3.NewAuthorizationClient(conn), u, http.DefaultTransport, 1<<20))
	defer front.Close()

	cases := []struct {
		name    string
		body    string
		token   string
		status  int
		reached bool
	}{
		{"allow", string(filterbench.Paths[0].Body), fx.Token, 200, true},
		{"sanitize cannot be carried out", string(filterbench.Paths[1].Body), fx.Token, 403, false},
		{"deny", string(filterbench.Paths[2].Body), fx.Token, 403, false},
		{"no token", string(filterbench.Paths[0].Body), "", 401, false},
		{"forged token", string(filterbench.Paths[0].Body), fx.Token[:len(fx.Token)-6] + "AAAAAA", 401, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := count()
			req, _ := http.NewRequest("POST", front.URL+gen.Path(0), strings.NewReader(c.body))
			req.Host = gen.Host(0)
			req.Header.Set("Content-Type", "application/json")
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || (count() > before) != c.reached {
				t.Fatalf("status %d (want %d), reached %v (want %v): %s", resp.StatusCode, c.status, count() > before, c.reached, b)
			}
			if c.reached {
				mu.Lock()
				got, body := reached[len(reached)-1], bodies[len(bodies)-1]
				mu.Unlock()
				if got.Get("Authorization") != "" || got.Get("X-Aegis-Decision") != "allow" || body != c.body {
					t.Errorf("forwarded headers %v body %q", got, body)
				}
			}
		})
	}

	// With the authorization server gone, requests are refused, never let through.
	gs.Stop()
	before := count()
	req, _ := http.NewRequest("POST", front.URL+gen.Path(0), strings.NewReader(string(filterbench.Paths[0].Body)))
	req.Host = gen.Host(0)
	req.Header.Set("Authorization", "Bearer "+fx.Token)
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || count() != before {
		t.Fatalf("authorizer down: status %d, reached %v", resp.StatusCode, count() > before)
	}
}
