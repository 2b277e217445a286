package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/keys"
)

// Errors returned by Verify; callers branch on them with errors.Is.
var (
	ErrMalformed    = errors.New("malformed token")
	ErrAlgorithm    = errors.New("token algorithm not accepted")
	ErrUnknownKey   = errors.New("token signed by an unknown key")
	ErrSignature    = errors.New("token signature does not verify")
	ErrExpired      = errors.New("token has expired")
	ErrNotYetValid  = errors.New("token is not valid yet")
	ErrIssuer       = errors.New("token issuer not accepted")
	ErrAudience     = errors.New("token audience not accepted")
	ErrTenant       = errors.New("token tenant not accepted")
	ErrChain        = errors.New("token delegation chain not accepted")
	errClaimMissing = errors.New("required claim missing")
)

// Defaults for VerifyOptions.
const (
	DefaultSkew    = 60 * time.Second
	DefaultMaxSize = 8 << 10
	Algorithm      = "EdDSA"
	Type           = "JWT"
)

type header struct {
	Alg  string
	Kid  string
	Typ  string
	Crit []byte // present only to refuse it
}

// Mint signs c with priv. The header is {"alg":"EdDSA","kid":<KeyID of
// the public key>,"typ":"JWT"}. A missing jti is filled with 128 random
// bits (base64url). sub, tenant, iat and exp are required, exp must be
// after iat, and the delegation chain must pass the same checks Verify
// applies.
func Mint(priv ed25519.PrivateKey, c Claims) (string, error) {
	return mint(priv, c, rand.Reader)
}

func mint(priv ed25519.PrivateKey, c Claims, random io.Reader) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", errs.Errorf("mint token: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if c.ID == "" {
		var id [16]byte
		if _, err := io.ReadFull(random, id[:]); err != nil {
			return "", errs.Errorf("mint token: jti: %w", err)
		}
		c.ID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	switch {
	case c.Subject == "":
		return "", errs.Errorf("mint token: %w: sub", errClaimMissing)
	case c.Tenant == "":
		return "", errs.Errorf("mint token: %w: tenant", errClaimMissing)
	case c.IssuedAt <= 0:
		return "", errs.Errorf("mint token: %w: iat", errClaimMissing)
	case c.ExpiresAt <= c.IssuedAt:
		return "", errs.Errorf("mint token: exp %d is not after iat %d", c.ExpiresAt, c.IssuedAt)
	}
	if err := checkChain(&c); err != nil {
		return "", errs.Errorf("mint token: %w", err)
	}
	h := appendHeader(nil, header{Alg: Algorithm, Kid: keys.KeyID(priv.Public().(ed25519.PublicKey)), Typ: Type})
	p := appendClaims(nil, &c)
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	return signing + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(signing))), nil
}

// VerifyOptions configure Verify. Empty Issuer, Audience and Tenant skip
// those checks; the others have defaults.
type VerifyOptions struct {
	Now      time.Time     // zero: time.Now()
	Skew     time.Duration // clock tolerance for exp, nbf, iat; zero: DefaultSkew
	Issuer   string        // required iss
	Audience string        // a value aud must contain
	Tenant   string        // required tenant
	MaxSize  int           // largest token accepted; zero: DefaultMaxSize
}

// Verify checks token and returns its claims. Order matters: the header is
// parsed only far enough to pick the key, the signature is checked, and
// only then are claims decoded and trusted.
func Verify(token string, ks *KeySet, opts VerifyOptions) (*Claims, error) {
	pJSON, kid, err := verifySignature(token, ks, opts.MaxSize, Type)
	if err != nil {
		return nil, err
	}
	c, err := decodeClaims(pJSON)
	if err != nil {
		return nil, errs.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if err := checkClaims(&c, opts); err != nil {
		return nil, err
	}
	if t := ks.Tenant(kid); t != "" && c.Tenant != t {
		return nil, errs.Errorf("%w: signed by a key of tenant %q", ErrTenant, t)
	}
	return &c, nil
}

func checkClaims(c *Claims, opts VerifyOptions) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	skew := opts.Skew
	if skew == 0 {
		skew = DefaultSkew
	}
	if skew < 0 {
		skew = 0
	}
	switch {
	case c.Subject == "":
		return errs.Errorf("%w: %w: sub", ErrMalformed, errClaimMissing)
	case c.ExpiresAt <= 0:
		return errs.Errorf("%w: %w: exp", ErrMalformed, errClaimMissing)
	case c.ID == "":
		// Revocation lists name tokens by jti; a token without one could
		// not be revoked on its own.
		return errs.Errorf("%w: %w: jti", ErrMalformed, errClaimMissing)
	case c.NotBefore < 0 || c.IssuedAt < 0:
		return errs.Errorf("%w: negative nbf or iat", ErrMalformed)
	}
	// Compare in seconds: NumericDate has no finer resolution.
	early := now.Add(skew).Unix()
	late := now.Add(-skew).Unix()
	if late >= c.ExpiresAt {
		return errs.Errorf("%w: exp %s", ErrExpired, time.Unix(c.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	if c.NotBefore != 0 && early < c.NotBefore {
		return errs.Errorf("%w: nbf %s", ErrNotYetValid, time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	if c.IssuedAt != 0 && early < c.IssuedAt {
		return errs.Errorf("%w: iat %s is in the future", ErrNotYetValid, time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339))
	}
	if opts.Issuer != "" && c.Issuer != opts.Issuer {
		return errs.Errorf("%w: iss %q, want %q", ErrIssuer, c.Issuer, opts.Issuer)
	}
	if opts.Audience != "" {
		found := false
		for _, a := range c.Audience {
			found = found || a == opts.Audience
		}
		if !found {
			return errs.Errorf("%w: aud %q does not contain %q", ErrAudience, []string(c.Audience), opts.Audience)
		}
	}
	if c.Tenant == "" {
		return errs.Errorf("%w: token has no tenant", ErrTenant)
	}
	if opts.Tenant != "" && c.Tenant != opts.Tenant {
		return errs.Errorf("%w: tenant %q, want %q", ErrTenant, c.Tenant, opts.Tenant)
	}
	return checkChain(c)
}

// decodeSegment decodes one base64url part strictly: the URL alphabet
// only, no padding, no line breaks (the standard decoder skips them), and
// no stray bits in the last character.
func decodeSegment(what, s string) ([]byte, error) {
	if s == "" {
		return nil, errs.Errorf("%w: empty %s", ErrMalformed, what)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return nil, errs.Errorf("%w: %s: byte %#x is not base64url", ErrMalformed, what, c)
		}
	}
	out, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errs.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	return out, nil
}
