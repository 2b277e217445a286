package edgebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/aegis-mesh/aegis/bench/extauthz"
	"github.com/aegis-mesh/aegis/bench/filterbench"
	"github.com/aegis-mesh/aegis/edge"
)

// chain is one way to reach the upstream: a listener on loopback and
// what must be closed afterwards.
type chain struct {
	name  string
	url   string
	close func(context.Context) error
}

// serve runs h on a loopback listener with an http.Server.
func serve(h http.Handler) (string, func(context.Context) error, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), srv.Shutdown, nil
}

// upstreamHandler is the tool: it reads the body and answers a small JSON.
func upstreamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
}

// transport is the client side of every hop: keep-alive connections,
// enough idle ones for the concurrency used.
func transport(conns int) *http.Transport {
	return &http.Transport{MaxIdleConns: 4 * conns, MaxIdleConnsPerHost: 2 * conns, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
}

func plainProxy(upstream string, conns int) (*chain, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = transport(conns)
	addr, stop, err := serve(rp)
	if err != nil {
		return nil, err
	}
	return &chain{name: Proxy, url: addr, close: stop}, nil
}

// edgeChain starts the Aegis edge in-process (edge.NewServer) in front of
// upstream, with the filter module at wasm, or with no filter ("none").
func edgeChain(ctx context.Context, name, upstream, wasm string, fx *filterbench.Fixture, dir string) (*chain, error) {
	dir = filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	files := map[string][]byte{"bundle-key.pem": fx.BundlePubPEM, "jwks.json": fx.JWKS, "acme.bundle": fx.RuntimeBundle}
	for f, data := range files {
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			return nil, err
		}
	}
	var cfg edge.Config
	cfg.Listen = "127.0.0.1:0" // unused: Serve gets our own listener
	cfg.Node.ID, cfg.Node.Region = "bench-node", "eu-west-1"
	cfg.Trust.BundleKey = filepath.Join(dir, "bundle-key.pem")
	cfg.JWKS = filepath.Join(dir, "jwks.json")
	cfg.Bundles = []string{filepath.Join(dir, "acme.bundle")}
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Upstream = upstream
	cfg.Filter.Wasm = wasm
	cfg.LogLevel = "error"
	srv, err := edge.NewServer(ctx, cfg, edge.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, fmt.Errorf("edge (%s): %w", name, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = srv.Shutdown(ctx)
		return nil, err
	}
	go func() { _ = srv.Serve(l) }()
	return &chain{name: name, url: "http://" + l.Addr().String(), close: srv.Shutdown}, nil
}

// extauthzChain starts the gRPC authorization server and the proxy that
// calls it, both on loopback.
func extauthzChain(ctx context.Context, upstream string, fx *filterbench.Fixture, conns int) (*chain, error) {
	as, err := extauthz.NewServer(ctx, fx.Compiled, fx.JWKS, "eu-west-1")
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, as)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		gs.Stop()
		return nil, err
	}
	u, err := url.Parse(upstream)
	if err != nil {
		gs.Stop()
		return nil, err
	}
	addr, stop, err := serve(extauthz.NewProxy(authv3.NewAuthorizationClient(conn), u, transport(conns), 1<<20))
	if err != nil {
		gs.Stop()
		return nil, err
	}
	return &chain{name: ExtAuthz, url: addr, close: func(ctx context.Context) error {
		err := stop(ctx)
		gs.GracefulStop()
		return errors.Join(err, conn.Close())
	}}, nil
}
