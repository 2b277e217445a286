package signing

import (
	"context"
	"crypto/ed25519"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store records every key that signed, so rotation never orphans old
// signatures.
type Store struct{ db *db.DB }

// NewStore migrates the signing tables and returns the store.
func NewStore(ctx context.Context, d *db.DB) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, "signing", sub); err != nil {
		return nil, err
	}
	return &Store{db: d}, nil
}

// Record remembers k as a key of purpose (idempotent).
func (s *Store) Record(ctx context.Context, purpose string, k *Key, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (purpose, key_id, public_key, first_used) VALUES ($1, $2, $3, $4)
		ON CONFLICT (purpose, key_id) DO NOTHING`, purpose, k.ID, []byte(k.Public), db.Micros(now))
	if err != nil {
		return fmt.Errorf("record %s key %s: %w", purpose, k.ID, err)
	}
	return nil
}

// Trusted returns every recorded public key of purpose.
func (s *Store) Trusted(ctx context.Context, purpose string) ([]ed25519.PublicKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT public_key FROM signing_keys WHERE purpose = $1 ORDER BY first_used`, purpose)
	if err != nil {
		return nil, fmt.Errorf("list %s keys: %w", purpose, err)
	}
	defer rows.Close()
	var out []ed25519.PublicKey
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("list %s keys: %w", purpose, err)
		}
		if len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("list %s keys: stored key has %d bytes", purpose, len(b))
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out, rows.Err()
}

// LoadRing loads (or creates) the key at path, records it, and returns a
// ring trusting it, every key recorded earlier for purpose, and extra.
func LoadRing(ctx context.Context, s *Store, purpose, path string, extra []ed25519.PublicKey, now time.Time) (*Ring, bool, error) {
	k, created, err := LoadOrCreate(path)
	if err != nil {
		return nil, false, err
	}
	if err := s.Record(ctx, purpose, k, now); err != nil {
		return nil, false, err
	}
	prev, err := s.Trusted(ctx, purpose)
	if err != nil {
		return nil, false, err
	}
	return NewRing(purpose, k, append(prev, extra...)...), created, nil
}
