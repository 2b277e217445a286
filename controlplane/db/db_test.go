package db_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

func TestMigrateAppliesOnceInOrder(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		fsys := fstest.MapFS{
			"0001_items.sql":         {Data: []byte(`CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE)`)},
			"0002_seed.postgres.sql": {Data: []byte(`INSERT INTO items VALUES (1, 'pg')`)},
			"0002_seed.sqlite.sql":   {Data: []byte(`INSERT INTO items VALUES (1, 'lite')`)},
			"0002_seed.sql":          {Data: []byte(`INSERT INTO items VALUES (1, 'plain')`)},
		}
		for range 2 {
			if err := d.Migrate(ctx, "test", fsys); err != nil {
				t.Fatal(err)
			}
		}
		var name string
		if err := d.QueryRowContext(ctx, `SELECT name FROM items WHERE id = $1`, 1).Scan(&name); err != nil {
			t.Fatal(err)
		}
		want := map[db.Dialect]string{db.Postgres: "pg", db.SQLite: "lite"}[d.Dialect]
		if name != want {
			t.Fatalf("dialect file not preferred: got %q, want %q", name, want)
		}
		var n int
		if err := d.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE component = 'test'`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("schema_migrations rows = %d, %v; want 2", n, err)
		}
		_, err := d.ExecContext(ctx, `INSERT INTO items VALUES (2, 'pg'), (3, 'pg')`)
		if !db.IsUniqueViolation(err) {
			t.Fatalf("IsUniqueViolation(%v) = false", err)
		}
	})
}

func TestMigrateRejectsBadInput(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		for _, tc := range []struct {
			name string
			fsys fstest.MapFS
			want string
		}{
			{"bad name", fstest.MapFS{"init.sql": {Data: []byte(`SELECT 1`)}}, "not a migration name"},
			{"duplicate version", fstest.MapFS{"0001_a.sql": {Data: []byte(`SELECT 1`)}, "0001_b.sql": {Data: []byte(`SELECT 1`)}}, "given twice"},
			{"bad sql rolls back", fstest.MapFS{"0001_bad.sql": {Data: []byte(`CREATE TABLE`)}}, "0001_bad"},
		} {
			err := d.Migrate(ctx, "bad-"+strings.ReplaceAll(tc.name, " ", "-"), tc.fsys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
			}
		}
		var n int
		if err := d.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE component LIKE 'bad-%'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("failed migrations recorded: %d, %v", n, err)
		}
	})
}

// Concurrent read-modify-write transactions on one row must not lose an
// update in either dialect: that is what the stores' counters rely on.
func TestTxNoLostUpdates(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if err := d.Migrate(ctx, "counter", fstest.MapFS{"0001_c.sql": {Data: []byte(`CREATE TABLE c (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)`)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ExecContext(ctx, `INSERT INTO c VALUES (1, 0)`); err != nil {
			t.Fatal(err)
		}
		const workers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					err := d.Tx(ctx, func(tx *sql.Tx) error {
						lock := ` FOR UPDATE`
						if d.Dialect == db.SQLite {
							lock = ""
						}
						var n int64
						if err := tx.QueryRowContext(ctx, `SELECT n FROM c WHERE id = 1`+lock).Scan(&n); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, `UPDATE c SET n = $1 WHERE id = 1`, n+1)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var n int64
		if err := d.QueryRowContext(ctx, `SELECT n FROM c WHERE id = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != workers*each {
			t.Fatalf("counter = %d, want %d", n, workers*each)
		}
	})
}

func TestOpenRejectsUnknownDSN(t *testing.T) {
	for _, dsn := range []string{"", "mysql://x", "sqlite:", "postgres://u:secret@127.0.0.1:1/x?connect_timeout=1"} {
		_, err := db.Open(context.Background(), dsn)
		if err == nil {
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error leaks the password: %v", dsn, err)
		}
	}
	if err := (&db.DB{Dialect: db.SQLite}).WithPgx(context.Background(), nil); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("WithPgx on sqlite: %v", err)
	}
}
