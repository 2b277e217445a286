package db

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrationName is NNNN_description.sql, or NNNN_description.postgres.sql /
// NNNN_description.sqlite.sql where the dialects need different DDL. A
// version with a dialect-specific file uses it instead of the plain one.
var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)(\.(postgres|sqlite))?\.sql$`)

type migration struct {
	version int
	name    string
	sql     string
}

// Migrate applies the not yet applied migrations of component found at the
// top of fsys, in version order, each in its own transaction together with
// its row in schema_migrations. On Postgres an advisory lock serialises
// replicas that start at the same time.
func (d *DB) Migrate(ctx context.Context, component string, fsys fs.FS) error {
	ms, err := d.migrations(fsys)
	if err != nil {
		return fmt.Errorf("migrations of %s: %w", component, err)
	}
	if _, err := d.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL,
		version INTEGER NOT NULL,
		name TEXT NOT NULL,
		applied_at TEXT NOT NULL,
		PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("migrations of %s: create schema_migrations: %w", component, err)
	}
	for _, m := range ms {
		err := d.Tx(ctx, func(tx *sql.Tx) error {
			if d.Dialect == Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('aegis.migrate.' || $1))`, component); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE component = $1 AND version = $2`, component, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES ($1, $2, $3, $4)`, component, m.version, m.name, time.Now().UTC().Format(time.RFC3339Nano))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s %04d_%s: %w", component, m.version, m.name, err)
		}
	}
	return nil
}

func (d *DB) migrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	plain := map[int]migration{}
	specific := map[int]migration{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("%s: not a migration name (want NNNN_name[.postgres|.sqlite].sql)", e.Name())
		}
		if m[4] != "" && m[4] != string(d.Dialect) {
			continue
		}
		v, _ := strconv.Atoi(m[1])
		set := plain
		if m[4] != "" {
			set = specific
		}
		if prev, dup := set[v]; dup {
			return nil, fmt.Errorf("version %04d given twice (%s and %s)", v, prev.name, m[2])
		}
		b, err := fs.ReadFile(fsys, path.Clean(e.Name()))
		if err != nil {
			return nil, err
		}
		set[v] = migration{version: v, name: m[2], sql: strings.TrimSpace(string(b))}
	}
	for v, m := range specific {
		plain[v] = m
	}
	out := make([]migration, 0, len(plain))
	for _, m := range plain {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}
