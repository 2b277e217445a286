package bundle

import (
	"crypto/ed25519"
	"errors"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// Errors returned by Verify and the upgrade checks.
var (
	ErrUnsigned     = errors.New("bundle is not signed")
	ErrBadSignature = errors.New("bundle signature does not verify")
	ErrExpired      = errors.New("bundle has expired")
	ErrNotYetValid  = errors.New("bundle is not valid yet")
	ErrTenant       = errors.New("bundle is for another tenant")
	ErrDowngrade    = errors.New("bundle revision is lower than the current one")
	ErrConflict     = errors.New("bundle revision equals the current one with different content")
	ErrUnsupported  = errors.New("bundle needs builtins this engine does not have")
)

// ClockSkew is how far in the future created_at may be before Verify
// refuses the bundle: the compiler's clock and the node's need not agree
// to the second, but a bundle dated well ahead is a forgery or a mistake.
const ClockSkew = 5 * time.Minute

// Verify checks the signature over the exact manifest bytes with pub, then
// the validity window at now. The signature comes first: no manifest field
// is trusted before it.
func (b *Bundle) Verify(pub ed25519.PublicKey, now time.Time) error {
	if b.Signature == nil {
		return ErrUnsigned
	}
	if len(pub) != ed25519.PublicKeySize {
		return errs.Errorf("%w: public key has %d bytes, want %d", ErrBadSignature, len(pub), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(pub, b.ManifestBytes, b.Signature) {
		return ErrBadSignature
	}
	m := &b.Manifest
	if now.Add(ClockSkew).Before(m.CreatedAt) {
		return errs.Errorf("%w: created_at %s is after %s", ErrNotYetValid, m.CreatedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(m.ExpiresAt) {
		return errs.Errorf("%w: expires_at %s", ErrExpired, m.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// CheckTenant refuses a manifest built for another tenant.
func CheckTenant(m *Manifest, tenant string) error {
	if m.Tenant != tenant {
		return errs.Errorf("%w: bundle tenant %q, want %q", ErrTenant, m.Tenant, tenant)
	}
	return nil
}

// CheckUpgrade decides whether a node running current may switch to next
// (both already verified). current == nil means no bundle is loaded. A
// higher revision is accepted; the same revision only with identical
// manifest content (a re-delivery); a lower revision only as a signed
// rollback whose release.replaces names the current revision.
func CheckUpgrade(current, next *Manifest) error {
	if current == nil {
		return nil
	}
	if err := CheckTenant(next, current.Tenant); err != nil {
		return err
	}
	switch {
	case next.Revision > current.Revision:
		return nil
	case next.Revision == current.Revision:
		if !sameContent(current, next) {
			return errs.Errorf("%w: revision %d", ErrConflict, next.Revision)
		}
		return nil
	case next.Release != nil && next.Release.Replaces == current.Revision:
		return nil
	default:
		return errs.Errorf("%w: revision %d, running %d (a rollback must name %d in release.replaces)",
			ErrDowngrade, next.Revision, current.Revision, current.Revision)
	}
}

// CheckBuiltins refuses a manifest that needs a builtin for which
// supported returns false; the error lists every missing one.
func CheckBuiltins(m *Manifest, supported func(name string) bool) error {
	var missing []string
	for _, name := range m.Builtins {
		if !supported(name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return errs.Errorf("%w: %q", ErrUnsupported, missing)
	}
	return nil
}
