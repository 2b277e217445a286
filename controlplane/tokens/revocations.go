package tokens

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

// Revocation kinds.
const (
	KindAgent = "agent"
	KindJTI   = "jti"
)

// Revocation is one revoked agent or token id.
type Revocation struct {
	Tenant    string     `json:"tenant"`
	Kind      string     `json:"kind"`
	Value     string     `json:"value"`
	Reason    string     `json:"reason,omitempty"`
	RevokedBy string     `json:"revoked_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Revoke records r (idempotent: revoking twice keeps the first record).
// A jti revocation without an expiry lasts as long as the longest token
// could, after which the token is dead anyway.
func (s *Service) Revoke(ctx context.Context, r Revocation) error {
	if r.Kind != KindAgent && r.Kind != KindJTI {
		return fmt.Errorf("revoke: kind %q, want %s or %s", r.Kind, KindAgent, KindJTI)
	}
	if r.Tenant == "" || r.Value == "" {
		return errors.New("revoke: tenant and value are required")
	}
	var exp any
	if r.ExpiresAt != nil {
		exp = db.Micros(*r.ExpiresAt)
	} else if r.Kind == KindJTI {
		exp = db.Micros(r.CreatedAt.Add(s.cfg.MaxTTL + 2*tokenSkew))
	}
	_, err := s.cfg.DB.ExecContext(ctx, `INSERT INTO token_revocations (tenant, kind, value, reason, revoked_by, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, kind, value) DO NOTHING`,
		r.Tenant, r.Kind, r.Value, r.Reason, r.RevokedBy, db.Micros(r.CreatedAt), exp)
	if err != nil {
		return fmt.Errorf("revoke %s %q of tenant %q: %w", r.Kind, r.Value, r.Tenant, err)
	}
	s.m.revocations.WithLabelValues(r.Kind).Inc()
	s.revocationsChanged(ctx, r.Tenant)
	return nil
}

// Unrevoke removes a revocation; it reports whether one existed.
func (s *Service) Unrevoke(ctx context.Context, tenant, kind, value string) (bool, error) {
	res, err := s.cfg.DB.ExecContext(ctx, `DELETE FROM token_revocations WHERE tenant = $1 AND kind = $2 AND value = $3`, tenant, kind, value)
	if err != nil {
		return false, fmt.Errorf("unrevoke %s %q of tenant %q: %w", kind, value, tenant, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("unrevoke %s %q of tenant %q: %w", kind, value, tenant, err)
	}
	if n > 0 {
		s.revocationsChanged(ctx, tenant)
	}
	return n > 0, nil
}

// Revocations lists the tenant's revocations still in force at now.
func (s *Service) Revocations(ctx context.Context, tenant string, now time.Time) ([]Revocation, error) {
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT kind, value, reason, revoked_by, created_at, expires_at FROM token_revocations
		WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY kind, value`, tenant, db.Micros(now))
	if err != nil {
		return nil, fmt.Errorf("revocations of tenant %q: %w", tenant, err)
	}
	defer rows.Close()
	out := []Revocation{}
	for rows.Next() {
		r := Revocation{Tenant: tenant}
		var created int64
		var exp sql.NullInt64
		if err := rows.Scan(&r.Kind, &r.Value, &r.Reason, &r.RevokedBy, &created, &exp); err != nil {
			return nil, fmt.Errorf("revocations of tenant %q: %w", tenant, err)
		}
		r.CreatedAt = db.FromMicros(created)
		if exp.Valid {
			t := db.FromMicros(exp.Int64)
			r.ExpiresAt = &t
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revocations of tenant %q: %w", tenant, err)
	}
	return out, nil
}

// SetKillSwitch turns the tenant's kill switch on or off.
func (s *Service) SetKillSwitch(ctx context.Context, tenant string, enabled bool, by string, now time.Time) error {
	on := 0
	if enabled {
		on = 1
	}
	_, err := s.cfg.DB.ExecContext(ctx, `INSERT INTO token_kill_switch (tenant, enabled, updated_by, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant) DO UPDATE SET enabled = excluded.enabled, updated_by = excluded.updated_by, updated_at = excluded.updated_at`,
		tenant, on, by, db.Micros(now))
	if err != nil {
		return fmt.Errorf("kill switch of tenant %q: %w", tenant, err)
	}
	s.revocationsChanged(ctx, tenant)
	return nil
}

// KillSwitch reports whether the tenant's kill switch is on.
func (s *Service) KillSwitch(ctx context.Context, tenant string) (bool, error) {
	var on int
	err := s.cfg.DB.QueryRowContext(ctx, `SELECT enabled FROM token_kill_switch WHERE tenant = $1`, tenant).Scan(&on)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("kill switch of tenant %q: %w", tenant, err)
	}
	return on != 0, nil
}

// LiveRevocations is what the live state document carries for tenant:
// revoked agents and token ids (sorted) and the kill switch.
func (s *Service) LiveRevocations(ctx context.Context, tenant string) (agents, jtis []string, killSwitch bool, err error) {
	rs, err := s.Revocations(ctx, tenant, s.now())
	if err != nil {
		return nil, nil, false, err
	}
	agents, jtis = []string{}, []string{}
	for _, r := range rs {
		if r.Kind == KindAgent {
			agents = append(agents, r.Value)
		} else {
			jtis = append(jtis, r.Value)
		}
	}
	killSwitch, err = s.KillSwitch(ctx, tenant)
	if err != nil {
		return nil, nil, false, err
	}
	return agents, jtis, killSwitch, nil
}

// revoked reports whether a token of tenant with this chain and jti is
// revoked, or the tenant's kill switch is on; the reason says which.
func (s *Service) revoked(ctx context.Context, tenant string, chain []string, jti string) (string, error) {
	on, err := s.KillSwitch(ctx, tenant)
	if err != nil {
		return "", err
	}
	if on {
		return "the tenant's kill switch is on", nil
	}
	var n int
	if err := s.cfg.DB.QueryRowContext(ctx, `SELECT count(*) FROM token_revocations WHERE tenant = $1 AND kind = 'jti' AND value = $2 AND (expires_at IS NULL OR expires_at > $3)`,
		tenant, jti, db.Micros(s.now())).Scan(&n); err != nil {
		return "", fmt.Errorf("check revocations: %w", err)
	}
	if n > 0 {
		return "the token is revoked", nil
	}
	for _, a := range chain {
		if err := s.cfg.DB.QueryRowContext(ctx, `SELECT count(*) FROM token_revocations WHERE tenant = $1 AND kind = 'agent' AND value = $2 AND (expires_at IS NULL OR expires_at > $3)`,
			tenant, a, db.Micros(s.now())).Scan(&n); err != nil {
			return "", fmt.Errorf("check revocations: %w", err)
		}
		if n > 0 {
			return fmt.Sprintf("agent %q is revoked", a), nil
		}
	}
	return "", nil
}
