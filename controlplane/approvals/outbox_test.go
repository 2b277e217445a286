package approvals

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/webhook"
	"github.com/aegis-mesh/aegis/internal/testrun"
	"github.com/aegis-mesh/aegis/token"
)

var hookSecret = []byte("outbox-test-secret-0123456789")

// scripted is a webhook receiver answering status (changeable), counting
// calls and the successful deliveries of each delivery id.
type scripted struct {
	mu        sync.Mutex
	status    int
	calls     int
	delivered map[string]int // delivery id -> 2xx answers
	events    map[string]int // "type approval_id" -> 2xx answers
	url       string
}

func newScripted(t *testing.T, status int) *scripted {
	t.Helper()
	s := &scripted{status: status, delivered: map[string]int{}, events: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, ok := readDelivery(t, hookSecret, w, r)
		if !ok {
			return
		}
		s.mu.Lock()
		st := s.status
		s.calls++
		if st < 300 {
			s.delivered[r.Header.Get(webhook.HeaderDelivery)]++
			s.events[ev.Type+" "+ev.ApprovalID]++
		}
		s.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *scripted) set(status int) { s.mu.Lock(); s.status = status; s.mu.Unlock() }

func (s *scripted) snapshot() (calls int, delivered, events map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delivered, events = map[string]int{}, map[string]int{}
	for k, v := range s.delivered {
		delivered[k] = v
	}
	for k, v := range s.events {
		events[k] = v
	}
	return s.calls, delivered, events
}

func targets(rs ...*scripted) []webhook.Target {
	var ts []webhook.Target
	for i, r := range rs {
		ts = append(ts, webhook.Target{Name: string(rune('a' + i)), URL: r.url, Format: webhook.FormatJSON, Secret: hookSecret})
	}
	return ts
}

// outboxNotifier returns a Notifier with its outbox on d, not yet
// delivering, and a function that starts it and returns its stop.
func outboxNotifier(t *testing.T, d *db.DB, ts []webhook.Target) (*webhook.Notifier, func() (stop func())) {
	t.Helper()
	n, err := webhook.New(context.Background(), webhook.Config{Targets: ts, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond,
		MaxAttempts: 50, PollEvery: 5 * time.Millisecond, Registerer: prometheus.NewRegistry(), DB: d})
	if err != nil {
		t.Fatal(err)
	}
	return n, func() func() { return testrun.Background(t, n.Run) }
}

// outboxRows counts outbox rows by "status type approval_id".
func outboxRows(t *testing.T, d *db.DB) map[string]int {
	t.Helper()
	rows, err := d.QueryContext(context.Background(), `SELECT status, event FROM webhook_outbox`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var status, event string
		if err := rows.Scan(&status, &event); err != nil {
			t.Fatal(err)
		}
		var ev webhook.Event
		if err := json.Unmarshal([]byte(event), &ev); err != nil {
			t.Fatal(err)
		}
		out[status+" "+ev.Type+" "+ev.ApprovalID]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func approvalStatus(t *testing.T, d *db.DB, id string) string {
	t.Helper()
	var st string
	err := d.QueryRowContext(context.Background(), `SELECT status FROM approvals WHERE id = $1`, id).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func countApprovals(t *testing.T, d *db.DB) int {
	t.Helper()
	var n int
	if err := d.QueryRowContext(context.Background(), `SELECT count(*) FROM approvals`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func sameCounts(got, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// eventually polls get until it returns want, failing after 20 s.
func eventually(t *testing.T, what string, want map[string]int, get func() map[string]int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := get()
		if sameCounts(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutboxInApprovalTransaction: creating, deciding and expiring an
// approval store its notification rows in the same transaction, so they
// are in the outbox as soon as the change is visible, before any worker
// runs; once workers run, each target receives each event once.
func TestOutboxInApprovalTransaction(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		r1, r2 := newScripted(t, http.StatusOK), newScripted(t, http.StatusOK)
		n, start := outboxNotifier(t, d, targets(r1, r2))
		e := newEnv(t, d, n)

		var a, b CreateResponse
		if st := e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "o1"), &a); st != http.StatusCreated {
			t.Fatalf("create: %d", st)
		}
		if got, want := outboxRows(t, d), map[string]int{"pending approval.created " + a.ApprovalID: 2}; !sameCounts(got, want) {
			t.Fatalf("after create: outbox %v, want %v", got, want)
		}
		// A batched request changes nothing anybody is told about.
		e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "o1"), nil)
		if st := e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, nil); st != http.StatusOK {
			t.Fatalf("approve: %d", st)
		}
		e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "o2"), &b)
		e.clock.Add(16 * time.Minute)
		if x, err := e.svc.Sweep(context.Background()); err != nil || x != 1 {
			t.Fatalf("sweep: %d %v", x, err)
		}
		want := map[string]int{
			"pending approval.created " + a.ApprovalID:  2,
			"pending approval.approved " + a.ApprovalID: 2,
			"pending approval.created " + b.ApprovalID:  2,
			"pending approval.expired " + b.ApprovalID:  2,
		}
		if got := outboxRows(t, d); !sameCounts(got, want) {
			t.Fatalf("before delivery: outbox %v, want %v", got, want)
		}

		start()
		delivered := map[string]int{}
		for k, v := range want {
			delivered["delivered"+k[len("pending"):]] = v
		}
		eventually(t, "outbox", delivered, func() map[string]int { return outboxRows(t, d) })
		for i, r := range []*scripted{r1, r2} {
			_, ids, events := r.snapshot()
			wantEvents := map[string]int{}
			for k := range want {
				wantEvents[k[len("pending "):]] = 1
			}
			if !sameCounts(events, wantEvents) || len(ids) != len(want) {
				t.Errorf("target %d received %v under %d delivery ids, want %v once each", i, events, len(ids), wantEvents)
			}
		}
	})
}

// failingNotifier writes through to a real outbox, then fails the
// caller's transaction when fail is set: whatever it wrote must vanish
// with the change.
type failingNotifier struct {
	*webhook.Notifier
	fail atomic.Bool
}

func (f *failingNotifier) Enqueue(ctx context.Context, tx *sql.Tx, evs ...webhook.Event) error {
	if err := f.Notifier.Enqueue(ctx, tx, evs...); err != nil {
		return err
	}
	if f.fail.Load() {
		return errors.New("injected failure after the outbox write")
	}
	return nil
}

// TestOutboxRollsBackWithApproval: when the approval's transaction fails
// after its notification was written, neither the change nor the outbox
// row remains, for create, decide and expiry alike.
func TestOutboxRollsBackWithApproval(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		n, _ := outboxNotifier(t, d, targets(newScripted(t, http.StatusOK)))
		f := &failingNotifier{Notifier: n}
		e := newEnv(t, d, f)

		f.fail.Store(true)
		var eb errBody
		if st := e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "r1"), &eb); st != http.StatusInternalServerError {
			t.Fatalf("create with a failing outbox: %d %+v, want 500", st, eb)
		}
		if c, rows := countApprovals(t, d), outboxRows(t, d); c != 0 || len(rows) != 0 {
			t.Fatalf("failed create left %d approvals and outbox %v", c, rows)
		}

		f.fail.Store(false)
		var a CreateResponse
		if st := e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "r1"), &a); st != http.StatusCreated {
			t.Fatalf("create: %d", st)
		}
		created := map[string]int{"pending approval.created " + a.ApprovalID: 1}

		f.fail.Store(true)
		if st := e.call(t, lead, "POST", "/v1/approvals/"+a.ApprovalID+"/approve", nil, nil); st != http.StatusInternalServerError {
			t.Fatalf("approve with a failing outbox: %d, want 500", st)
		}
		if st, rows := approvalStatus(t, d, a.ApprovalID), outboxRows(t, d); st != StatusPending || !sameCounts(rows, created) {
			t.Fatalf("failed decision left the approval %s and outbox %v", st, rows)
		}

		e.clock.Add(16 * time.Minute)
		if _, err := e.svc.Sweep(context.Background()); err == nil {
			t.Fatal("sweep with a failing outbox succeeded")
		}
		var view Approval
		if st := e.call(t, lead, "GET", "/v1/approvals/"+a.ApprovalID, nil, &view); st != http.StatusInternalServerError {
			t.Fatalf("poll that expires, with a failing outbox: %d, want 500", st)
		}
		if st, rows := approvalStatus(t, d, a.ApprovalID), outboxRows(t, d); st != StatusPending || !sameCounts(rows, created) {
			t.Fatalf("failed expiry left the approval %s and outbox %v", st, rows)
		}

		f.fail.Store(false)
		if st := e.call(t, lead, "GET", "/v1/approvals/"+a.ApprovalID, nil, &view); st != http.StatusOK || view.Status != StatusExpired {
			t.Fatalf("poll after the outbox recovered: %d %s", st, view.Status)
		}
		created["pending approval.expired "+a.ApprovalID] = 1
		if rows := outboxRows(t, d); !sameCounts(rows, created) {
			t.Fatalf("expiry: outbox %v, want %v", rows, created)
		}
	})
}

// TestOutboxRestartDeliversOnce: a control plane that stops while its
// receivers are failing leaves the approval's notifications to the next
// one on the same database, which delivers each once per target under
// the same delivery id.
func TestOutboxRestartDeliversOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		r1, r2 := newScripted(t, http.StatusServiceUnavailable), newScripted(t, http.StatusServiceUnavailable)
		ts := targets(r1, r2)
		n, start := outboxNotifier(t, d, ts)
		stop := start()
		e := newEnv(t, d, n)
		var a CreateResponse
		if st := e.call(t, node1, "POST", "/v1/approvals", request("billing-agent", "payments.create", "x1"), &a); st != http.StatusCreated {
			t.Fatalf("create: %d", st)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			c1, _, _ := r1.snapshot()
			c2, _, _ := r2.snapshot()
			if c1 > 0 && c2 > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the first notifier tried %d and %d times", c1, c2)
			}
			time.Sleep(2 * time.Millisecond)
		}
		stop()
		pending := map[string]int{"pending approval.created " + a.ApprovalID: 2}
		if rows := outboxRows(t, d); !sameCounts(rows, pending) {
			t.Fatalf("after stop: outbox %v, want %v", rows, pending)
		}

		r1.set(http.StatusOK)
		r2.set(http.StatusOK)
		_, start2 := outboxNotifier(t, d, ts)
		start2()
		eventually(t, "outbox", map[string]int{"delivered approval.created " + a.ApprovalID: 2}, func() map[string]int { return outboxRows(t, d) })
		for i, r := range []*scripted{r1, r2} {
			if _, ids, events := r.snapshot(); len(ids) != 1 || events["approval.created "+a.ApprovalID] != 1 {
				t.Errorf("target %d: deliveries %v, events %v, want one", i, ids, events)
			}
		}
	})
}

type noOverrides struct{}

func (noOverrides) MintOverride(context.Context, token.OverrideClaims) (string, string, error) {
	return "", "", errors.New("no overrides here")
}

func (noOverrides) VerifyOverride(context.Context, string, string, time.Time) (*token.OverrideClaims, error) {
	return nil, errors.New("no overrides here")
}

// TestOutboxMustShareTheDatabase: the outbox rows are written in the
// approval's transaction, so a notifier whose outbox is in another
// database is refused at start; one without a database is accepted.
func TestOutboxMustShareTheDatabase(t *testing.T) {
	d, other := dbtest.New(t, db.SQLite), dbtest.New(t, db.SQLite)
	ts := targets(newScripted(t, http.StatusOK))
	elsewhere, _ := outboxNotifier(t, other, ts)
	same, _ := outboxNotifier(t, d, ts)
	memory, err := webhook.New(context.Background(), webhook.Config{Targets: ts, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		n    Notifier
		ok   bool
	}{
		{"outbox in another database", elsewhere, false},
		{"outbox in the same database", same, true},
		{"no database", memory, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{DB: d, Overrides: noOverrides{}, Owners: SourceOwners(nil), Notifier: tc.n, Registerer: prometheus.NewRegistry()})
			if (err == nil) != tc.ok {
				t.Errorf("New: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
