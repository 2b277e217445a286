package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"io"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/keys"
)

// Override tokens are one-time approvals minted by the control plane with
// the tenant's token key. They share the key set with agent tokens, so the
// header type is what keeps one kind from being accepted as the other.
const (
	OverrideType     = "aegis-override+jwt"
	OverrideAudience = "aegis-override"
)

// OverrideClaims are the claims of an override token: which agent may
// make which call (tool and params digest) once, and the approval that
// granted it. Times are NumericDate seconds; zero nbf means absent.
type OverrideClaims struct {
	Issuer       string   `json:"iss"`
	Subject      string   `json:"sub"` // the acting agent the approval is for
	Audience     Audience `json:"aud"`
	Tenant       string   `json:"tenant"`
	Tool         string   `json:"tool"`
	ParamsDigest string   `json:"params_digest"` // lower-case hex SHA-256
	ApprovalID   string   `json:"approval_id"`
	ID           string   `json:"jti"`
	IssuedAt     int64    `json:"iat"`
	ExpiresAt    int64    `json:"exp"`
	NotBefore    int64    `json:"nbf,omitempty"`
}

// MintOverride signs c with priv under the header
// {"alg":"EdDSA","kid":<KeyID of the public key>,"typ":"aegis-override+jwt"}.
// A missing jti is filled with 128 random bits and a missing aud with
// OverrideAudience; every other claim is required and must be well formed.
func MintOverride(priv ed25519.PrivateKey, c OverrideClaims) (string, error) {
	return mintOverride(priv, c, rand.Reader)
}

func mintOverride(priv ed25519.PrivateKey, c OverrideClaims, random io.Reader) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", errs.Errorf("mint override token: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if c.ID == "" {
		var id [16]byte
		if _, err := io.ReadFull(random, id[:]); err != nil {
			return "", errs.Errorf("mint override token: jti: %w", err)
		}
		c.ID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	if len(c.Audience) == 0 {
		c.Audience = Audience{OverrideAudience}
	}
	if err := checkOverrideShape(&c); err != nil {
		return "", errs.Errorf("mint override token: %w", err)
	}
	if c.ExpiresAt <= c.IssuedAt {
		return "", errs.Errorf("mint override token: exp %d is not after iat %d", c.ExpiresAt, c.IssuedAt)
	}
	h := appendHeader(nil, header{Alg: Algorithm, Kid: keys.KeyID(priv.Public().(ed25519.PublicKey)), Typ: OverrideType})
	p := appendOverrideClaims(nil, &c)
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	return signing + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(signing))), nil
}

// VerifyOverride checks an override token as strictly as Verify checks an
// agent token (EdDSA only, kid lookup, strict base64url and JSON, clock
// checks with skew, opts.Issuer and opts.Tenant) and in addition requires
// typ aegis-override+jwt, aud containing OverrideAudience (and
// opts.Audience when set), and every claim an override binds. Binding the
// claims to a request (agent, tool, params digest) is the caller's job.
func VerifyOverride(tok string, ks *KeySet, opts VerifyOptions) (*OverrideClaims, error) {
	payload, _, err := verifySignature(tok, ks, opts.MaxSize, OverrideType)
	if err != nil {
		return nil, err
	}
	c, err := decodeOverrideClaims(payload)
	if err != nil {
		return nil, errs.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if err := checkOverrideClaims(&c, opts); err != nil {
		return nil, err
	}
	return &c, nil
}

// verifySignature splits a compact JWS, checks its header (alg EdDSA, the
// wanted typ, a known kid, nothing else) and its signature, and returns
// the decoded payload, which is only then worth parsing, and the kid.
func verifySignature(tok string, ks *KeySet, maxSize int, typ string) ([]byte, string, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(tok) > maxSize {
		return nil, "", errs.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(tok), maxSize)
	}
	first := strings.IndexByte(tok, '.')
	if first < 0 {
		return nil, "", errs.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	second := first + 1 + strings.IndexByte(tok[first+1:], '.')
	if second <= first || strings.IndexByte(tok[second+1:], '.') >= 0 {
		return nil, "", errs.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}
	hJSON, err := decodeSegment("header", tok[:first])
	if err != nil {
		return nil, "", err
	}
	h, err := decodeHeader(hJSON)
	if err != nil {
		return nil, "", errs.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Crit != nil {
		return nil, "", errs.Errorf("%w: header: crit is not supported", ErrMalformed)
	}
	if h.Alg != Algorithm {
		return nil, "", errs.Errorf("%w: alg %q, want %q", ErrAlgorithm, h.Alg, Algorithm)
	}
	if h.Typ != typ {
		return nil, "", errs.Errorf("%w: header: typ %q, want %q", ErrMalformed, h.Typ, typ)
	}
	if h.Kid == "" {
		return nil, "", errs.Errorf("%w: header has no kid", ErrUnknownKey)
	}
	pub, ok := ks.Lookup(h.Kid)
	if !ok {
		return nil, "", errs.Errorf("%w: kid %q", ErrUnknownKey, h.Kid)
	}
	sig, err := decodeSegment("signature", tok[second+1:])
	if err != nil {
		return nil, "", err
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, []byte(tok[:second]), sig) {
		return nil, "", ErrSignature
	}
	payload, err := decodeSegment("payload", tok[first+1:second])
	return payload, h.Kid, err
}

// checkOverrideShape checks the claims every override must carry,
// independent of the clock and of the verifier's options.
func checkOverrideShape(c *OverrideClaims) error {
	missing := ""
	switch {
	case c.Issuer == "":
		missing = "iss"
	case c.Subject == "":
		missing = "sub"
	case c.Tenant == "":
		missing = "tenant"
	case c.Tool == "":
		missing = "tool"
	case c.ParamsDigest == "":
		missing = "params_digest"
	case c.ApprovalID == "":
		missing = "approval_id"
	case c.ID == "":
		missing = "jti"
	case c.IssuedAt <= 0:
		missing = "iat"
	case c.ExpiresAt <= 0:
		missing = "exp"
	}
	if missing != "" {
		return errs.Errorf("%w: %w: %s", ErrMalformed, errClaimMissing, missing)
	}
	if c.NotBefore < 0 {
		return errs.Errorf("%w: negative nbf", ErrMalformed)
	}
	if !isHexDigest(c.ParamsDigest) {
		return errs.Errorf("%w: params_digest is not 64 lower-case hex digits", ErrMalformed)
	}
	if !contains(c.Audience, OverrideAudience) {
		return errs.Errorf("%w: aud %q does not contain %q", ErrAudience, []string(c.Audience), OverrideAudience)
	}
	return nil
}

func checkOverrideClaims(c *OverrideClaims, opts VerifyOptions) error {
	if err := checkOverrideShape(c); err != nil {
		return err
	}
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
	early, late := now.Add(skew).Unix(), now.Add(-skew).Unix()
	if late >= c.ExpiresAt {
		return errs.Errorf("%w: exp %s", ErrExpired, time.Unix(c.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	if c.NotBefore != 0 && early < c.NotBefore {
		return errs.Errorf("%w: nbf %s", ErrNotYetValid, time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	if early < c.IssuedAt {
		return errs.Errorf("%w: iat %s is in the future", ErrNotYetValid, time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339))
	}
	if opts.Issuer != "" && c.Issuer != opts.Issuer {
		return errs.Errorf("%w: iss %q, want %q", ErrIssuer, c.Issuer, opts.Issuer)
	}
	if opts.Audience != "" && !contains(c.Audience, opts.Audience) {
		return errs.Errorf("%w: aud %q does not contain %q", ErrAudience, []string(c.Audience), opts.Audience)
	}
	if opts.Tenant != "" && c.Tenant != opts.Tenant {
		return errs.Errorf("%w: tenant %q, want %q", ErrTenant, c.Tenant, opts.Tenant)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
