// Package signing holds the control plane's Ed25519 signing keys (one for
// policy bundles, one for live state) and the public keys that verify what
// earlier keys signed. Signatures go through sigstore's signer/verifier so
// the same keys work with sigstore tooling; they are pure Ed25519 (RFC
// 8032) over the exact message bytes, as package bundle and openssl expect.
//
// Rotation: point the config at a new key file and restart. Every key that
// ever signed is recorded in the database (Store.Record), so releases
// signed before the rotation keep verifying without operator action.
package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/aegis-mesh/aegis/keys"
)

// Purposes of signing keys; a key is used for one purpose only, so a state
// document can never pass as a bundle manifest and the reverse.
const (
	PurposeBundle = "bundle"
	PurposeState  = "state"
	PurposeAPI    = "api"
)

// ErrUnknownKey is a key id that no trusted key has.
var ErrUnknownKey = errors.New("unknown signing key")

// Key is a private signing key with its id (RFC 7638 thumbprint, as
// keys.KeyID computes it).
type Key struct {
	ID     string
	Public ed25519.PublicKey
	priv   ed25519.PrivateKey
	signer *signature.ED25519SignerVerifier
}

// NewKey wraps an Ed25519 private key.
func NewKey(priv ed25519.PrivateKey) (*Key, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	sv, err := signature.LoadED25519SignerVerifier(priv)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return &Key{ID: keys.KeyID(pub), Public: pub, priv: priv, signer: sv}, nil
}

// LoadOrCreate reads a PKCS#8 PEM private key from path, or generates one
// there (mode 0600, parent directories 0700) when the file does not exist.
// created reports whether a new key was written.
func LoadOrCreate(path string) (k *Key, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		priv, gerr := keys.Generate(rand.Reader)
		if gerr != nil {
			return nil, false, fmt.Errorf("generate signing key: %w", gerr)
		}
		pemBytes, merr := keys.MarshalPrivatePEM(priv)
		if merr != nil {
			return nil, false, fmt.Errorf("encode signing key: %w", merr)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("signing key %s: %w", path, err)
		}
		// O_EXCL: two replicas sharing a data dir must not overwrite each
		// other's fresh key; the loser reads the winner's.
		f, oerr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(oerr, os.ErrExist) {
			return LoadOrCreate(path)
		}
		if oerr != nil {
			return nil, false, fmt.Errorf("signing key %s: %w", path, oerr)
		}
		if _, werr := f.Write(pemBytes); werr != nil {
			f.Close()
			return nil, false, fmt.Errorf("signing key %s: %w", path, werr)
		}
		if err := f.Close(); err != nil {
			return nil, false, fmt.Errorf("signing key %s: %w", path, err)
		}
		k, err := NewKey(priv)
		return k, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, err := keys.ParsePrivatePEM(data)
	if err != nil {
		return nil, false, fmt.Errorf("signing key %s: %w", path, err)
	}
	k, err = NewKey(priv)
	return k, false, err
}

// Sign returns the pure Ed25519 signature of msg.
func (k *Key) Sign(msg []byte) ([]byte, error) {
	sig, err := k.signer.SignMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("sign with key %s: %w", k.ID, err)
	}
	return sig, nil
}

// Private returns the private key, for package bundle's builder, which
// signs the manifest it writes itself.
func (k *Key) Private() ed25519.PrivateKey { return k.priv }

// Ring is the current key of one purpose plus every public key trusted to
// have signed for that purpose. Safe for concurrent use.
type Ring struct {
	Purpose string
	current *Key
	mu      sync.RWMutex
	trusted map[string]ed25519.PublicKey
}

// NewRing trusts current and the given earlier public keys.
func NewRing(purpose string, current *Key, earlier ...ed25519.PublicKey) *Ring {
	r := &Ring{Purpose: purpose, current: current, trusted: map[string]ed25519.PublicKey{current.ID: current.Public}}
	for _, p := range earlier {
		r.Trust(p)
	}
	return r
}

// Current is the key new signatures are made with.
func (r *Ring) Current() *Key { return r.current }

// Trust adds a public key.
func (r *Ring) Trust(pub ed25519.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trusted[keys.KeyID(pub)] = pub
}

// Lookup returns the trusted public key with id kid.
func (r *Ring) Lookup(kid string) (ed25519.PublicKey, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.trusted[kid]
	return p, ok
}

// Verify checks sig over msg with the trusted key kid.
func (r *Ring) Verify(kid string, msg, sig []byte) error {
	pub, ok := r.Lookup(kid)
	if !ok {
		return fmt.Errorf("%w: %s key %q", ErrUnknownKey, r.Purpose, kid)
	}
	v, err := signature.LoadED25519Verifier(pub)
	if err != nil {
		return fmt.Errorf("load verifier %s: %w", kid, err)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
		return fmt.Errorf("%s signature by key %s: %w", r.Purpose, kid, err)
	}
	return nil
}

// PublicKeys returns the trusted keys sorted by id.
func (r *Ring) PublicKeys() []ed25519.PublicKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]string, 0, len(r.trusted))
	for id := range r.trusted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]ed25519.PublicKey, 0, len(ids))
	for _, id := range ids {
		out = append(out, r.trusted[id])
	}
	return out
}
