package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Component is the migration sequence name of the audit store.
const Component = "audit"

// Store keeps audit events, chain heads, checkpoints, spend and incidents.
// It is safe for concurrent use; several control-plane replicas may share
// one Postgres database (a chain's head row is locked while a batch of that
// chain is stored).
type Store struct {
	db    *db.DB
	group groupCommit
}

// OpenStore migrates the audit tables and returns the store.
func OpenStore(ctx context.Context, d *db.DB) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, Component, sub); err != nil {
		return nil, err
	}
	return &Store{db: d}, nil
}

// ChainError is a batch that does not continue its stored chain. The
// producer resends from ExpectedSeq.
type ChainError struct {
	Kind        string // gap, fork, duplicate_id
	ExpectedSeq int64
	Msg         string
}

func (e *ChainError) Error() string { return e.Kind + ": " + e.Msg }

// Result is what Ingest stored.
type Result struct {
	Accepted   int   `json:"accepted"`
	Duplicates int   `json:"duplicates"`
	HeadSeq    int64 `json:"-"`
	// Stored are the newly stored records (for spans), in seq order.
	Stored []Record `json:"-"`
}

// Head returns a chain's last seq and hash (0 and the zero hash for a chain
// never seen).
func (s *Store) Head(ctx context.Context, nodeID, chainID string) (int64, string, error) {
	var seq int64
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT head_seq, head_hash FROM audit_chains WHERE node_id = $1 AND chain_id = $2`, nodeID, chainID).Scan(&seq, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, evidence.ZeroHash, nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("chain head %s/%s: %w", nodeID, chainID, err)
	}
	return seq, h, nil
}

// Ingest stores the events of p that continue its chain, in one
// transaction with the chain head and spend. Events already stored at the
// same positions with the same hashes are counted as duplicates; anything
// else that does not continue the head is a *ChainError and nothing is
// stored.
//
// On Postgres, batches that arrive while another transaction is storing
// are merged into the next one (see groupCommit).
func (s *Store) Ingest(ctx context.Context, p *Prepared, now time.Time) (Result, error) {
	if s.db.Dialect == db.Postgres {
		return s.group.ingest(ctx, s, p, now)
	}
	var res Result
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = ingest(ctx, sqlTxn{tx}, p, now)
		return err
	})
	return res, uniqueAsDuplicate(err, p)
}

// ingestOne stores one batch in its own Postgres transaction, retrying
// serialization failures and deadlocks.
func (s *Store) ingestOne(ctx context.Context, p *Prepared, now time.Time) (Result, error) {
	var res Result
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = s.db.WithPgx(ctx, func(conn *pgx.Conn) error {
			keepFreedMemory(ctx, conn)
			tx, err := conn.Begin(ctx)
			if err != nil {
				return fmt.Errorf("begin: %w", err)
			}
			defer tx.Rollback(ctx)
			res, err = ingest(ctx, pgTxn{tx}, p, now)
			if err != nil {
				return err
			}
			return tx.Commit(ctx)
		})
		if !retryable(err) {
			break
		}
	}
	return res, uniqueAsDuplicate(err, p)
}

// keepFreedMemory makes the Postgres backend behind conn keep the memory
// an ingest frees, once per connection.
//
// Why: glibc's malloc in the backend hands the top of its heap back to
// the kernel whenever more than its trim threshold (128 KiB by default)
// is free, and each COPY of a batch frees 2-3 MiB when the statement
// ends. Every batch then paid for shrinking the heap (a TLB shootdown
// across CPUs) and for faulting the same memory back in, page by page,
// in the next one: in perf on the 2-core VM, 20% of a backend's time was
// the shrinking and another 11% page faults. glibc raises the threshold
// to twice the largest block it has mapped and unmapped (its dynamic
// mmap threshold, up to 32 MiB), so one 4 MiB value allocated and freed
// by the backend is enough for the rest of its life. The price is up to
// 8 MiB of free heap kept per pooled connection; elsewhere (another libc,
// a remote server) the statement is merely useless.
//
// A failure is ignored: this is only about speed, and a connection that
// is really broken fails the transaction right after.
func keepFreedMemory(ctx context.Context, conn *pgx.Conn) {
	const key = "aegis.audit.keep_freed_memory"
	data := conn.PgConn().CustomData()
	if data[key] != nil {
		return
	}
	if _, err := conn.Exec(ctx, `SELECT length(repeat('x', 4194304))`); err == nil {
		data[key] = true
	}
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// uniqueAsDuplicate turns a unique-index violation (an event id stored by
// a concurrent batch of another chain) into the refusal it is.
func uniqueAsDuplicate(err error, p *Prepared) error {
	if err != nil && db.IsUniqueViolation(err) {
		return &ChainError{Kind: CodeDuplicateID, ExpectedSeq: p.Batch.SeqFirst, Msg: "an event id of this batch is already stored"}
	}
	return err
}

// txn is the little a transaction must do, in either driver.
type txn interface {
	queryRow(ctx context.Context, q string, args ...any) interface{ Scan(...any) error }
	exec(ctx context.Context, q string, args ...any) error
	insertEvents(ctx context.Context, cs []*checked) error
	forUpdate() string
}

// checked is a batch whose chain position was checked under its chain's
// row lock: recs are the events to store (the overlap with stored events
// removed), res counts the duplicates.
type checked struct {
	p     *Prepared
	now   int64
	recs  []Record
	res   Result
	key   int64 // the chain's audit_chains.chain_key
	count int64 // the chain's stored event count
}

// checkChain creates the batch's chain row if needed, locks it, and checks
// that the batch continues it.
func checkChain(ctx context.Context, tx txn, p *Prepared, now time.Time) (*checked, error) {
	b := p.Batch
	if err := tx.exec(ctx, `INSERT INTO audit_chains (node_id, chain_id, tenant, head_seq, head_hash, event_count, checkpoint_seq, updated_us)
		VALUES ($1, $2, $3, 0, $4, 0, 0, $5) ON CONFLICT (node_id, chain_id) DO NOTHING`, b.NodeID, b.ChainID, b.Tenant, evidence.ZeroHash, db.Micros(now)); err != nil {
		return nil, fmt.Errorf("chain %s/%s: %w", b.NodeID, b.ChainID, err)
	}
	var (
		tenant, headHash string
		key, head, count int64
	)
	if err := tx.queryRow(ctx, `SELECT chain_key, tenant, head_seq, head_hash, event_count FROM audit_chains WHERE node_id = $1 AND chain_id = $2`+tx.forUpdate(),
		b.NodeID, b.ChainID).Scan(&key, &tenant, &head, &headHash, &count); err != nil {
		return nil, fmt.Errorf("chain %s/%s: %w", b.NodeID, b.ChainID, err)
	}
	expected := head + 1
	if tenant != b.Tenant {
		return nil, &ChainError{Kind: CodeFork, ExpectedSeq: expected, Msg: fmt.Sprintf("chain belongs to tenant %q", tenant)}
	}
	c := &checked{p: p, now: db.Micros(now), recs: p.Records, key: key, count: count}
	switch {
	case b.SeqFirst > expected:
		return nil, &ChainError{Kind: CodeGap, ExpectedSeq: expected, Msg: fmt.Sprintf("batch starts at seq %d, the chain is at %d", b.SeqFirst, head)}
	case b.SeqFirst == expected:
		if hex.EncodeToString(p.Prev[:]) != headHash {
			return nil, &ChainError{Kind: CodeFork, ExpectedSeq: expected, Msg: fmt.Sprintf("prev_hash differs from the stored hash of seq %d", head)}
		}
	default:
		// The batch overlaps stored events: they must be the same ones.
		// Equal hashes at the last overlapping seq prove the whole overlap
		// equal, prev_hash included.
		last := min(b.SeqLast, head)
		var stored string
		err := tx.queryRow(ctx, `SELECT hash FROM audit_events WHERE chain_key = $1 AND seq = $2`, key, last).Scan(&stored)
		if isNoRows(err) {
			return nil, &ChainError{Kind: CodeFork, ExpectedSeq: expected, Msg: fmt.Sprintf("stored event at seq %d is missing (deleted?)", last)}
		}
		if err != nil {
			return nil, fmt.Errorf("chain %s/%s seq %d: %w", b.NodeID, b.ChainID, last, err)
		}
		n := int(last - b.SeqFirst + 1)
		if stored != hex.EncodeToString(c.recs[n-1].Hash[:]) {
			return nil, &ChainError{Kind: CodeFork, ExpectedSeq: expected, Msg: fmt.Sprintf("event at seq %d differs from the stored one", last)}
		}
		c.res.Duplicates = n
		c.recs = c.recs[n:]
	}
	c.res.HeadSeq = head
	return c, nil
}

// store writes the events of cs (batches of distinct chains, each checked
// in this transaction) and moves their chain heads and spend. Each event
// is stored under its own tenant: the batch's for an ordinary node, one of
// the tenants a shared gateway serves otherwise (checked by the caller).
// The unique index on (tenant, id) refuses an event id stored at another
// position (a replay under a new seq, or a concurrent batch of another
// chain); no separate lookup is needed.
func store(ctx context.Context, tx txn, cs []*checked) error {
	if err := tx.insertEvents(ctx, cs); err != nil {
		if db.IsUniqueViolation(err) {
			return &ChainError{Kind: CodeDuplicateID, ExpectedSeq: cs[0].res.HeadSeq + 1, Msg: "an event id of this batch is already stored at another position"}
		}
		return fmt.Errorf("storing events: %w", err)
	}
	for _, c := range cs {
		b, last := c.p.Batch, c.recs[len(c.recs)-1]
		if err := tx.exec(ctx, `UPDATE audit_chains SET head_seq = $1, head_hash = $2, event_count = $3, updated_us = $4 WHERE chain_key = $5`,
			last.Seq, hex.EncodeToString(last.Hash[:]), c.count+int64(len(c.recs)), c.now, c.key); err != nil {
			return fmt.Errorf("chain head %s/%s: %w", b.NodeID, b.ChainID, err)
		}
		if err := addChainTenants(ctx, tx, b, c.recs); err != nil {
			return err
		}
		c.res.Accepted = len(c.recs)
		c.res.HeadSeq = last.Seq
		c.res.Stored = c.recs
	}
	return addSpend(ctx, tx, cs)
}

func ingest(ctx context.Context, tx txn, p *Prepared, now time.Time) (Result, error) {
	c, err := checkChain(ctx, tx, p, now)
	if err != nil {
		return Result{}, err
	}
	if len(c.recs) == 0 {
		return c.res, nil
	}
	if err := store(ctx, tx, []*checked{c}); err != nil {
		return Result{}, err
	}
	return c.res, nil
}

// addChainTenants records the tenants other than the chain's own that
// have events on it, so that their exports include the chain.
func addChainTenants(ctx context.Context, tx txn, b Batch, recs []Record) error {
	var others []string
	for i := range recs {
		if t := recs[i].Tenant; t != b.Tenant && !slices.Contains(others, t) {
			others = append(others, t)
		}
	}
	slices.Sort(others)
	for _, t := range others {
		if err := tx.exec(ctx, `INSERT INTO audit_chain_tenants (tenant, node_id, chain_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, t, b.NodeID, b.ChainID); err != nil {
			return fmt.Errorf("chain tenant %s: %w", t, err)
		}
	}
	return nil
}

// spendKey is one spend row.
type spendKey struct{ tenant, agent, day string }

// addSpend sums the spend of allowed and sanitized calls (the ones the
// filter let through and charged) per event tenant, agent and UTC day.
// Rows are updated in key order so concurrent batches cannot deadlock on
// them.
func addSpend(ctx context.Context, tx txn, cs []*checked) error {
	sums := map[spendKey]int64{}
	for _, c := range cs {
		for i := range c.recs {
			ev := &c.recs[i].Event
			if ev.CostMicroUSD <= 0 || (ev.Action != "allow" && ev.Action != "sanitize") {
				continue
			}
			sums[spendKey{ev.Tenant, ev.Agent, time.UnixMicro(c.recs[i].TimeUS).UTC().Format(time.DateOnly)}] += ev.CostMicroUSD
		}
	}
	keys := make([]spendKey, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].tenant != keys[j].tenant {
			return keys[i].tenant < keys[j].tenant
		}
		if keys[i].agent != keys[j].agent {
			return keys[i].agent < keys[j].agent
		}
		return keys[i].day < keys[j].day
	})
	if len(keys) == 0 {
		return nil
	}
	// One statement for all rows: a round trip per agent would cost more
	// than the rest of the batch's bookkeeping.
	var q strings.Builder
	q.WriteString(`INSERT INTO audit_spend (tenant, agent, day, micro_usd) VALUES `)
	args := make([]any, 0, 4*len(keys))
	for i, k := range keys {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "($%d, $%d, $%d, $%d)", len(args)+1, len(args)+2, len(args)+3, len(args)+4)
		args = append(args, k.tenant, k.agent, k.day, sums[k])
	}
	q.WriteString(` ON CONFLICT (tenant, agent, day) DO UPDATE SET micro_usd = audit_spend.micro_usd + excluded.micro_usd`)
	if err := tx.exec(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("spend of %d agents: %w", len(keys), err)
	}
	return nil
}

// SpentToday returns each agent's spend in USD on the UTC day of day, as
// summed from ingested events: the source of the remaining budgets in live
// state.
func (s *Store) SpentToday(ctx context.Context, tenant string, day time.Time) (map[string]float64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT agent, micro_usd FROM audit_spend WHERE tenant = $1 AND day = $2`, tenant, day.UTC().Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("spend of %s: %w", tenant, err)
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var agent string
		var micro int64
		if err := rows.Scan(&agent, &micro); err != nil {
			return nil, fmt.Errorf("spend of %s: %w", tenant, err)
		}
		out[agent] = float64(micro) / 1e6
	}
	return out, rows.Err()
}

// Incident is an integrity failure seen at ingest.
type Incident struct {
	ID          string `json:"id"`
	Tenant      string `json:"tenant"`
	NodeID      string `json:"node_id"`
	ChainID     string `json:"chain_id"`
	Kind        string `json:"kind"`
	ExpectedSeq int64  `json:"expected_seq"`
	SeqFirst    int64  `json:"seq_first"`
	SeqLast     int64  `json:"seq_last"`
	Detail      string `json:"detail"`
	Time        string `json:"time"`
}

// RecordIncident stores in. It runs outside the refused batch's
// transaction, so the incident stays when the batch does not.
func (s *Store) RecordIncident(ctx context.Context, in Incident, now time.Time) error {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	in.ID = hex.EncodeToString(b[:])
	if len(in.Detail) > 1000 {
		in.Detail = in.Detail[:1000]
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit_incidents (id, tenant, node_id, chain_id, kind, expected_seq, seq_first, seq_last, detail, at_us)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		in.ID, in.Tenant, in.NodeID, in.ChainID, in.Kind, in.ExpectedSeq, in.SeqFirst, in.SeqLast, in.Detail, db.Micros(now))
	if err != nil {
		return fmt.Errorf("recording %s incident: %w", in.Kind, err)
	}
	return nil
}

// Incidents lists a tenant's incidents between from and to (zero: open),
// newest last, at most limit.
func (s *Store) Incidents(ctx context.Context, tenant string, from, to time.Time, limit int) ([]Incident, error) {
	q := `SELECT id, tenant, node_id, chain_id, kind, expected_seq, seq_first, seq_last, detail, at_us FROM audit_incidents WHERE tenant = $1`
	args := []any{tenant}
	if !from.IsZero() {
		args = append(args, db.Micros(from))
		q += fmt.Sprintf(" AND at_us >= $%d", len(args))
	}
	if !to.IsZero() {
		args = append(args, db.Micros(to))
		q += fmt.Sprintf(" AND at_us <= $%d", len(args))
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY at_us, id LIMIT $%d", len(args))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("incidents of %s: %w", tenant, err)
	}
	defer rows.Close()
	out := []Incident{}
	for rows.Next() {
		var in Incident
		var at int64
		if err := rows.Scan(&in.ID, &in.Tenant, &in.NodeID, &in.ChainID, &in.Kind, &in.ExpectedSeq, &in.SeqFirst, &in.SeqLast, &in.Detail, &at); err != nil {
			return nil, fmt.Errorf("incidents of %s: %w", tenant, err)
		}
		in.Time = db.FromMicros(at).Format(time.RFC3339Nano)
		out = append(out, in)
	}
	return out, rows.Err()
}

func isNoRows(err error) bool {
	return errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows)
}

// pgTxn runs an ingest on a pgx transaction, storing events with COPY.
type pgTxn struct{ tx pgx.Tx }

func (t pgTxn) queryRow(ctx context.Context, q string, args ...any) interface{ Scan(...any) error } {
	return t.tx.QueryRow(ctx, q, args...)
}

func (t pgTxn) exec(ctx context.Context, q string, args ...any) error {
	_, err := t.tx.Exec(ctx, q, args...)
	return err
}

func (t pgTxn) forUpdate() string { return " FOR UPDATE" }

// eventColumns lists audit_events' columns in the order rows are written
// (the table's order: fixed-width columns first).
func eventColumns() []string {
	return []string{"chain_key", "seq", "time_us", "policy_revision", "cost_micro_usd", "received_us", "tenant", "id", "agent", "tool", "action", "hash", "body"}
}

func (t pgTxn) insertEvents(ctx context.Context, cs []*checked) error {
	buf := copyBufs.Get().(*[]byte)
	b := appendCopyHeader((*buf)[:0])
	n := 0
	for _, c := range cs {
		b = appendCopyRows(b, c.recs, c.key, c.now)
		n += len(c.recs)
	}
	*buf = appendCopyTrailer(b)
	tag, err := t.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(*buf), copyEvents)
	if cap(*buf) <= 16<<20 {
		copyBufs.Put(buf)
	}
	if err != nil {
		return err
	}
	if got := tag.RowsAffected(); got != int64(n) {
		return fmt.Errorf("copied %d of %d events", got, n)
	}
	return nil
}

// copyEvents is the COPY statement of appendCopyRows' stream.
var copyEvents = `COPY audit_events (` + strings.Join(eventColumns(), ", ") + `) FROM STDIN (FORMAT binary)`

// copyBufs holds COPY streams between batches (about a megabyte each for
// 1000 events).
var copyBufs = sync.Pool{New: func() any { return new([]byte) }}

// appendCopyRows appends rs as rows of a COPY binary stream (PostgreSQL
// documentation, "COPY", Binary Format) in eventColumns' order: text
// columns as their bytes, bigints as 8 bytes big-endian. Writing it
// directly costs a fraction of encoding 14 interface values per row.
func appendCopyRows(b []byte, rs []Record, chainKey, now int64) []byte {
	text := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		return append(b, s...)
	}
	bigint := func(b []byte, v int64) []byte {
		b = binary.BigEndian.AppendUint32(b, 8)
		return binary.BigEndian.AppendUint64(b, uint64(v))
	}
	for i := range rs {
		r := &rs[i]
		b = binary.BigEndian.AppendUint16(b, 13)
		b = bigint(b, chainKey)
		b = bigint(b, r.Seq)
		b = bigint(b, r.TimeUS)
		b = bigint(b, r.PolicyRevision)
		b = bigint(b, r.CostMicroUSD)
		b = bigint(b, now)
		b = text(b, r.Tenant)
		b = text(b, r.ID)
		b = text(b, r.Agent)
		b = text(b, r.Tool)
		b = text(b, r.Action)
		b = binary.BigEndian.AppendUint32(b, 2*sha256.Size)
		b = hex.AppendEncode(b, r.Hash[:])
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Body)))
		b = append(b, r.Body...)
	}
	return b
}

// appendCopyHeader starts a COPY binary stream.
func appendCopyHeader(b []byte) []byte {
	b = append(b, "PGCOPY\n\xff\r\n\x00"...)
	b = binary.BigEndian.AppendUint32(b, 0)    // flags
	return binary.BigEndian.AppendUint32(b, 0) // header extension length
}

// appendCopyTrailer ends a COPY binary stream.
func appendCopyTrailer(b []byte) []byte {
	return binary.BigEndian.AppendUint16(b, 0xffff) // field count -1
}

// sqlTxn runs an ingest on a database/sql transaction (SQLite).
type sqlTxn struct{ tx *sql.Tx }

func (t sqlTxn) queryRow(ctx context.Context, q string, args ...any) interface{ Scan(...any) error } {
	return t.tx.QueryRowContext(ctx, q, args...)
}

func (t sqlTxn) exec(ctx context.Context, q string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, q, args...)
	return err
}

// SQLite serialises writers (BEGIN IMMEDIATE), so no row lock is needed.
func (t sqlTxn) forUpdate() string { return "" }

func (t sqlTxn) insertEvents(ctx context.Context, cs []*checked) error {
	stmt, err := t.tx.PrepareContext(ctx, `INSERT INTO audit_events (`+strings.Join(eventColumns(), ", ")+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, c := range cs {
		for i := range c.recs {
			r := &c.recs[i]
			if _, err := stmt.ExecContext(ctx, c.key, r.Seq, r.TimeUS, r.PolicyRevision, r.CostMicroUSD, c.now, r.Tenant, r.ID, r.Agent, r.Tool, r.Action,
				hex.EncodeToString(r.Hash[:]), string(r.Body)); err != nil {
				return err
			}
		}
	}
	return nil
}
