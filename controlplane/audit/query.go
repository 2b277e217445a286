package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
)

// Query selects events of one tenant; empty fields match everything.
type Query struct {
	Tenant         string
	Agent          string
	Tool           string
	Action         string
	DecisionID     string
	PolicyRevision int64 // 0: any
	From, To       time.Time
	After          Cursor // keyset position; zero: from the start
	Limit          int
}

// Cursor is a position in the (time, id) order of events.
type Cursor struct {
	TimeUS int64
	ID     string
}

// String encodes c for the next_cursor field.
func (c Cursor) String() string {
	if c.ID == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.TimeUS, 10) + ":" + c.ID))
}

// ParseCursor decodes a cursor from a previous page.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, errors.New("cursor: not one this server issued")
	}
	ts, id, ok := strings.Cut(string(raw), ":")
	us, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" || len(id) > maxIDLen {
		return Cursor{}, errors.New("cursor: not one this server issued")
	}
	return Cursor{TimeUS: us, ID: id}, nil
}

// Events calls fn with each matching event's canonical body, in (time, id)
// order, at most q.Limit of them.
func (s *Store) Events(ctx context.Context, q Query, fn func(body []byte, c Cursor) error) error {
	where := []string{"tenant = $1"}
	args := []any{q.Tenant}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Agent != "" {
		add("agent = $%d", q.Agent)
	}
	if q.Tool != "" {
		add("tool = $%d", q.Tool)
	}
	if q.Action != "" {
		add("action = $%d", q.Action)
	}
	if q.DecisionID != "" {
		add("id = $%d", q.DecisionID)
	}
	if q.PolicyRevision != 0 {
		add("policy_revision = $%d", q.PolicyRevision)
	}
	if !q.From.IsZero() {
		add("time_us >= $%d", db.Micros(q.From))
	}
	if !q.To.IsZero() {
		add("time_us <= $%d", db.Micros(q.To))
	}
	if q.After.ID != "" {
		// The plain time_us bound lets the (tenant, time_us) index start
		// at the cursor instead of the tenant's first event.
		args = append(args, q.After.TimeUS, q.After.ID)
		where = append(where, fmt.Sprintf("time_us >= $%d AND (time_us > $%d OR id > $%d)", len(args)-1, len(args)-1, len(args)))
	}
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, `SELECT body, time_us, id FROM audit_events WHERE `+strings.Join(where, " AND ")+
		fmt.Sprintf(" ORDER BY time_us, id LIMIT $%d", len(args)), args...)
	if err != nil {
		return fmt.Errorf("events of %s: %w", q.Tenant, err)
	}
	defer rows.Close()
	for rows.Next() {
		var body []byte
		var c Cursor
		if err := rows.Scan(&body, &c.TimeUS, &c.ID); err != nil {
			return fmt.Errorf("events of %s: %w", q.Tenant, err)
		}
		if err := fn(body, c); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CheckpointAll signs a checkpoint of every chain whose head moved since
// its last checkpoint, and returns how many it wrote.
func (s *Store) CheckpointAll(ctx context.Context, key ed25519.PrivateKey, now time.Time) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node_id, chain_id FROM audit_chains WHERE head_seq > checkpoint_seq`)
	if err != nil {
		return 0, fmt.Errorf("checkpoints: %w", err)
	}
	type chainRef struct{ node, chain string }
	var due []chainRef
	for rows.Next() {
		var c chainRef
		if err := rows.Scan(&c.node, &c.chain); err != nil {
			rows.Close()
			return 0, fmt.Errorf("checkpoints: %w", err)
		}
		due = append(due, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("checkpoints: %w", err)
	}
	lock := ""
	if s.db.Dialect == db.Postgres {
		lock = " FOR UPDATE"
	}
	n := 0
	for _, c := range due {
		err := s.db.Tx(ctx, func(tx *sql.Tx) error {
			cp := evidence.Checkpoint{NodeID: c.node, ChainID: c.chain, Time: now.UTC().Format(time.RFC3339Nano)}
			var last int64
			if err := tx.QueryRowContext(ctx, `SELECT tenant, head_seq, head_hash, event_count, checkpoint_seq FROM audit_chains WHERE node_id = $1 AND chain_id = $2`+lock,
				c.node, c.chain).Scan(&cp.Tenant, &cp.Seq, &cp.Hash, &cp.Count, &last); err != nil {
				return err
			}
			if cp.Seq <= last {
				return nil
			}
			cp, err := evidence.SignCheckpoint(key, cp)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (node_id, chain_id, seq, tenant, hash, event_count, time_us, time_text, key_id, signature)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (node_id, chain_id, seq) DO NOTHING`,
				cp.NodeID, cp.ChainID, cp.Seq, cp.Tenant, cp.Hash, cp.Count, db.Micros(now), cp.Time, cp.KeyID, cp.Signature); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE audit_chains SET checkpoint_seq = $1 WHERE node_id = $2 AND chain_id = $3`, cp.Seq, c.node, c.chain); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("checkpoint of %s/%s: %w", c.node, c.chain, err)
		}
	}
	return n, nil
}

// CheckpointFilter selects checkpoints.
type CheckpointFilter struct {
	Tenant          string
	NodeID, ChainID string // both or neither
	MinSeq, MaxSeq  int64  // 0: open
	From, To        time.Time
	Limit           int
}

// Checkpoints lists signed checkpoints in (node, chain, seq) order.
func (s *Store) Checkpoints(ctx context.Context, f CheckpointFilter) ([]evidence.Checkpoint, error) {
	where := []string{"tenant = $1"}
	args := []any{f.Tenant}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.NodeID != "" {
		add("node_id = $%d", f.NodeID)
		add("chain_id = $%d", f.ChainID)
	}
	if f.MinSeq != 0 {
		add("seq >= $%d", f.MinSeq)
	}
	if f.MaxSeq != 0 {
		add("seq <= $%d", f.MaxSeq)
	}
	if !f.From.IsZero() {
		add("time_us >= $%d", db.Micros(f.From))
	}
	if !f.To.IsZero() {
		add("time_us <= $%d", db.Micros(f.To))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1 << 30
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, `SELECT tenant, node_id, chain_id, seq, hash, event_count, time_text, key_id, signature FROM audit_checkpoints WHERE `+
		strings.Join(where, " AND ")+fmt.Sprintf(" ORDER BY node_id, chain_id, seq LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("checkpoints of %s: %w", f.Tenant, err)
	}
	defer rows.Close()
	out := []evidence.Checkpoint{}
	for rows.Next() {
		var c evidence.Checkpoint
		if err := rows.Scan(&c.Tenant, &c.NodeID, &c.ChainID, &c.Seq, &c.Hash, &c.Count, &c.Time, &c.KeyID, &c.Signature); err != nil {
			return nil, fmt.Errorf("checkpoints of %s: %w", f.Tenant, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
