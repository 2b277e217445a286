package webhook

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/internal/testrun"
)

// durable starts a Notifier on d and returns it with a stop function that
// waits for its workers to end.
func durable(t *testing.T, d *db.DB, targets ...Target) (*Notifier, func()) {
	t.Helper()
	n, err := New(context.Background(), Config{Targets: targets, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond,
		MaxAttempts: 4, Registerer: prometheus.NewRegistry(), DB: d, PollEvery: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return n, testrun.Background(t, n.Run)
}

func outboxStatus(t *testing.T, d *db.DB) map[string]int {
	t.Helper()
	rows, err := d.QueryContext(context.Background(), `SELECT status, count(*) FROM webhook_outbox GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = n
	}
	return out
}

func waitStatus(t *testing.T, d *db.DB, want map[string]int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		got := outboxStatus(t, d)
		same := len(got) == len(want)
		for k, v := range want {
			same = same && got[k] == v
		}
		if same {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("outbox %v, want %v", got, want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// enqueue writes ev the way a state change does: inside a transaction of
// the caller's, waking the workers after the commit.
func enqueue(t *testing.T, n *Notifier, d *db.DB, ev Event) {
	t.Helper()
	ctx := context.Background()
	if err := d.Tx(ctx, func(tx *sql.Tx) error { return n.Enqueue(ctx, tx, ev) }); err != nil {
		t.Fatal(err)
	}
	n.Wake()
}

// TestOutboxSurvivesStop: an event whose receiver is down when the control
// plane stops is delivered by the next one started on the same database,
// under the same delivery id, and only once; whether Notify wrote it or a
// caller's transaction did.
func TestOutboxSurvivesStop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, n *Notifier, d *db.DB)
	}{
		{"notify", func(t *testing.T, n *Notifier, d *db.DB) { n.Notify(event()) }},
		{"enqueue", func(t *testing.T, n *Notifier, d *db.DB) { enqueue(t, n, d, event()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, d *db.DB) { survivesStop(t, d, tc.write) })
		})
	}
}

func survivesStop(t *testing.T, d *db.DB, write func(t *testing.T, n *Notifier, d *db.DB)) {
	r := newReceiver(t, http.StatusServiceUnavailable)
	target := Target{Name: "ops", URL: r.srv.URL, Format: FormatJSON, Secret: secret}
	n, stop := durable(t, d, target)
	// Attempts fail until the first notifier stops; MaxAttempts is 4,
	// so stop after the first failure is recorded.
	write(t, n, d)
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		calls := r.calls
		r.mu.Unlock()
		if calls > 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the first notifier never tried")
		case <-time.After(2 * time.Millisecond):
		}
	}
	stop()
	if st := outboxStatus(t, d); st["pending"] != 1 {
		// Four quick failures could have given up already; the test
		// is about resuming, so it needs the row still pending.
		t.Skipf("outbox %v after stop: the row was not pending any more", st)
	}
	r.mu.Lock()
	r.script = []int{http.StatusOK}
	r.calls = 0
	r.mu.Unlock()
	durable(t, d, target)
	r.wait(t)
	waitStatus(t, d, map[string]int{"delivered": 1})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) != 1 {
		t.Errorf("receiver saw %d delivery ids, want 1 (the same id across the restart): %v", len(r.ids), r.ids)
	}
}

// TestOutboxSharedByReplicas: two notifiers on one database deliver each
// event once between them, and failures end as failed rows.
func TestOutboxSharedByReplicas(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ok := newReceiver(t, http.StatusOK)
		ok.got = make(chan []byte, 64)
		bad := newReceiver(t, http.StatusBadRequest)
		bad.got = make(chan []byte, 64)
		targets := []Target{{Name: "ops", URL: ok.srv.URL, Format: FormatJSON, Secret: secret},
			{Name: "bad", URL: bad.srv.URL, Format: FormatJSON, Secret: secret}}
		a, _ := durable(t, d, targets...)
		b, _ := durable(t, d, targets...)
		const events = 20
		for i := range events {
			ev := event()
			ev.ApprovalID = "ap_" + string(rune('a'+i))
			if i%2 == 0 {
				a.Notify(ev)
			} else {
				b.Notify(ev)
			}
		}
		waitStatus(t, d, map[string]int{"delivered": events, "failed": events})
		ok.mu.Lock()
		defer ok.mu.Unlock()
		if ok.calls != events || len(ok.ids) != events {
			t.Errorf("receiver saw %d calls and %d delivery ids, want %d of each", ok.calls, len(ok.ids), events)
		}
		for id, n := range ok.ids {
			if n != 1 {
				t.Errorf("delivery %s arrived %d times", id, n)
			}
		}
	})
}

// TestOutboxWriteFailureKeepsEventInMemory: when the outbox cannot be
// written, the event still goes out from the in-memory queue.
func TestOutboxWriteFailureKeepsEventInMemory(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	r := newReceiver(t, http.StatusOK)
	n, _ := durable(t, d, Target{Name: "ops", URL: r.srv.URL, Format: FormatJSON, Secret: secret})
	if _, err := d.ExecContext(context.Background(), `DROP TABLE webhook_outbox`); err != nil {
		t.Fatal(err)
	}
	n.Notify(event())
	r.wait(t)
}

// TestEnqueueCommitsWithCaller: rows written by Enqueue belong to the
// caller's transaction: they exist exactly when the caller's own change
// committed, and the committed ones are delivered once to each target.
func TestEnqueueCommitsWithCaller(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if _, err := d.ExecContext(ctx, `CREATE TABLE changes (id TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		ops, soc := newReceiver(t, http.StatusOK), newReceiver(t, http.StatusOK)
		n, _ := durable(t, d, Target{Name: "ops", URL: ops.srv.URL, Format: FormatJSON, Secret: secret},
			Target{Name: "soc", URL: soc.srv.URL, Format: FormatJSON, Secret: secret})
		errAbort := errors.New("the caller's change failed")
		for _, tc := range []struct {
			id       string
			rollback bool
		}{
			{"ap_committed", false},
			{"ap_rolled_back", true},
		} {
			ev := event()
			ev.ApprovalID = tc.id
			err := d.Tx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO changes (id) VALUES ($1)`, tc.id); err != nil {
					return err
				}
				if err := n.Enqueue(ctx, tx, ev); err != nil {
					return err
				}
				if tc.rollback {
					return errAbort
				}
				return nil
			})
			if tc.rollback != errors.Is(err, errAbort) || (!tc.rollback && err != nil) {
				t.Fatalf("%s: transaction: %v", tc.id, err)
			}
			n.Wake()
			var changes, rows int
			if err := d.QueryRowContext(ctx, `SELECT count(*) FROM changes WHERE id = $1`, tc.id).Scan(&changes); err != nil {
				t.Fatal(err)
			}
			if err := d.QueryRowContext(ctx, `SELECT count(*) FROM webhook_outbox WHERE event LIKE $1`, `%"approval_id":"`+tc.id+`"%`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			want := 2
			if tc.rollback {
				want = 0
			}
			if changes != want/2 || rows != want {
				t.Errorf("%s: %d changes and %d outbox rows, want %d and %d", tc.id, changes, rows, want/2, want)
			}
		}
		waitStatus(t, d, map[string]int{"delivered": 2})
		for _, r := range []*receiver{ops, soc} {
			if body := r.wait(t); !strings.Contains(string(body), `"ap_committed"`) {
				t.Errorf("delivered %s", body)
			}
			r.mu.Lock()
			if r.calls != 1 || len(r.ids) != 1 {
				t.Errorf("receiver saw %d calls under %d ids, want 1", r.calls, len(r.ids))
			}
			r.mu.Unlock()
		}
	})
}

// TestEnqueueRefused: Enqueue fails rather than losing events when there
// is no outbox to write them to or no transaction to write them in, and
// has nothing to do without targets.
func TestEnqueueRefused(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	target := Target{Name: "ops", URL: "http://127.0.0.1:9/hook", Format: FormatJSON, Secret: secret}
	mk := func(cfg Config) *Notifier {
		cfg.Registerer = prometheus.NewRegistry()
		n, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		n          *Notifier
		withTx     bool
		wantOutbox bool
		wantErr    bool
	}{
		{"no database", mk(Config{Targets: []Target{target}}), true, false, true},
		{"no transaction", mk(Config{Targets: []Target{target}, DB: d}), false, true, true},
		{"no targets", mk(Config{DB: d}), true, false, false},
		{"outbox and transaction", mk(Config{Targets: []Target{target}, DB: d}), true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.n.Outbox(); (got != nil) != tc.wantOutbox || (got != nil && got != d) {
				t.Errorf("Outbox() = %v, want outbox %v", got, tc.wantOutbox)
			}
			var err error
			if tc.withTx {
				err = d.Tx(ctx, func(tx *sql.Tx) error { return tc.n.Enqueue(ctx, tx, event()) })
			} else {
				err = tc.n.Enqueue(ctx, nil, event())
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("Enqueue: %v, want error %v", err, tc.wantErr)
			}
			if tc.name == "no database" && !errors.Is(err, ErrNoOutbox) {
				t.Errorf("Enqueue without a database: %v, want ErrNoOutbox", err)
			}
		})
	}
}
