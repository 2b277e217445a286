package auth

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Sentinels of the store.
var (
	ErrUnknownTenant = errors.New("unknown tenant")
	ErrTenantExists  = errors.New("tenant already exists")
	ErrRevoked       = errors.New("API token revoked or unknown")
)

// tenantName is the name syntax bundle manifests accept, so every tenant
// can own bundles.
var tenantName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidTenantName reports whether s can name a tenant.
func ValidTenantName(s string) bool { return tenantName.MatchString(s) }

// Tenant is one tenant and its approval settings.
type Tenant struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// TwoPerson forbids the submitter of a policy from approving it.
	TwoPerson bool `json:"two_person"`
	// ApprovalsRequired is how many distinct approvers a policy needs.
	ApprovalsRequired int `json:"approvals_required"`
}

// Store keeps tenants, issued API tokens and the bootstrap marker.
type Store struct{ db *db.DB }

// NewStore migrates the auth tables and returns the store.
func NewStore(ctx context.Context, d *db.DB) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, "auth", sub); err != nil {
		return nil, err
	}
	return &Store{db: d}, nil
}

// CreateTenant adds a tenant; ErrTenantExists when the name is taken.
func (s *Store) CreateTenant(ctx context.Context, t Tenant) error {
	if !ValidTenantName(t.Name) {
		return fmt.Errorf("tenant name %q: want letters, digits, '.', '_' or '-', at most 128", t.Name)
	}
	if t.ApprovalsRequired < 1 {
		t.ApprovalsRequired = 1
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO tenants (name, created_at, created_by, two_person, approvals_required) VALUES ($1, $2, $3, $4, $5)`,
		t.Name, db.Micros(t.CreatedAt), t.CreatedBy, t.TwoPerson, t.ApprovalsRequired)
	if db.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %s", ErrTenantExists, t.Name)
	}
	if err != nil {
		return fmt.Errorf("create tenant %s: %w", t.Name, err)
	}
	return nil
}

// Tenant returns one tenant, or ErrUnknownTenant.
func (s *Store) Tenant(ctx context.Context, name string) (Tenant, error) {
	var t Tenant
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT name, created_at, created_by, two_person, approvals_required FROM tenants WHERE name = $1`, name).
		Scan(&t.Name, &created, &t.CreatedBy, &t.TwoPerson, &t.ApprovalsRequired)
	if errors.Is(err, sql.ErrNoRows) {
		return Tenant{}, fmt.Errorf("%w: %s", ErrUnknownTenant, name)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("read tenant %s: %w", name, err)
	}
	t.CreatedAt = db.FromMicros(created)
	return t, nil
}

// Tenants lists every tenant by name.
func (s *Store) Tenants(ctx context.Context) ([]Tenant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, created_at, created_by, two_person, approvals_required FROM tenants ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	defer rows.Close()
	out := []Tenant{}
	for rows.Next() {
		var t Tenant
		var created int64
		if err := rows.Scan(&t.Name, &created, &t.CreatedBy, &t.TwoPerson, &t.ApprovalsRequired); err != nil {
			return nil, fmt.Errorf("list tenants: %w", err)
		}
		t.CreatedAt = db.FromMicros(created)
		out = append(out, t)
	}
	return out, rows.Err()
}

// SetApprovalRule changes a tenant's approval settings.
func (s *Store) SetApprovalRule(ctx context.Context, name string, twoPerson bool, required int) error {
	if required < 1 || required > 10 {
		return fmt.Errorf("approvals_required %d: want 1..10", required)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE tenants SET two_person = $2, approvals_required = $3 WHERE name = $1`, name, twoPerson, required)
	if err != nil {
		return fmt.Errorf("update tenant %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrUnknownTenant, name)
	}
	return nil
}

// RecordToken stores an issued token so it can be listed and revoked.
func (s *Store) RecordToken(ctx context.Context, it IssuedToken, issuedBy string) error {
	return recordToken(ctx, s.db, it, issuedBy)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func recordToken(ctx context.Context, e execer, it IssuedToken, issuedBy string) error {
	roles := make([]string, len(it.Principal.Roles))
	for i, r := range it.Principal.Roles {
		roles[i] = string(r)
	}
	_, err := e.ExecContext(ctx, `INSERT INTO api_tokens (jti, subject, tenant, roles, issued_by, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		it.ID, it.Principal.Subject, it.Principal.Tenant, strings.Join(roles, " "), issuedBy, db.Micros(it.IssuedAt), db.Micros(it.ExpiresAt))
	if err != nil {
		return fmt.Errorf("record API token: %w", err)
	}
	return nil
}

// RecordTokenTx is RecordToken inside a caller's transaction.
func RecordTokenTx(ctx context.Context, tx *sql.Tx, it IssuedToken, issuedBy string) error {
	return recordToken(ctx, tx, it, issuedBy)
}

// CheckToken fails with ErrRevoked unless jti was issued here and is not
// revoked: a token signed by our key but never recorded (a write that did
// not commit) is not honoured either.
func (s *Store) CheckToken(ctx context.Context, jti string) error {
	var revoked sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT revoked_at FROM api_tokens WHERE jti = $1`, jti).Scan(&revoked)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && revoked.Valid) {
		return ErrRevoked
	}
	if err != nil {
		return fmt.Errorf("check API token: %w", err)
	}
	return nil
}

// RevokeToken revokes jti; tenant scopes the revocation for tenant admins
// (empty: any tenant). It reports whether a token was revoked.
func (s *Store) RevokeToken(ctx context.Context, jti, tenant string, now time.Time) (bool, error) {
	q := `UPDATE api_tokens SET revoked_at = $2 WHERE jti = $1 AND revoked_at IS NULL`
	args := []any{jti, db.Micros(now)}
	if tenant != "" {
		q += ` AND tenant = $3`
		args = append(args, tenant)
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("revoke API token: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// ClaimBootstrap marks name as done, once per database: the first caller
// gets true, every later one (any replica) false.
func (s *Store) ClaimBootstrap(ctx context.Context, name string, now time.Time, fn func(tx *sql.Tx) error) (bool, error) {
	claimed := false
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		claimed = false
		res, err := tx.ExecContext(ctx, `INSERT INTO bootstrap (name, done_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, db.Micros(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		claimed = true
		return fn(tx)
	})
	if err != nil {
		return false, fmt.Errorf("bootstrap %s: %w", name, err)
	}
	return claimed, nil
}

// RevokeSubject revokes every active token of subject in tenant (a
// disabled node, a departed user).
func (s *Store) RevokeSubject(ctx context.Context, tenant, subject string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = $3 WHERE tenant = $1 AND subject = $2 AND revoked_at IS NULL`, tenant, subject, db.Micros(now))
	if err != nil {
		return fmt.Errorf("revoke tokens of %s: %w", subject, err)
	}
	return nil
}

// TokenInfo describes an issued API token (never the token itself).
type TokenInfo struct {
	JTI       string     `json:"jti"`
	Subject   string     `json:"subject"`
	Tenant    string     `json:"tenant,omitempty"`
	Roles     []Role     `json:"roles"`
	IssuedBy  string     `json:"issued_by"`
	IssuedAt  time.Time  `json:"issued_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Tokens lists the API tokens issued for tenant: who holds which roles.
func (s *Store) Tokens(ctx context.Context, tenant string) ([]TokenInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT jti, subject, tenant, roles, issued_by, issued_at, expires_at, revoked_at FROM api_tokens WHERE tenant = $1 ORDER BY issued_at, jti`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	defer rows.Close()
	out := []TokenInfo{}
	for rows.Next() {
		var ti TokenInfo
		var roles string
		var issued, expires int64
		var revoked sql.NullInt64
		if err := rows.Scan(&ti.JTI, &ti.Subject, &ti.Tenant, &roles, &ti.IssuedBy, &issued, &expires, &revoked); err != nil {
			return nil, fmt.Errorf("list API tokens: %w", err)
		}
		for _, r := range strings.Fields(roles) {
			ti.Roles = append(ti.Roles, Role(r))
		}
		ti.IssuedAt, ti.ExpiresAt = db.FromMicros(issued), db.FromMicros(expires)
		if revoked.Valid {
			t := db.FromMicros(revoked.Int64)
			ti.RevokedAt = &t
		}
		out = append(out, ti)
	}
	return out, rows.Err()
}
