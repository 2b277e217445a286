package tokens

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/token"
)

// KEKSize is the size of the key-encryption key that seals signing keys.
const KEKSize = 32

// signingKey is an unsealed active key, held only for the length of one mint.
type signingKey struct {
	kid       string
	priv      ed25519.PrivateKey
	createdAt time.Time
	// fresh is set when this call created the key (first use or rotation):
	// verifiers do not know it yet.
	fresh bool
}

// publishedKey is a public key that verifiers must still accept.
type publishedKey struct {
	kid    string
	tenant string
	region string
	pub    ed25519.PublicKey
}

// keyStore keeps the tenants' signing keys in the database, private halves
// sealed under the key-encryption key.
type keyStore struct {
	db   *db.DB
	aead cipher.AEAD
	rand func([]byte) error
}

func newKeyStore(d *db.DB, kek []byte) (*keyStore, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("key-encryption key has %d bytes, want %d", len(kek), KEKSize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	return &keyStore{db: d, aead: aead, rand: func(b []byte) error { _, err := rand.Read(b); return err }}, nil
}

// sealAD binds a sealed key to its row: a sealed private key copied into
// another tenant's or region's row does not open.
func sealAD(tenant, region, kid string) []byte {
	return []byte("aegis.token-key.v1\x00" + tenant + "\x00" + region + "\x00" + kid)
}

func (ks *keyStore) seal(priv ed25519.PrivateKey, tenant, region, kid string) (string, error) {
	nonce := make([]byte, ks.aead.NonceSize())
	if err := ks.rand(nonce); err != nil {
		return "", fmt.Errorf("seal key: %w", err)
	}
	out := ks.aead.Seal(nonce, nonce, priv.Seed(), sealAD(tenant, region, kid))
	return base64.StdEncoding.EncodeToString(out), nil
}

func (ks *keyStore) unseal(sealed, tenant, region, kid string) (ed25519.PrivateKey, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(raw) < ks.aead.NonceSize() {
		return nil, fmt.Errorf("unseal key %s: malformed", kid)
	}
	n := ks.aead.NonceSize()
	seed, err := ks.aead.Open(nil, raw[:n], raw[n:], sealAD(tenant, region, kid))
	if err != nil {
		return nil, fmt.Errorf("unseal key %s: wrong key-encryption key or tampered row", kid)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("unseal key %s: seed has %d bytes", kid, len(seed))
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if keys.KeyID(priv.Public().(ed25519.PublicKey)) != kid {
		return nil, fmt.Errorf("unseal key %s: key id does not match", kid)
	}
	return priv, nil
}

// active returns the active key of (tenant, region), creating one when
// there is none, and rotating it first when it is older than rotateAfter
// (zero: never). publishFor is how long a retired key stays published.
func (ks *keyStore) active(ctx context.Context, tenant, region string, now time.Time, rotateAfter, publishFor time.Duration) (signingKey, error) {
	var out signingKey
	err := ks.db.Tx(ctx, func(tx *sql.Tx) error {
		var kid, sealed string
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT kid, sealed_private, created_at FROM token_keys WHERE tenant = $1 AND region = $2 AND retired_at IS NULL`, tenant, region).Scan(&kid, &sealed, &created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			out, err = ks.insert(ctx, tx, tenant, region, now)
			return err
		case err != nil:
			return fmt.Errorf("read active key: %w", err)
		}
		if rotateAfter > 0 && now.Sub(db.FromMicros(created)) >= rotateAfter {
			out, err = ks.rotateTx(ctx, tx, tenant, region, now, publishFor)
			return err
		}
		priv, err := ks.unseal(sealed, tenant, region, kid)
		if err != nil {
			return err
		}
		out = signingKey{kid: kid, priv: priv, createdAt: db.FromMicros(created)}
		return nil
	})
	if err != nil && db.IsUniqueViolation(err) {
		// Another replica created or rotated the key at the same moment;
		// theirs is as good as ours.
		return ks.active(ctx, tenant, region, now, 0, publishFor)
	}
	if err != nil {
		return signingKey{}, fmt.Errorf("signing key of tenant %q region %q: %w", tenant, region, err)
	}
	return out, nil
}

func (ks *keyStore) insert(ctx context.Context, tx *sql.Tx, tenant, region string, now time.Time) (signingKey, error) {
	priv, err := keys.Generate(rand.Reader)
	if err != nil {
		return signingKey{}, fmt.Errorf("generate key: %w", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	kid := keys.KeyID(pub)
	sealed, err := ks.seal(priv, tenant, region, kid)
	if err != nil {
		return signingKey{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO token_keys (kid, tenant, region, public_key, sealed_private, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		kid, tenant, region, base64.RawURLEncoding.EncodeToString(pub), sealed, db.Micros(now)); err != nil {
		return signingKey{}, fmt.Errorf("store key: %w", err)
	}
	return signingKey{kid: kid, priv: priv, createdAt: now, fresh: true}, nil
}

// rotateTx retires the active key (published for publishFor more) and
// creates its successor.
func (ks *keyStore) rotateTx(ctx context.Context, tx *sql.Tx, tenant, region string, now time.Time, publishFor time.Duration) (signingKey, error) {
	if _, err := tx.ExecContext(ctx, `UPDATE token_keys SET retired_at = $1, publish_until = $2 WHERE tenant = $3 AND region = $4 AND retired_at IS NULL`,
		db.Micros(now), db.Micros(now.Add(publishFor)), tenant, region); err != nil {
		return signingKey{}, fmt.Errorf("retire key: %w", err)
	}
	return ks.insert(ctx, tx, tenant, region, now)
}

func (ks *keyStore) rotate(ctx context.Context, tenant, region string, now time.Time, publishFor time.Duration) (string, error) {
	var kid string
	err := ks.db.Tx(ctx, func(tx *sql.Tx) error {
		k, err := ks.rotateTx(ctx, tx, tenant, region, now, publishFor)
		kid = k.kid
		return err
	})
	if err != nil {
		return "", fmt.Errorf("rotate key of tenant %q region %q: %w", tenant, region, err)
	}
	return kid, nil
}

// published lists the keys verifiers must accept at now: every active key
// and every retired key whose tokens may still be alive. An empty tenant
// lists every tenant's keys. Order is stable (tenant, region, created).
func (ks *keyStore) published(ctx context.Context, tenant string, now time.Time) ([]publishedKey, error) {
	q := `SELECT kid, tenant, region, public_key FROM token_keys WHERE (retired_at IS NULL OR publish_until > $1)`
	args := []any{db.Micros(now)}
	if tenant != "" {
		q += ` AND tenant = $2`
		args = append(args, tenant)
	}
	rows, err := ks.db.QueryContext(ctx, q+` ORDER BY tenant, region, created_at, kid`, args...)
	if err != nil {
		return nil, fmt.Errorf("list published keys: %w", err)
	}
	defer rows.Close()
	var out []publishedKey
	for rows.Next() {
		var k publishedKey
		var pub string
		if err := rows.Scan(&k.kid, &k.tenant, &k.region, &pub); err != nil {
			return nil, fmt.Errorf("list published keys: %w", err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(pub)
		if err != nil || len(raw) != ed25519.PublicKeySize || keys.KeyID(raw) != k.kid {
			return nil, fmt.Errorf("list published keys: key %s is corrupt", k.kid)
		}
		k.pub = raw
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list published keys: %w", err)
	}
	return out, nil
}

// keySet is the verification key set of tenant at now.
func (ks *keyStore) keySet(ctx context.Context, tenant string, now time.Time) (*token.KeySet, error) {
	pk, err := ks.published(ctx, tenant, now)
	if err != nil {
		return nil, err
	}
	return token.NewBoundKeySet(bound(pk)...)
}

// lookup finds a published key by kid, across tenants.
func (ks *keyStore) lookup(ctx context.Context, kid string, now time.Time) (tenant string, pub ed25519.PublicKey, found bool, err error) {
	var enc string
	err = ks.db.QueryRowContext(ctx, `SELECT tenant, public_key FROM token_keys WHERE kid = $1 AND (retired_at IS NULL OR publish_until > $2)`,
		kid, db.Micros(now)).Scan(&tenant, &enc)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("look up key %s: %w", kid, err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(raw) != ed25519.PublicKeySize || keys.KeyID(raw) != kid {
		return "", nil, false, fmt.Errorf("look up key %s: stored key is corrupt", kid)
	}
	return tenant, raw, true, nil
}
