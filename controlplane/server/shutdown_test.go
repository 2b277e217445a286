package server

import (
	"context"
	"net/http"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

// slowService answers once the test lets it, so a request is in flight
// while the server shuts down.
type slowService struct {
	entered, release chan struct{}
}

func (s slowService) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /test/slow", func(w http.ResponseWriter, _ *http.Request) {
		close(s.entered)
		<-s.release
		w.WriteHeader(http.StatusOK)
	})
}

// Shutdown lets an in-flight request finish and refuses new connections.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	svc := slowService{entered: make(chan struct{}), release: make(chan struct{})}
	h := startWith(t, dbtest.NewDSN(t, db.SQLite), t.TempDir(), func(c *Config) { c.Services = []Service{svc} })
	got := make(chan int, 1)
	go func() {
		resp, err := h.client.Get(h.base + "/test/slow")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-svc.entered
	shuttingDown := make(chan struct{})
	h.s.httpSrv.RegisterOnShutdown(func() { close(shuttingDown) })
	done := make(chan error, 1)
	go func() { done <- h.s.Shutdown(context.Background()) }()
	<-shuttingDown
	// The listener is closed: new connections are refused while the slow
	// request is still being served.
	if resp, err := h.clientWith(nil).Get(h.base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a new connection was served during shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("shutdown returned (%v) before the in-flight request finished", err)
	default:
	}
	close(svc.release)
	if code := <-got; code != http.StatusOK {
		t.Fatalf("in-flight request ended with %d", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
