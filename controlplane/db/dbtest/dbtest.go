// Package dbtest gives tests a fresh database of each dialect: a uniquely
// named Postgres database (dropped afterwards) on the server named by
// AEGIS_TEST_DATABASE_URL, and a SQLite file in the test's temp directory.
// Store test suites run once per dialect through Each.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// DefaultURL is the server tests use when AEGIS_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns the Postgres server tests run against.
func ServerURL() string {
	if u := os.Getenv("AEGIS_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Each runs fn as a subtest against a fresh database of every dialect.
func Each(t *testing.T, fn func(t *testing.T, d *db.DB)) {
	t.Helper()
	for _, dialect := range []db.Dialect{db.Postgres, db.SQLite} {
		t.Run(string(dialect), func(t *testing.T) {
			fn(t, New(t, dialect))
		})
	}
}

// New opens a fresh, empty database of the given dialect, closed (and for
// Postgres dropped) when the test ends. When the Postgres server cannot be
// reached the test fails in CI (CI set) and is skipped elsewhere.
func New(t testing.TB, dialect db.Dialect) *db.DB {
	t.Helper()
	dsn := NewDSN(t, dialect)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// NewDSN creates a fresh database and returns its DSN without opening it,
// for tests that start a whole server (or several replicas) on it.
func NewDSN(t testing.TB, dialect db.Dialect) string {
	t.Helper()
	if dialect == db.SQLite {
		return "sqlite:" + t.TempDir() + "/aegis.db"
	}
	server := ServerURL()
	admin, err := sql.Open("pgx", server)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = admin.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("postgres at %s unreachable (CI requires it): %v", server, err)
		}
		t.Skipf("postgres at %s unreachable: %v", server, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "aegis_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		admin.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("AEGIS_TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}
