package webhook

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

//go:embed migrations/*.sql
var migrations embed.FS

// outbox keeps deliveries in the control plane's database, so that they
// survive a stop and are shared by replicas: each row is claimed by one
// worker for a lease, and taken over by any replica once the lease runs
// out. Delivery is therefore at least once; the delivery id (the row id,
// in HeaderDelivery) lets receivers drop repeats.
type outbox struct {
	db    *db.DB
	lease time.Duration
}

func newOutbox(ctx context.Context, d *db.DB, lease time.Duration) (*outbox, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, "webhook", sub); err != nil {
		return nil, err
	}
	return &outbox{db: d, lease: lease}, nil
}

// add writes the jobs of one event in a transaction of their own, all or
// none.
func (o *outbox) add(ctx context.Context, jobs []job, now time.Time) error {
	return o.db.Tx(ctx, func(tx *sql.Tx) error { return o.addTx(ctx, tx, jobs, now) })
}

// addTx writes jobs inside tx: they become due when tx commits, and vanish
// with it if it rolls back.
func (o *outbox) addTx(ctx context.Context, tx *sql.Tx, jobs []job, now time.Time) error {
	for _, j := range jobs {
		ev, err := json.Marshal(j.ev)
		if err != nil {
			return fmt.Errorf("webhook outbox: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_outbox (id, target, event, status, attempts, created_at, next_at, lease_until)
			VALUES ($1, $2, $3, 'pending', 0, $4, $4, 0)`, j.id, j.target.Name, string(ev), db.Micros(now)); err != nil {
			return fmt.Errorf("webhook outbox: add %s: %w", j.id, err)
		}
	}
	return nil
}

// claimed is a row a worker holds the lease of.
type claimed struct {
	id, target string
	ev         Event
	attempts   int // including the one about to be made
}

// claim leases the oldest due row, or returns nil when none is due.
func (o *outbox) claim(ctx context.Context, now time.Time) (*claimed, error) {
	lock := ""
	if o.db.Dialect == db.Postgres {
		// Replicas claim different rows instead of queueing on one.
		lock = " FOR UPDATE SKIP LOCKED"
	}
	var c claimed
	var ev string
	err := o.db.QueryRowContext(ctx, `UPDATE webhook_outbox SET lease_until = $1, attempts = attempts + 1
		WHERE id = (SELECT id FROM webhook_outbox WHERE status = 'pending' AND next_at <= $2 AND lease_until <= $2
			ORDER BY next_at LIMIT 1`+lock+`)
		AND status = 'pending' AND lease_until <= $2
		RETURNING id, target, event, attempts`, db.Micros(now.Add(o.lease)), db.Micros(now)).Scan(&c.id, &c.target, &ev, &c.attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("webhook outbox: claim: %w", err)
	}
	if err := json.Unmarshal([]byte(ev), &c.ev); err != nil {
		// Rows are written only by add; an unreadable one cannot be
		// delivered, so it is given up rather than claimed forever.
		if ferr := o.finish(ctx, c.id, "failed", "unreadable event: "+err.Error(), now); ferr != nil {
			return nil, ferr
		}
		return nil, fmt.Errorf("webhook outbox: row %s: %w", c.id, err)
	}
	return &c, nil
}

// finish marks a row delivered or failed.
func (o *outbox) finish(ctx context.Context, id, status, lastErr string, now time.Time) error {
	var e any
	if lastErr != "" {
		e = lastErr
	}
	if _, err := o.db.ExecContext(ctx, `UPDATE webhook_outbox SET status = $1, done_at = $2, last_error = $3, lease_until = 0 WHERE id = $4`,
		status, db.Micros(now), e, id); err != nil {
		return fmt.Errorf("webhook outbox: %s %s: %w", status, id, err)
	}
	return nil
}

// retry releases a row to be tried again at next.
func (o *outbox) retry(ctx context.Context, id, lastErr string, next time.Time) error {
	if _, err := o.db.ExecContext(ctx, `UPDATE webhook_outbox SET next_at = $1, lease_until = 0, last_error = $2 WHERE id = $3`,
		db.Micros(next), lastErr, id); err != nil {
		return fmt.Errorf("webhook outbox: retry %s: %w", id, err)
	}
	return nil
}

// prune deletes delivered rows finished before before; failed rows stay
// for the operator to look at.
func (o *outbox) prune(ctx context.Context, before time.Time) error {
	if _, err := o.db.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE status = 'delivered' AND done_at < $1`, db.Micros(before)); err != nil {
		return fmt.Errorf("webhook outbox: prune: %w", err)
	}
	return nil
}
