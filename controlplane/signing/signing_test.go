package signing

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "bundle.key")
	k1, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first load: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v err %v, want 0600", fi.Mode(), err)
	}
	k2, created, err := LoadOrCreate(path)
	if err != nil || created || k2.ID != k1.ID {
		t.Fatalf("second load: created=%v id %s vs %s err=%v", created, k2.ID, k1.ID, err)
	}
	sig, err := k1.Sign([]byte("manifest"))
	if err != nil {
		t.Fatal(err)
	}
	// sigstore's signer must produce plain RFC 8032 signatures.
	if !ed25519.Verify(k1.Public, []byte("manifest"), sig) {
		t.Fatal("signature is not pure Ed25519")
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreate(bad); err == nil {
		t.Fatal("garbage key accepted")
	}
}

func TestRotation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s, err := NewStore(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		now := time.Now()
		r1, _, err := LoadRing(ctx, s, PurposeBundle, filepath.Join(dir, "old.key"), nil, now)
		if err != nil {
			t.Fatal(err)
		}
		oldID := r1.Current().ID
		oldSig, err := r1.Current().Sign([]byte("release 1"))
		if err != nil {
			t.Fatal(err)
		}
		// Restart with a new key file: the old key is still trusted.
		r2, created, err := LoadRing(ctx, s, PurposeBundle, filepath.Join(dir, "new.key"), nil, now.Add(time.Hour))
		if err != nil || !created {
			t.Fatalf("rotate: %v", err)
		}
		if r2.Current().ID == oldID {
			t.Fatal("rotation kept the old key id")
		}
		if err := r2.Verify(oldID, []byte("release 1"), oldSig); err != nil {
			t.Fatalf("old signature after rotation: %v", err)
		}
		if err := r2.Verify(oldID, []byte("release 2"), oldSig); err == nil {
			t.Fatal("signature over other bytes verified")
		}
		if got := len(r2.PublicKeys()); got != 2 {
			t.Fatalf("trusted keys %d, want 2", got)
		}
		// The state purpose shares nothing with the bundle purpose.
		st, _, err := LoadRing(ctx, s, PurposeState, filepath.Join(dir, "state.key"), nil, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Verify(oldID, []byte("release 1"), oldSig); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("bundle key trusted for state: %v", err)
		}
	})
}
