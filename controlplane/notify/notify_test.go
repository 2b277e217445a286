package notify

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
		return Event{}
	}
}

// Every notifier on one database, the sender included, hears an event.
func TestFanOut(t *testing.T) {
	for _, dialect := range []db.Dialect{db.Postgres, db.SQLite} {
		t.Run(string(dialect), func(t *testing.T) {
			dsn := dbtest.NewDSN(t, dialect)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var ns []*Notifier
			replicas := 2
			if dialect == db.SQLite {
				replicas = 1 // one process by design
			}
			for i := 0; i < replicas; i++ {
				d, err := db.Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				n := New(d, dsn, slog.New(slog.DiscardHandler))
				ready := make(chan struct{})
				go func() { _ = n.Run(ctx, ready) }()
				<-ready
				ns = append(ns, n)
			}
			var subs []<-chan Event
			for _, n := range ns {
				subs = append(subs, n.Subscribe(ctx), n.Subscribe(ctx))
			}
			if err := ns[0].Notify(ctx, Event{Tenant: "acme", Kind: KindRelease}); err != nil {
				t.Fatal(err)
			}
			for i, ch := range subs {
				if e := recv(t, ch); e.Tenant != "acme" || e.Kind != KindRelease {
					t.Fatalf("subscriber %d got %+v", i, e)
				}
			}
		})
	}
}

// A subscriber that does not keep up loses events but is told to resync.
func TestSlowSubscriber(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := New(d, "", slog.New(slog.DiscardHandler))
	ch := n.Subscribe(ctx)
	for i := 0; i < 300; i++ {
		if err := n.Notify(ctx, Event{Tenant: "acme", Kind: KindState}); err != nil {
			t.Fatal(err)
		}
	}
	resync := false
	for i := 0; i < 256 && !resync; i++ {
		resync = recv(t, ch).Kind == KindResync
	}
	if !resync {
		t.Fatal("an overflowing subscriber was never told to resync")
	}
	cancel()
	for range ch {
	}
}
