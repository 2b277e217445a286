package audit

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

func prepared(t *testing.T, p *producer, b Batch) *Prepared {
	t.Helper()
	prep, err := Prepare(b, p.key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return prep
}

func pendingOf(t *testing.T, p *producer, b Batch) *pendingBatch {
	return &pendingBatch{p: prepared(t, p, b), now: baseTime, done: make(chan struct{})}
}

func chainKind(err error) string {
	var ce *ChainError
	if errors.As(err, &ce) {
		return ce.Kind
	}
	return fmt.Sprint(err)
}

// TestGroupOutcomes: one merged transaction gives every batch the answer
// it would have had alone: stored, refused for a gap, or answered as
// duplicates.
func TestGroupOutcomes(t *testing.T) {
	d := dbtest.New(t, db.Postgres)
	st, err := OpenStore(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	a := newProducer(t, "node-a", "acme", "a")
	b := newProducer(t, "node-b", "acme", "b")
	c := newProducer(t, "node-c", "acme", "c")
	dd := newProducer(t, "node-d", "acme", "d")
	cFirst := c.next(t, 4)
	if _, err := st.Ingest(t.Context(), prepared(t, c, cFirst), baseTime); err != nil {
		t.Fatal(err)
	}
	b.events(t, 2) // never sent: b's batch starts at seq 3
	group := []*pendingBatch{
		pendingOf(t, a, a.next(t, 5)),
		pendingOf(t, b, b.next(t, 3)),
		pendingOf(t, c, cFirst),
		pendingOf(t, dd, dd.next(t, 7)),
	}
	st.ingestGroup(t.Context(), group)
	if r := group[0]; r.err != nil || r.res.Accepted != 5 || r.res.HeadSeq != 5 || len(r.res.Stored) != 5 {
		t.Errorf("a: %+v %v", r.res, r.err)
	}
	if r := group[1]; chainKind(r.err) != CodeGap {
		t.Errorf("b: %+v %v, want a gap", r.res, r.err)
	}
	if r := group[2]; r.err != nil || r.res.Accepted != 0 || r.res.Duplicates != 4 {
		t.Errorf("c: %+v %v, want 4 duplicates", r.res, r.err)
	}
	if r := group[3]; r.err != nil || r.res.Accepted != 7 {
		t.Errorf("d: %+v %v", r.res, r.err)
	}
	if got := st.group.merged.Load(); got != 4 {
		t.Errorf("merged = %d, want the 4 batches in one transaction", got)
	}
	var n int
	if err := d.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != 4+5+7 {
		t.Errorf("%d events stored, %v", n, err)
	}
	var head, count int64
	if err := d.QueryRow(`SELECT head_seq, event_count FROM audit_chains WHERE node_id = 'node-d'`).Scan(&head, &count); err != nil || head != 7 || count != 7 {
		t.Errorf("d head %d count %d, %v", head, count, err)
	}
}

// TestGroupFallback: an event id already stored on another chain fails the
// merged COPY; the group is then stored batch by batch, so only the
// offending batch is refused.
func TestGroupFallback(t *testing.T) {
	d := dbtest.New(t, db.Postgres)
	st, err := OpenStore(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	a := newProducer(t, "node-a", "acme", "a")
	thief := newProducer(t, "node-t", "acme", "t")
	aFirst := a.next(t, 2)
	if _, err := st.Ingest(t.Context(), prepared(t, a, aFirst), baseTime); err != nil {
		t.Fatal(err)
	}
	var storedID string
	if err := json.Unmarshal(aFirst.Events[0], &struct {
		ID *string `json:"id"`
	}{&storedID}); err != nil {
		t.Fatal(err)
	}
	reuse := func(m map[string]any) { m["id"] = storedID }
	group := []*pendingBatch{
		pendingOf(t, a, a.next(t, 3)),
		pendingOf(t, thief, thief.next(t, 1, reuse)),
	}
	st.ingestGroup(t.Context(), group)
	if r := group[0]; r.err != nil || r.res.Accepted != 3 {
		t.Errorf("a: %+v %v", r.res, r.err)
	}
	if r := group[1]; chainKind(r.err) != CodeDuplicateID {
		t.Errorf("thief: %+v %v, want duplicate_id", r.res, r.err)
	}
	if got := st.group.merged.Load(); got != 0 {
		t.Errorf("merged = %d, want 0 (the group fell back)", got)
	}
}

// TestGroupConcurrent: many chains ingesting at once through Ingest are
// merged, and every event is stored exactly once on its chain.
func TestGroupConcurrent(t *testing.T) {
	d := dbtest.New(t, db.Postgres)
	st, err := OpenStore(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	const chains, batches, per = 16, 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, chains)
	for i := range chains {
		p := newProducer(t, fmt.Sprintf("node-%02d", i), "acme", "vm")
		bs := make([]*Prepared, batches)
		for j := range bs {
			bs[j] = prepared(t, p, p.next(t, per))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, prep := range bs {
				res, err := st.Ingest(t.Context(), prep, baseTime)
				if err == nil && res.Accepted != per {
					err = fmt.Errorf("accepted %d of %d", res.Accepted, per)
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", p.node, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n, distinct, heads int
	if err := d.QueryRow(`SELECT count(*), count(DISTINCT (chain_key, seq)) FROM audit_events`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow(`SELECT count(*) FROM audit_chains WHERE head_seq = $1 AND event_count = $1`, batches*per).Scan(&heads); err != nil {
		t.Fatal(err)
	}
	if n != chains*batches*per || distinct != n || heads != chains {
		t.Errorf("%d events (%d distinct), %d complete chains", n, distinct, heads)
	}
	// How many batches share a transaction depends on scheduling; the
	// merging itself is held by TestGroupOutcomes and TestGroupTake.
	t.Logf("%d transactions for %d batches", st.group.groups.Load(), chains*batches)
}

// TestGroupTake: a group takes queued batches in arrival order, at most one
// per chain and within the limits, and leaves the rest queued in order.
func TestGroupTake(t *testing.T) {
	pb := func(node, chain string, events int) *pendingBatch {
		return &pendingBatch{p: &Prepared{Batch: Batch{NodeID: node, ChainID: chain}, Records: make([]Record, events)}}
	}
	names := func(rs []*pendingBatch) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.p.Batch.NodeID+"/"+r.p.Batch.ChainID)
		}
		return out
	}
	a1, b1, a2, c1, a3 := pb("a", "x", 10), pb("b", "x", 10), pb("a", "x", 10), pb("c", "x", 10), pb("a", "y", 10)
	g := &groupCommit{queue: []*pendingBatch{a1, b1, a2, c1, a3}, leaders: 1}
	if got, want := fmt.Sprint(names(g.take())), "[a/x b/x c/x a/y]"; got != want {
		t.Errorf("group %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(names(g.queue)), "[a/x]"; got != want || g.queue[0] != a2 {
		t.Errorf("left %s, want %s", got, want)
	}

	big := pb("big", "x", groupMaxEvents)
	g = &groupCommit{queue: []*pendingBatch{pb("a", "x", 1), big, pb("c", "x", 1)}, leaders: 1}
	if got, want := fmt.Sprint(names(g.take())), "[a/x c/x]"; got != want {
		t.Errorf("group %s, want %s (the big batch does not fit)", got, want)
	}
	if got := names(g.take()); len(got) != 1 || got[0] != "big/x" {
		t.Errorf("group %v, want the big batch alone", got)
	}

	var many []*pendingBatch
	for i := range groupMaxBatches + 3 {
		many = append(many, pb(fmt.Sprint("n", i), "x", 1))
	}
	g = &groupCommit{queue: many, leaders: 1}
	if got := len(g.take()); got != groupMaxBatches || len(g.queue) != 3 {
		t.Errorf("group of %d, %d left; want %d and 3", got, len(g.queue), groupMaxBatches)
	}
	g.take()
	if g.take() != nil || g.leaders != 0 {
		t.Errorf("an empty queue must end the leader (leaders = %d)", g.leaders)
	}
}
