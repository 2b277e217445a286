// Package notify tells every control-plane replica that something of a
// tenant changed (a release was published, live state changed), so xDS
// and state caches refresh within a second wherever nodes are connected.
// On Postgres it uses LISTEN/NOTIFY on one dedicated connection per
// replica, reconnecting with backoff; on the embedded store (one process)
// it is an in-process fan-out. Notifications can be lost while a replica
// is disconnected, so consumers also reconcile periodically; the reconnect
// itself emits an Event with Kind KindResync so they reload everything.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

// Channel is the Postgres notification channel.
const Channel = "aegis_events"

// Kinds of events.
const (
	KindRelease = "release" // a release was published or rolled back
	KindState   = "state"   // revocations, kill switch or budgets changed
	KindKeys    = "keys"    // the tenant's agent-token keys (JWKS) changed
	KindResync  = "resync"  // reload every tenant (after a reconnect)
)

// Event says that something of Tenant changed.
type Event struct {
	Tenant string `json:"tenant"`
	Kind   string `json:"kind"`
}

// Notifier publishes events to every replica, itself included, and hands
// them to subscribers.
type Notifier struct {
	db     *db.DB
	dsn    string
	logger *slog.Logger

	mu   sync.Mutex
	subs map[chan Event]struct{}
}

// New returns a notifier for d. dsn is the Postgres URL with credentials
// (d.DSN has the password removed); it is unused on SQLite.
func New(d *db.DB, dsn string, logger *slog.Logger) *Notifier {
	return &Notifier{db: d, dsn: dsn, logger: logger, subs: map[chan Event]struct{}{}}
}

// Notify publishes e. On Postgres the event reaches subscribers through
// the database (also this replica's), so it is delivered only after the
// change it announces is visible; callers notify after committing.
func (n *Notifier) Notify(ctx context.Context, e Event) error {
	if n.db.Dialect != db.Postgres {
		n.fanout(e)
		return nil
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := n.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, Channel, string(payload)); err != nil {
		return fmt.Errorf("notify %s/%s: %w", e.Tenant, e.Kind, err)
	}
	return nil
}

// Subscribe returns a channel of events until ctx ends. A slow subscriber
// loses events rather than blocking others; it then gets a KindResync.
func (n *Notifier) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, 256)
	n.mu.Lock()
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	go func() {
		<-ctx.Done()
		n.mu.Lock()
		delete(n.subs, ch)
		n.mu.Unlock()
		close(ch)
	}()
	return ch
}

func (n *Notifier) fanout(e Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- e:
		default:
			// Full: drop this event but make sure a resync follows.
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- Event{Kind: KindResync}:
			default:
			}
		}
	}
}

// Run listens for Postgres notifications until ctx ends, reconnecting
// with backoff. ready, when not nil, is closed once the first LISTEN is
// active. On SQLite it only closes ready and waits.
func (n *Notifier) Run(ctx context.Context, ready chan<- struct{}) error {
	if n.db.Dialect != db.Postgres {
		if ready != nil {
			close(ready)
		}
		<-ctx.Done()
		return nil
	}
	backoff := 100 * time.Millisecond
	first := true
	for {
		err := n.listen(ctx, func() {
			if first && ready != nil {
				close(ready)
			}
			if !first {
				n.fanout(Event{Kind: KindResync})
			}
			first = false
			backoff = 100 * time.Millisecond
		})
		if ctx.Err() != nil {
			return nil
		}
		n.logger.Warn("notification listener lost its connection", "error", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (n *Notifier) listen(ctx context.Context, onListen func()) error {
	conn, err := pgx.Connect(ctx, n.dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	onListen()
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var e Event
		if err := json.Unmarshal([]byte(note.Payload), &e); err != nil || e.Kind == "" {
			n.logger.Warn("ignoring malformed notification", "error", errors.Join(err, errors.New("no kind")).Error())
			continue
		}
		n.fanout(e)
	}
}
