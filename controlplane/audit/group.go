package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Limits of one merged transaction: beyond these a group's COPY and locks
// last long enough that the batches queued behind it wait more than they
// gain.
const (
	groupMaxBatches = 64
	groupMaxEvents  = 20000
)

// groupLeaders is how many merged transactions one Store runs at once.
// Two let the control plane prepare and send one group while Postgres
// commits the other; on the 2-core bench machine one and two measured the
// same (34,700 events/s mean of four runs each), both above one
// transaction per batch (30,900).
const groupLeaders = 2

// groupCommit merges batches that arrive while a transaction is running
// into the next transaction: one COPY and one commit for all of them.
//
// Why: Postgres spends a large share of a batch on work per statement and
// per transaction rather than per row (memory it allocates for the COPY and
// hands back to the kernel afterwards, page faults to get it again, the
// commit), and several backends copying into audit_events at once contend
// for its indexes' right-hand pages and for extending the table. Nodes
// send small batches (256 events by default) and many nodes send at once,
// so merging is what makes the per-row cost dominate.
//
// Each caller's batch keeps its own outcome: chain checks are made per
// batch under its chain's row lock, and a refused batch is left out of the
// transaction without failing the others. If the merged transaction fails
// as a whole (an event id stored twice, a serialization failure), every
// batch of the group is stored again on its own, so each gets exactly the
// answer it would have had alone.
//
// At most groupLeaders transactions at a time per Store: replicas each run
// their own, and chain row locks (taken in key order) serialise them where
// they meet.
type groupCommit struct {
	mu      sync.Mutex
	queue   []*pendingBatch
	leaders int // transactions running or about to

	groups, merged atomic.Int64 // transactions, and batches stored in groups of two or more
}

type pendingBatch struct {
	p    *Prepared
	now  time.Time
	res  Result
	err  error
	done chan struct{}
}

// ingest queues p and waits for its outcome. The caller that finds no
// transaction running leads: it runs groups until its own batch is done,
// then hands the queue to a new leader.
func (g *groupCommit) ingest(ctx context.Context, s *Store, p *Prepared, now time.Time) (Result, error) {
	r := &pendingBatch{p: p, now: now, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	lead := g.leaders < groupLeaders
	if lead {
		g.leaders++
	}
	g.mu.Unlock()
	if lead {
		// The work belongs to every batch in the group, not only to the
		// leader's request: a leader whose client hangs up still finishes.
		g.lead(context.WithoutCancel(ctx), s, r)
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		// The batch may still be stored; the producer's resend is then
		// answered as duplicates.
		return Result{}, ctx.Err()
	}
}

func (g *groupCommit) lead(ctx context.Context, s *Store, own *pendingBatch) {
	for {
		group := g.take()
		if len(group) == 0 {
			return
		}
		gctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		s.ingestGroup(gctx, group)
		cancel()
		for _, r := range group {
			close(r.done)
		}
		if own == nil || !isDone(own.done) {
			continue
		}
		g.mu.Lock()
		more := len(g.queue) > 0
		if !more {
			g.leaders--
		}
		g.mu.Unlock()
		if more {
			go g.lead(ctx, s, nil)
		}
		return
	}
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// take removes the next group from the queue: batches in arrival order,
// at most one per chain (a second batch of a chain must see the first
// one's head), within the group limits. With an empty queue the caller
// stops leading, under the same lock as arrivals check it.
func (g *groupCommit) take() []*pendingBatch {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.leaders--
		return nil
	}
	var group, rest []*pendingBatch
	events := 0
	for _, r := range g.queue {
		n := len(r.p.Records)
		full := len(group) > 0 && (len(group) == groupMaxBatches || events+n > groupMaxEvents)
		if full || slices.ContainsFunc(group, func(o *pendingBatch) bool { return sameChain(o.p, r.p) }) {
			rest = append(rest, r)
			continue
		}
		group = append(group, r)
		events += n
	}
	g.queue = rest
	return group
}

// GroupStats returns how many ingest transactions ran on Postgres and how
// many batches were stored in transactions shared with other batches.
func (s *Store) GroupStats() (transactions, merged int64) {
	return s.group.groups.Load(), s.group.merged.Load()
}

func sameChain(a, b *Prepared) bool {
	return a.Batch.NodeID == b.Batch.NodeID && a.Batch.ChainID == b.Batch.ChainID
}

// ingestGroup stores the batches of group (of distinct chains), setting
// each one's result.
func (s *Store) ingestGroup(ctx context.Context, group []*pendingBatch) {
	s.group.groups.Add(1)
	if len(group) == 1 {
		r := group[0]
		r.res, r.err = s.ingestOne(ctx, r.p, r.now)
		return
	}
	// Chain rows are locked in key order so that two replicas' groups
	// cannot deadlock on each other.
	order := slices.Clone(group)
	slices.SortFunc(order, func(a, b *pendingBatch) int {
		return cmp.Or(cmp.Compare(a.p.Batch.NodeID, b.p.Batch.NodeID), cmp.Compare(a.p.Batch.ChainID, b.p.Batch.ChainID))
	})
	err := s.db.WithPgx(ctx, func(conn *pgx.Conn) error {
		keepFreedMemory(ctx, conn)
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback(ctx)
		var (
			cs     []*checked
			owners []*pendingBatch // owners[i] sent cs[i]
		)
		for _, r := range order {
			c, err := checkChain(ctx, pgTxn{tx}, r.p, r.now)
			var ce *ChainError
			switch {
			case errors.As(err, &ce):
				r.res, r.err = Result{}, err
			case err != nil:
				return err
			case len(c.recs) == 0:
				r.res, r.err = c.res, nil
			default:
				cs, owners = append(cs, c), append(owners, r)
			}
		}
		if len(cs) > 0 {
			if err := store(ctx, pgTxn{tx}, cs); err != nil {
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		for i, c := range cs {
			owners[i].res, owners[i].err = c.res, nil
		}
		return nil
	})
	if err != nil {
		// Nothing of the group is stored: store each batch alone, which
		// also names the batch that caused a unique violation.
		for _, r := range group {
			r.res, r.err = s.ingestOne(ctx, r.p, r.now)
		}
		return
	}
	s.group.merged.Add(int64(len(group)))
}
