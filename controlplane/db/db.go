// Package db opens the control plane's system of record: PostgreSQL (through
// pgx) in production, or an embedded SQLite file (modernc.org/sqlite, pure Go)
// where no server is available, such as `make demo`. Both speak the same SQL
// for everything the stores need, with $1-style parameters; the few places
// where they differ (bulk load with COPY, LISTEN/NOTIFY) ask Dialect.
//
// Schema changes are versioned SQL files applied at start by Migrate, one
// sequence per component, so each store owns its tables.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect names the SQL engine behind a DB.
type Dialect string

const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DB is a connection pool with its dialect.
type DB struct {
	*sql.DB
	Dialect Dialect
	// DSN is the data source name the pool was opened with, with any
	// password removed; safe to log.
	DSN string
}

// Open connects to dsn: a postgres:// or postgresql:// URL, or
// sqlite:PATH for the embedded store (created if missing). It checks the
// connection before returning.
func Open(ctx context.Context, dsn string) (*DB, error) {
	var (
		d   *DB
		err error
	)
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		d, err = openPostgres(dsn)
	case strings.HasPrefix(dsn, "sqlite:"):
		d, err = openSQLite(strings.TrimPrefix(dsn, "sqlite:"))
	default:
		return nil, fmt.Errorf("database %q: want a postgres:// URL or sqlite:PATH", redact(dsn))
	}
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.PingContext(pctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("database %s: %w", d.DSN, err)
	}
	return d, nil
}

func openPostgres(dsn string) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", redact(dsn), err)
	}
	sqldb := stdlib.OpenDB(*cfg)
	sqldb.SetMaxOpenConns(16)
	sqldb.SetMaxIdleConns(16)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	return &DB{DB: sqldb, Dialect: Postgres, DSN: redact(dsn)}, nil
}

func openSQLite(path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("database sqlite: empty path")
	}
	// WAL lets readers run beside the writer; busy_timeout makes a second
	// writer wait instead of failing; foreign keys are off by default in
	// SQLite and on in Postgres, and the stores rely on them.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_txlock", "immediate")
	sqldb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("database sqlite:%s: %w", path, err)
	}
	// One writer at a time is SQLite's model; a single connection also keeps
	// transactions from deadlocking on lock upgrades. The price: code inside
	// a Tx must use the tx, never the DB, or it waits for itself.
	sqldb.SetMaxOpenConns(1)
	return &DB{DB: sqldb, Dialect: SQLite, DSN: "sqlite:" + path}, nil
}

// Tx runs fn in a transaction and commits it, retrying the whole function
// when Postgres reports a serialization failure or deadlock, so callers can
// use SERIALIZABLE-style reasoning without writing their own loops. fn must
// not have effects outside the transaction.
func (d *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	const attempts = 5
	var err error
	for i := 0; i < attempts; i++ {
		err = d.tx(ctx, fn)
		if err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(i+1) * 5 * time.Millisecond):
		}
	}
	return err
}

func (d *DB) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}

// IsUniqueViolation reports whether err is a unique-constraint violation in
// either dialect, for stores that turn "already exists" into a 409.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// WithPgx hands fn the pgx connection under a pooled Postgres connection,
// for what database/sql cannot express (COPY, LISTEN). It fails on SQLite.
func (d *DB) WithPgx(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	if d.Dialect != Postgres {
		return fmt.Errorf("%s: needs postgres", d.Dialect)
	}
	c, err := d.Conn(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer c.Close()
	return c.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		return fn(sc.Conn())
	})
}

// redact drops the password from a URL-form DSN so it can be logged.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Micros is the storage form of a timestamp in both dialects: Unix
// microseconds in a BIGINT column, which indexes, compares and sorts the same
// way in Postgres and SQLite.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros turns a stored timestamp back into a UTC time.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
