// Package nodes owns data-plane node identity: one-time join tokens,
// enrollment (node key registration, a client certificate from the control
// plane's CA and a node API token), and the lookups other services need —
// NodeKey for the audit ingest, Identity for mTLS callers. A node's tenant,
// region and role come from the join token an admin created, never from
// anything the node says about itself.
package nodes

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Sentinels.
var (
	ErrUnknownNode      = errors.New("unknown node")
	ErrJoinTokenInvalid = errors.New("join token not recognised")
	ErrJoinTokenUsed    = errors.New("join token already used")
	ErrJoinTokenExpired = errors.New("join token expired")
)

// Node roles (the data-plane kind), used for rollout targeting.
var Roles = []string{"gateway", "sidecar", "edge"}

// Node is an enrolled node.
type Node struct {
	ID         string            `json:"node_id"`
	Tenant     string            `json:"tenant"`
	Region     string            `json:"region"`
	Role       string            `json:"role"`
	Name       string            `json:"name"`
	PublicKey  ed25519.PublicKey `json:"-"`
	EnrolledAt time.Time         `json:"enrolled_at"`
	Disabled   bool              `json:"disabled"`
	// Serves is the set of tenants a shared gateway works for, Tenant (its
	// home) among them; empty for an ordinary node, which serves Tenant only.
	Serves []string `json:"serves,omitempty"`
}

// JoinToken is what an admin receives; Secret is shown once and only its
// SHA-256 is stored.
type JoinToken struct {
	ID        string    `json:"id"`
	Secret    string    `json:"join_token"`
	Tenant    string    `json:"tenant"`
	Region    string    `json:"region"`
	Role      string    `json:"role"`
	Serves    []string  `json:"serves,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Store keeps join tokens and nodes.
type Store struct{ db *db.DB }

// NewStore migrates the node tables and returns the store.
func NewStore(ctx context.Context, d *db.DB) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, "nodes", sub); err != nil {
		return nil, err
	}
	return &Store{db: d}, nil
}

// normServes returns serves sorted, without duplicates and with home in
// it, or nil when there is nothing beyond home (an ordinary node).
func normServes(home string, serves []string) []string {
	if len(serves) == 0 {
		return nil
	}
	out := append([]string{home}, serves...)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 1 {
		return nil
	}
	return out
}

// splitServes reads the stored comma-separated list (tenant names never
// contain a comma: they are validated labels).
func splitServes(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// CreateJoinToken makes a one-time join token for an ordinary node of
// tenant.
func (s *Store) CreateJoinToken(ctx context.Context, tenant, region, role, by string, now time.Time, ttl time.Duration) (JoinToken, error) {
	return s.CreateSharedJoinToken(ctx, tenant, region, role, nil, by, now, ttl)
}

// CreateSharedJoinToken makes a one-time join token for tenant. A non-empty
// serves makes the node it enrolls a shared gateway for those tenants;
// tenant is added to it when absent. Who may ask for that is the caller's
// decision (the HTTP handler allows only a global admin).
func (s *Store) CreateSharedJoinToken(ctx context.Context, tenant, region, role string, serves []string, by string, now time.Time, ttl time.Duration) (JoinToken, error) {
	serves = normServes(tenant, serves)
	jt := JoinToken{ID: "jt-" + randomString(9), Secret: "aegis-join-" + randomString(24), Tenant: tenant, Region: region, Role: role,
		Serves: serves, ExpiresAt: now.Add(ttl).UTC().Truncate(time.Microsecond)}
	_, err := s.db.ExecContext(ctx, `INSERT INTO join_tokens (id, token_hash, tenant, region, role, created_by, created_at, expires_at, serves) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		jt.ID, hashSecret(jt.Secret), tenant, region, role, by, db.Micros(now), db.Micros(jt.ExpiresAt), strings.Join(serves, ","))
	if err != nil {
		return JoinToken{}, fmt.Errorf("create join token: %w", err)
	}
	return jt, nil
}

// Enroll redeems secret exactly once and registers a node with pub. The
// claim of the join token, the node row and whatever finish does (record
// the node's API token) commit together or not at all.
func (s *Store) Enroll(ctx context.Context, secret, name string, pub ed25519.PublicKey, now time.Time, finish func(tx *sql.Tx, n Node) error) (Node, error) {
	var n Node
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var id string
		var expires int64
		var used sql.NullInt64
		var serves string
		err := tx.QueryRowContext(ctx, `SELECT id, tenant, region, role, expires_at, used_at, serves FROM join_tokens WHERE token_hash = $1`, hashSecret(secret)).
			Scan(&id, &n.Tenant, &n.Region, &n.Role, &expires, &used, &serves)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrJoinTokenInvalid
		}
		if err != nil {
			return err
		}
		if used.Valid {
			return ErrJoinTokenUsed
		}
		if db.Micros(now) >= expires {
			return ErrJoinTokenExpired
		}
		n.Serves = splitServes(serves)
		n.ID = "node-" + randomString(12)
		n.Name, n.PublicKey, n.EnrolledAt = name, pub, now.UTC().Truncate(time.Microsecond)
		// The used_at IS NULL guard makes the claim atomic: of two
		// concurrent enrollments with one token, one updates no row.
		res, err := tx.ExecContext(ctx, `UPDATE join_tokens SET used_at = $2, used_by = $3 WHERE id = $1 AND used_at IS NULL`, id, db.Micros(now), n.ID)
		if err != nil {
			return err
		}
		if c, err := res.RowsAffected(); err != nil || c != 1 {
			return ErrJoinTokenUsed
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO nodes (node_id, tenant, region, role, name, public_key, join_token_id, enrolled_at, serves) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			n.ID, n.Tenant, n.Region, n.Role, n.Name, []byte(pub), id, db.Micros(now), serves); err != nil {
			return err
		}
		return finish(tx, n)
	})
	if err != nil {
		if errors.Is(err, ErrJoinTokenInvalid) || errors.Is(err, ErrJoinTokenUsed) || errors.Is(err, ErrJoinTokenExpired) {
			return Node{}, err
		}
		return Node{}, fmt.Errorf("enroll: %w", err)
	}
	return n, nil
}

func scanNode(row interface{ Scan(...any) error }) (Node, error) {
	var n Node
	var pub []byte
	var enrolled int64
	var disabled sql.NullInt64
	var serves string
	if err := row.Scan(&n.ID, &n.Tenant, &n.Region, &n.Role, &n.Name, &pub, &enrolled, &disabled, &serves); err != nil {
		return Node{}, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return Node{}, fmt.Errorf("node %s: stored key has %d bytes", n.ID, len(pub))
	}
	n.PublicKey, n.EnrolledAt, n.Disabled, n.Serves = pub, db.FromMicros(enrolled), disabled.Valid, splitServes(serves)
	return n, nil
}

const nodeCols = `node_id, tenant, region, role, name, public_key, enrolled_at, disabled_at, serves`

// Node returns an enrolled, enabled node, or ErrUnknownNode.
func (s *Store) Node(ctx context.Context, nodeID string) (Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, `SELECT `+nodeCols+` FROM nodes WHERE node_id = $1`, nodeID))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && n.Disabled) {
		return Node{}, fmt.Errorf("%w: %s", ErrUnknownNode, nodeID)
	}
	if err != nil {
		return Node{}, fmt.Errorf("read node %s: %w", nodeID, err)
	}
	return n, nil
}

// NodeKey returns the tenant and registered public key of an enabled node.
func (s *Store) NodeKey(ctx context.Context, nodeID string) (string, ed25519.PublicKey, error) {
	n, err := s.Node(ctx, nodeID)
	if err != nil {
		return "", nil, err
	}
	return n.Tenant, n.PublicKey, nil
}

// Serves returns the tenants an enabled node serves beyond its home
// (auth.Middleware.NodeServes). tenant is the home tenant the credential
// names; a node enrolled elsewhere, or disabled, is refused.
func (s *Store) Serves(ctx context.Context, nodeID, tenant string) ([]string, error) {
	n, err := s.Node(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	if n.Tenant != tenant {
		return nil, fmt.Errorf("node %s: credential names tenant %q, enrolled in %q", nodeID, tenant, n.Tenant)
	}
	return n.Serves, nil
}

// List returns the nodes of tenant.
func (s *Store) List(ctx context.Context, tenant string) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+nodeCols+` FROM nodes WHERE tenant = $1 ORDER BY enrolled_at, node_id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	out := []Node{}
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Disable stops a node: its certificate and tokens no longer authenticate
// and NodeKey no longer finds it.
func (s *Store) Disable(ctx context.Context, tenant, nodeID string, now time.Time) (bool, error) {
	q := `UPDATE nodes SET disabled_at = $2 WHERE node_id = $1 AND disabled_at IS NULL`
	args := []any{nodeID, db.Micros(now)}
	if tenant != "" {
		q += ` AND tenant = $3`
		args = append(args, tenant)
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("disable node: %w", err)
	}
	c, _ := res.RowsAffected()
	return c > 0, nil
}

// Identity is an auth.TLSIdentity: a verified node certificate of an
// enabled node whose tenant still matches becomes a node principal.
func (s *Store) Identity(ctx context.Context, cs *tls.ConnectionState) (auth.Principal, bool, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return auth.Principal{}, false, nil
	}
	id, tenant, err := IdentityFromTLS(cs)
	if err != nil {
		return auth.Principal{}, false, err
	}
	n, err := s.Node(ctx, id)
	if err != nil {
		return auth.Principal{}, false, err
	}
	if n.Tenant != tenant {
		return auth.Principal{}, false, fmt.Errorf("node %s certificate names tenant %q, enrolled in %q", id, tenant, n.Tenant)
	}
	return auth.Principal{Subject: id, Tenant: tenant, Roles: []auth.Role{auth.RoleNode}, Serves: n.Serves}, true, nil
}
