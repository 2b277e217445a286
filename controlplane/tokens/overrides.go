package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aegis-mesh/aegis/token"
)

// MintOverride signs a one-time override token with the tenant's key for
// the default region. Issuer and jti are set here; the lifetime is capped at
// MaxTTL so a retired key never outlives the overrides it signed.
func (s *Service) MintOverride(ctx context.Context, c token.OverrideClaims) (tok, jti string, err error) {
	now := s.now()
	c.Issuer = s.cfg.Issuer
	if c.IssuedAt == 0 {
		c.IssuedAt = now.Unix()
	}
	c.ExpiresAt = min(c.ExpiresAt, now.Add(s.cfg.MaxTTL).Unix())
	if c.ID, err = newJTI(); err != nil {
		return "", "", err
	}
	k, err := s.activeKey(ctx, c.Tenant, "")
	if err != nil {
		return "", "", err
	}
	tok, err = token.MintOverride(k.priv, c)
	if err != nil {
		return "", "", err
	}
	s.m.minted.WithLabelValues("override").Inc()
	return tok, c.ID, nil
}

// VerifyOverride checks an override token against the tenant's published
// keys (signature, typ, audience, issuer, tenant, clock at now). Binding it
// to a request and redeeming it once are the caller's job.
func (s *Service) VerifyOverride(ctx context.Context, tenant, tok string, now time.Time) (*token.OverrideClaims, error) {
	if tenant == "" {
		return nil, errors.New("verify override: empty tenant")
	}
	ks, err := s.keys.keySet(ctx, tenant, now)
	if err != nil {
		return nil, fmt.Errorf("verify override: %w", err)
	}
	return token.VerifyOverride(tok, ks, token.VerifyOptions{Now: now, Issuer: s.cfg.Issuer, Tenant: tenant})
}
