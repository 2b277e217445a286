package xds

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Component is the migration component of the drift store.
const Component = "xds"

// Bounds of the write-behind queue and the history.
const (
	maxPendingEvents = 1 << 16
	eventRetention   = 30 * 24 * time.Hour
	flushInterval    = 250 * time.Millisecond
)

// event is one ACK or NACK in the history.
type event struct {
	NodeID  string    `json:"node_id"`
	Tenant  string    `json:"tenant"`
	Type    string    `json:"type"`
	Kind    string    `json:"kind"` // ack or nack
	Version string    `json:"version"`
	Nonce   string    `json:"nonce"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// Event is an ACK or NACK of a node, as the history API shows it.
type Event = event

// store writes node state and ACK/NACK history behind the xDS callbacks:
// a callback only queues, so a slow database never delays a stream. Node
// rows coalesce (only the newest state of a node is written); events queue
// up to maxPendingEvents and are counted when dropped.
type store struct {
	db  *db.DB
	log *slog.Logger
	m   *metrics

	mu     sync.Mutex
	dirty  map[string]NodeStatus
	events []event
	kick   chan struct{}

	flushMu   sync.Mutex // one flush at a time
	lastPrune time.Time
}

func openStore(ctx context.Context, d *db.DB, log *slog.Logger, m *metrics) (*store, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, Component, sub); err != nil {
		return nil, err
	}
	return &store{db: d, log: log, m: m, dirty: map[string]NodeStatus{}, kick: make(chan struct{}, 1)}, nil
}

func (st *store) record(row NodeStatus, ev *event) {
	st.mu.Lock()
	st.dirty[row.NodeID] = row
	if ev != nil {
		if len(st.events) >= maxPendingEvents {
			st.m.storeDropped.Inc()
		} else {
			st.events = append(st.events, *ev)
		}
	}
	st.mu.Unlock()
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// run flushes when there is something to write, and at least every
// flushInterval, until ctx ends (then once more, best effort).
func (st *store) run(ctx context.Context) {
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = st.flush(fctx)
			cancel()
			return
		case <-st.kick:
		case <-t.C:
		}
		if err := st.flush(ctx); err != nil && ctx.Err() == nil {
			st.log.Error("xds: writing drift state", "err", err)
		}
	}
}

// flush writes everything queued so far in one transaction. On failure the
// rows go back to the queue (unless newer ones replaced them meanwhile).
func (st *store) flush(ctx context.Context) error {
	st.flushMu.Lock()
	defer st.flushMu.Unlock()
	st.mu.Lock()
	rows, events := st.dirty, st.events
	st.dirty, st.events = map[string]NodeStatus{}, nil
	st.mu.Unlock()
	prune := time.Since(st.lastPrune) > time.Hour
	if len(rows) == 0 && len(events) == 0 && !prune {
		return nil
	}
	err := st.db.Tx(ctx, func(tx *sql.Tx) error {
		// Prepared once per batch: a publish writes a row per node.
		if len(rows) > 0 {
			up, err := tx.PrepareContext(ctx, upsertNodeSQL)
			if err != nil {
				return err
			}
			defer up.Close()
			for _, r := range rows {
				if err := upsertNode(ctx, up, r); err != nil {
					return fmt.Errorf("node %s: %w", r.NodeID, err)
				}
			}
		}
		if len(events) > 0 {
			ins, err := tx.PrepareContext(ctx, `INSERT INTO xds_events (node_id, tenant, type, kind, version, nonce, error, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`)
			if err != nil {
				return err
			}
			defer ins.Close()
			for _, e := range events {
				if _, err := ins.ExecContext(ctx, e.NodeID, e.Tenant, e.Type, e.Kind, e.Version, e.Nonce, e.Error, db.Micros(e.At)); err != nil {
					return fmt.Errorf("event: %w", err)
				}
			}
		}
		if prune {
			if _, err := tx.ExecContext(ctx, `DELETE FROM xds_events WHERE at < $1`, db.Micros(time.Now().Add(-eventRetention))); err != nil {
				return fmt.Errorf("prune: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		st.m.storeFailures.Inc()
		st.mu.Lock()
		for id, r := range rows {
			if _, newer := st.dirty[id]; !newer {
				st.dirty[id] = r
			}
		}
		if room := maxPendingEvents - len(st.events); room < len(events) {
			st.m.storeDropped.Add(float64(len(events) - max(room, 0)))
			events = events[:max(room, 0)]
		}
		st.events = append(events, st.events...)
		st.mu.Unlock()
		return fmt.Errorf("drift store: %w", err)
	}
	if prune {
		st.lastPrune = time.Now()
	}
	return nil
}

const upsertNodeSQL = `INSERT INTO xds_nodes (node_id, tenant, region, role, connected, acked_version, acked_at,
	nack_type, nack_version, nack_nonce, nack_error, nack_at, last_seen)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
	ON CONFLICT (node_id) DO UPDATE SET tenant = excluded.tenant, region = excluded.region, role = excluded.role,
	connected = excluded.connected, acked_version = excluded.acked_version, acked_at = excluded.acked_at,
	nack_type = excluded.nack_type, nack_version = excluded.nack_version, nack_nonce = excluded.nack_nonce,
	nack_error = excluded.nack_error, nack_at = excluded.nack_at, last_seen = excluded.last_seen`

func upsertNode(ctx context.Context, stmt *sql.Stmt, r NodeStatus) error {
	var ackedAt, nackAt sql.NullInt64
	var nType, nVersion, nNonce, nError sql.NullString
	if r.AckedAt != nil {
		ackedAt = sql.NullInt64{Int64: db.Micros(*r.AckedAt), Valid: true}
	}
	if n := r.Nack; n != nil {
		nType = sql.NullString{String: n.Type, Valid: true}
		nVersion = sql.NullString{String: n.Version, Valid: true}
		nNonce = sql.NullString{String: n.Nonce, Valid: true}
		nError = sql.NullString{String: n.Error, Valid: true}
		nackAt = sql.NullInt64{Int64: db.Micros(n.At), Valid: true}
	}
	connected := 0
	if r.Connected {
		connected = 1
	}
	_, err := stmt.ExecContext(ctx,
		r.NodeID, r.Tenant, r.Region, string(r.Role), connected, r.AckedVersion, ackedAt,
		nType, nVersion, nNonce, nError, nackAt, db.Micros(r.LastSeen))
	return err
}

// nodes reads every node row (without the fields that depend on releases).
func (st *store) nodes(ctx context.Context) ([]NodeStatus, error) {
	rows, err := st.db.QueryContext(ctx, `SELECT node_id, tenant, region, role, connected, acked_version, acked_at,
		nack_type, nack_version, nack_nonce, nack_error, nack_at, last_seen FROM xds_nodes ORDER BY node_id`)
	if err != nil {
		return nil, fmt.Errorf("drift store: nodes: %w", err)
	}
	defer rows.Close()
	var out []NodeStatus
	for rows.Next() {
		var (
			r                               NodeStatus
			role                            string
			connected                       int
			ackedAt, nackAt                 sql.NullInt64
			nType, nVersion, nNonce, nError sql.NullString
			lastSeen                        int64
		)
		if err := rows.Scan(&r.NodeID, &r.Tenant, &r.Region, &role, &connected, &r.AckedVersion, &ackedAt,
			&nType, &nVersion, &nNonce, &nError, &nackAt, &lastSeen); err != nil {
			return nil, fmt.Errorf("drift store: nodes: %w", err)
		}
		r.Role, r.Connected, r.LastSeen = Role(role), connected != 0, db.FromMicros(lastSeen)
		if ackedAt.Valid {
			t := db.FromMicros(ackedAt.Int64)
			r.AckedAt = &t
		}
		if nType.Valid {
			r.Nack = &Nack{Type: nType.String, Version: nVersion.String, Nonce: nNonce.String, Error: nError.String, At: db.FromMicros(nackAt.Int64)}
			if r.Nack.Type == "ecds" {
				r.Nack.Revision = RevisionOf(r.Nack.Version)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("drift store: nodes: %w", err)
	}
	return out, nil
}

// history returns the newest ACK/NACK events of a node, newest first.
func (st *store) history(ctx context.Context, nodeID string, limit int) ([]Event, error) {
	rows, err := st.db.QueryContext(ctx, `SELECT node_id, tenant, type, kind, version, nonce, error, at FROM xds_events
		WHERE node_id = $1 ORDER BY id DESC LIMIT $2`, nodeID, limit)
	if err != nil {
		return nil, fmt.Errorf("drift store: history: %w", err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.NodeID, &e.Tenant, &e.Type, &e.Kind, &e.Version, &e.Nonce, &e.Error, &at); err != nil {
			return nil, fmt.Errorf("drift store: history: %w", err)
		}
		e.At = db.FromMicros(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// History returns the newest ACK/NACK events of a node (at most limit,
// newest first). It needs a store.
func (s *Server) History(ctx context.Context, nodeID string, limit int) ([]Event, error) {
	if s.store == nil {
		return nil, errNoStore
	}
	if err := s.store.flush(ctx); err != nil {
		return nil, err
	}
	return s.store.history(ctx, nodeID, limit)
}
