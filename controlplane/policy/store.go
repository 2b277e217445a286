package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
	"github.com/aegis-mesh/aegis/controlplane/signing"
	"github.com/aegis-mesh/aegis/jcs"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Version is one submitted policy set.
type Version struct {
	Tenant      string    `json:"tenant"`
	Version     int64     `json:"version"`
	Name        string    `json:"name"`
	Digest      string    `json:"digest"`
	SubmittedBy string    `json:"submitted_by"`
	SubmittedAt time.Time `json:"submitted_at"`
	Approvers   []string  `json:"approvers"`
	Approved    bool      `json:"approved"`
	// Files are the submitted sources; filled by Version, not by Versions.
	Files map[string]string `json:"files,omitempty"`
}

// Release is one publication: a new revision, or a rollback that
// re-releases an earlier revision and names the one it replaces.
type Release struct {
	Tenant string `json:"tenant"`
	// Seq orders releases of a tenant (1, 2, ...); the latest matching
	// release is what a node runs.
	Seq       int64     `json:"seq"`
	Revision  int64     `json:"revision"`
	Version   int64     `json:"version"`
	Stage     string    `json:"stage"`
	Selector  Selector  `json:"selector"`
	Replaces  int64     `json:"replaces,omitempty"`
	Rollback  bool      `json:"rollback"`
	Publisher string    `json:"publisher"`
	Approvers []string  `json:"approvers"`
	KeyID     string    `json:"key_id"`
	Digest    string    `json:"digest"` // sha256 of the signed runtime bundle
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Record is the signed release record (RecordFields as RFC 8785 JSON)
	// and RecordSignature its Ed25519 signature by KeyID, base64: who
	// approved and published which bundle digest, for auditors who hold
	// only the bundle public key.
	Record          string `json:"record"`
	RecordSignature string `json:"record_signature"`
	// Bundle is the signed runtime bundle; filled by Release and Current.
	Bundle []byte `json:"-"`
}

// RecordFields is the content of a signed release record.
type RecordFields struct {
	Format    string    `json:"format"` // "aegis.release/v1"
	Tenant    string    `json:"tenant"`
	Seq       int64     `json:"seq"`
	Revision  int64     `json:"revision"`
	Version   int64     `json:"version"`
	Digest    string    `json:"bundle_sha256"`
	Stage     string    `json:"stage"`
	Regions   []string  `json:"regions"`
	Roles     []string  `json:"roles"`
	Replaces  int64     `json:"replaces"`
	Rollback  bool      `json:"rollback"`
	Publisher string    `json:"publisher"`
	Approvers []string  `json:"approvers"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// signRecord writes and signs the release record of rel.
func signRecord(rel Release, key *signing.Key) (record, sig string, err error) {
	raw, err := json.Marshal(RecordFields{Format: "aegis.release/v1", Tenant: rel.Tenant, Seq: rel.Seq, Revision: rel.Revision, Version: rel.Version,
		Digest: rel.Digest, Stage: rel.Stage, Regions: nonNil(rel.Selector.Regions), Roles: nonNil(rel.Selector.Roles), Replaces: rel.Replaces,
		Rollback: rel.Rollback, Publisher: rel.Publisher, Approvers: nonNil(rel.Approvers), CreatedAt: rel.CreatedAt, ExpiresAt: rel.ExpiresAt})
	if err != nil {
		return "", "", err
	}
	canon, err := jcs.Canonicalize(raw)
	if err != nil {
		return "", "", fmt.Errorf("release record: %w", err)
	}
	s, err := key.Sign(canon)
	if err != nil {
		return "", "", err
	}
	return string(canon), base64.StdEncoding.EncodeToString(s), nil
}

// Event is one immutable lifecycle row.
type Event struct {
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"` // submitted, approved, published, rolled_back
	Actor    string    `json:"actor"`
	Version  int64     `json:"version"`
	Revision int64     `json:"revision,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// Store is the lifecycle's system of record.
type Store struct {
	db *db.DB

	// Signed bundles never change once written, so caching them by
	// (tenant, revision) is always safe.
	mu    sync.Mutex
	cache map[string][]byte
}

// NewStore migrates the policy tables and returns the store.
func NewStore(ctx context.Context, d *db.DB) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx, "policy", sub); err != nil {
		return nil, err
	}
	return &Store{db: d, cache: map[string][]byte{}}, nil
}

// addEvent appends a lifecycle row; callers hold the head row (head), so
// the ordinal is allocated without races.
func addEvent(ctx context.Context, tx *sql.Tx, tenant string, e Event) error {
	var ord int64
	if err := tx.QueryRowContext(ctx, `SELECT last_event FROM policy_heads WHERE tenant = $1`, tenant).Scan(&ord); err != nil {
		return err
	}
	ord++
	if _, err := tx.ExecContext(ctx, `UPDATE policy_heads SET last_event = $2 WHERE tenant = $1`, tenant, ord); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO policy_events (tenant, ord, at, kind, actor, version, revision, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		tenant, ord, db.Micros(e.At), e.Kind, e.Actor, e.Version, e.Revision, e.Detail)
	return err
}

// head locks (Postgres: row lock) and returns the tenant's counters.
func head(ctx context.Context, tx *sql.Tx, tenant string) (version, revision int64, err error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO policy_heads (tenant, last_version, last_revision, last_seq, last_event) VALUES ($1, 0, 0, 0, 0) ON CONFLICT (tenant) DO NOTHING`, tenant); err != nil {
		return 0, 0, err
	}
	// The no-op update takes the row lock, so concurrent submissions and
	// publications of one tenant run one after the other.
	if _, err := tx.ExecContext(ctx, `UPDATE policy_heads SET last_version = last_version WHERE tenant = $1`, tenant); err != nil {
		return 0, 0, err
	}
	err = tx.QueryRowContext(ctx, `SELECT last_version, last_revision FROM policy_heads WHERE tenant = $1`, tenant).Scan(&version, &revision)
	return version, revision, err
}

// Digest is the content digest of a submission: SHA-256 over the file
// names and contents in name order, each length-prefixed.
func Digest(files map[string]string) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%d:%s%d:", len(n), n, len(files[n]))
		h.Write([]byte(files[n]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Submission is a validated, compiled policy set ready to be stored.
type Submission struct {
	Tenant, Name string
	Files        map[string]string
	// Build makes the unsigned runtime and archive bundles for a version
	// number (the revision a node sees is set again at publish), and the
	// runtime bundle of the same policy with defaults.mode forced to
	// observe, which an observe-stage release ships.
	Build   func(version int64) (runtime, observe, archive []byte, err error)
	Budgets map[string]float64
	// Owners maps agent id → owner (the policy's agents[].owner).
	Owners map[string]string
	// Delegates maps agent id → the agents that may act for it
	// (agents[].may_delegate_to).
	Delegates map[string][]string
	By        string
	At        time.Time
}

// Submit stores a new version with the next version number.
func (s *Store) Submit(ctx context.Context, sub Submission) (Version, error) {
	src, err := json.Marshal(sub.Files)
	if err != nil {
		return Version{}, err
	}
	budgets, err := json.Marshal(sub.Budgets)
	if err != nil {
		return Version{}, err
	}
	owners, delegates := []byte("{}"), []byte("{}")
	if sub.Owners != nil {
		if owners, err = json.Marshal(sub.Owners); err != nil {
			return Version{}, err
		}
	}
	if sub.Delegates != nil {
		if delegates, err = json.Marshal(sub.Delegates); err != nil {
			return Version{}, err
		}
	}
	v := Version{Tenant: sub.Tenant, Name: sub.Name, Digest: Digest(sub.Files), SubmittedBy: sub.By, SubmittedAt: sub.At.UTC().Truncate(time.Microsecond), Approvers: []string{}}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		last, _, err := head(ctx, tx, sub.Tenant)
		if err != nil {
			return err
		}
		v.Version = last + 1
		runtime, observe, archive, err := sub.Build(v.Version)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE policy_heads SET last_version = $2 WHERE tenant = $1`, sub.Tenant, v.Version); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO policy_versions (tenant, version, name, digest, sources, runtime_bundle, archive_bundle, budgets, owners, delegates, submitted_by, submitted_at, observe_bundle)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			sub.Tenant, v.Version, sub.Name, v.Digest, string(src), runtime, archive, string(budgets), string(owners), string(delegates), sub.By, db.Micros(v.SubmittedAt), observe); err != nil {
			return err
		}
		return addEvent(ctx, tx, sub.Tenant, Event{At: v.SubmittedAt, Kind: "submitted", Actor: sub.By, Version: v.Version, Detail: "digest " + v.Digest})
	})
	if err != nil {
		return Version{}, fmt.Errorf("submit policy for %s: %w", sub.Tenant, err)
	}
	return v, nil
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func approvers(ctx context.Context, q querier, tenant string, version int64) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT approver FROM policy_approvals WHERE tenant = $1 AND version = $2 ORDER BY approved_at, approver`, tenant, version)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func readVersion(ctx context.Context, q querier, tenant string, version int64, rule ApprovalRule) (Version, error) {
	v := Version{Tenant: tenant, Version: version}
	var at int64
	var src string
	err := q.QueryRowContext(ctx, `SELECT name, digest, sources, submitted_by, submitted_at FROM policy_versions WHERE tenant = $1 AND version = $2`, tenant, version).
		Scan(&v.Name, &v.Digest, &src, &v.SubmittedBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, fmt.Errorf("%w: %s version %d", ErrUnknownVersion, tenant, version)
	}
	if err != nil {
		return Version{}, err
	}
	v.SubmittedAt = db.FromMicros(at)
	if err := json.Unmarshal([]byte(src), &v.Files); err != nil {
		return Version{}, fmt.Errorf("stored sources of %s version %d: %w", tenant, version, err)
	}
	if v.Approvers, err = approvers(ctx, q, tenant, version); err != nil {
		return Version{}, err
	}
	v.Approved = Approved(rule, v.SubmittedBy, v.Approvers)
	return v, nil
}

// Version returns one version with its sources and approvals.
func (s *Store) Version(ctx context.Context, tenant string, version int64, rule ApprovalRule) (Version, error) {
	v, err := readVersion(ctx, s.db, tenant, version, rule)
	if err != nil && !errors.Is(err, ErrUnknownVersion) {
		return Version{}, fmt.Errorf("read policy version: %w", err)
	}
	return v, err
}

// Versions lists a tenant's versions, newest first, without sources.
func (s *Store) Versions(ctx context.Context, tenant string, rule ApprovalRule) ([]Version, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version, name, digest, submitted_by, submitted_at FROM policy_versions WHERE tenant = $1 ORDER BY version DESC`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list policy versions: %w", err)
	}
	var out []Version
	for rows.Next() {
		v := Version{Tenant: tenant}
		var at int64
		if err := rows.Scan(&v.Version, &v.Name, &v.Digest, &v.SubmittedBy, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list policy versions: %w", err)
		}
		v.SubmittedAt = db.FromMicros(at)
		out = append(out, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list policy versions: %w", err)
	}
	for i := range out {
		if out[i].Approvers, err = approvers(ctx, s.db, tenant, out[i].Version); err != nil {
			return nil, fmt.Errorf("list policy versions: %w", err)
		}
		out[i].Approved = Approved(rule, out[i].SubmittedBy, out[i].Approvers)
	}
	if out == nil {
		out = []Version{}
	}
	return out, nil
}

// Approve records approver's approval of a version.
func (s *Store) Approve(ctx context.Context, tenant string, version int64, approver string, rule ApprovalRule, now time.Time) (Version, error) {
	var v Version
	now = now.UTC().Truncate(time.Microsecond)
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, _, err := head(ctx, tx, tenant); err != nil {
			return err
		}
		var err error
		if v, err = readVersion(ctx, tx, tenant, version, rule); err != nil {
			return err
		}
		if err := CheckApproval(rule, v.SubmittedBy, approver, v.Approvers); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO policy_approvals (tenant, version, approver, approved_at) VALUES ($1, $2, $3, $4)`, tenant, version, approver, db.Micros(now)); err != nil {
			return err
		}
		v.Approvers = append(v.Approvers, approver)
		v.Approved = Approved(rule, v.SubmittedBy, v.Approvers)
		return addEvent(ctx, tx, tenant, Event{At: now, Kind: "approved", Actor: approver, Version: version})
	})
	if err != nil {
		return Version{}, fmt.Errorf("approve %s version %d: %w", tenant, version, err)
	}
	return v, nil
}

// PublishRequest is one publication or rollback.
type PublishRequest struct {
	Tenant    string
	Version   int64 // the version to publish (ignored for a rollback)
	Stage     string
	Selector  Selector
	Revision  int64 // 0: the next one; otherwise it must be the next one
	Publisher string
	Rule      ApprovalRule
	Key       *signing.Key
	Ring      *signing.Ring
	Validity  time.Duration
	Now       time.Time
	// Rollback re-releases ToRevision, an earlier revision whose version
	// is approved under the tenant's current rule; the signed release
	// record names the revision it replaces, as package bundle requires.
	Rollback   bool
	ToRevision int64
}

func (s *Store) latest(ctx context.Context, q querier, tenant string) (Release, bool, error) {
	rs, err := listReleases(ctx, q, tenant, 1)
	if err != nil || len(rs) == 0 {
		return Release{}, false, err
	}
	return rs[0], true, nil
}

// Publish signs and stores a release (or a rollback) in one transaction.
func (s *Store) Publish(ctx context.Context, req PublishRequest) (Release, error) {
	var rel Release
	now := req.Now.UTC().Truncate(time.Second)
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, lastRev, err := head(ctx, tx, req.Tenant)
		if err != nil {
			return err
		}
		var lastSeq int64
		if err := tx.QueryRowContext(ctx, `SELECT last_seq FROM policy_heads WHERE tenant = $1`, req.Tenant).Scan(&lastSeq); err != nil {
			return err
		}
		prev, hasPrev, err := s.latest(ctx, tx, req.Tenant)
		if err != nil {
			return err
		}
		version, revision := req.Version, int64(0)
		if req.Rollback {
			target, err := readRevision(ctx, tx, req.Tenant, req.ToRevision)
			if errors.Is(err, ErrUnknownRevision) {
				return fmt.Errorf("%w: revision %d was never released", ErrRollbackTarget, req.ToRevision)
			}
			if err != nil {
				return err
			}
			if !hasPrev || target.Revision >= prev.Revision {
				return fmt.Errorf("%w: revision %d is not earlier than the running revision", ErrRollbackTarget, req.ToRevision)
			}
			version, revision = target.Version, target.Revision
		} else if revision, err = CheckRevision(lastRev, req.Revision); err != nil {
			return err
		}
		v, err := readVersion(ctx, tx, req.Tenant, version, req.Rule)
		if err != nil {
			return err
		}
		if !v.Approved {
			if req.Rollback {
				return fmt.Errorf("%w: version %d of revision %d is not approved under the current rule", ErrRollbackTarget, version, revision)
			}
			return fmt.Errorf("%w: version %d has %d approval(s), the rule needs %d", ErrNotApproved, version, len(v.Approvers), req.Rule.Required)
		}
		// An observe-stage release ships the policy with defaults.mode
		// forced to observe: every finding becomes a shadow decision, so
		// nodes record what would happen without blocking anything.
		col := "runtime_bundle"
		if req.Stage == StageObserve {
			col = "observe_bundle"
		}
		var unsigned []byte
		if err := tx.QueryRowContext(ctx, `SELECT `+col+` FROM policy_versions WHERE tenant = $1 AND version = $2`, req.Tenant, version).Scan(&unsigned); err != nil {
			return err
		}
		if len(unsigned) == 0 {
			return fmt.Errorf("version %d has no %s bundle", version, req.Stage)
		}
		rel = Release{Tenant: req.Tenant, Seq: lastSeq + 1, Revision: revision, Version: version, Stage: req.Stage, Selector: req.Selector,
			Rollback: req.Rollback, Publisher: req.Publisher, Approvers: v.Approvers, KeyID: req.Key.ID,
			CreatedAt: now, ExpiresAt: now.Add(req.Validity).Truncate(time.Second)}
		if req.Rollback {
			rel.Replaces = prev.Revision
		}
		if rel.Bundle, err = signRelease(unsigned, rel, req.Key, req.Ring); err != nil {
			return err
		}
		sum := sha256.Sum256(rel.Bundle)
		rel.Digest = hex.EncodeToString(sum[:])
		if rel.Record, rel.RecordSignature, err = signRecord(rel, req.Key); err != nil {
			return err
		}
		regions, _ := json.Marshal(nonNil(req.Selector.Regions))
		roles, _ := json.Marshal(nonNil(req.Selector.Roles))
		appr, _ := json.Marshal(v.Approvers)
		if _, err := tx.ExecContext(ctx, `UPDATE policy_heads SET last_revision = $2, last_seq = $3 WHERE tenant = $1`, req.Tenant, max(lastRev, revision), rel.Seq); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO releases (tenant, seq, revision, version, stage, regions, roles, replaces, rollback, publisher, approvers, key_id, bundle, digest, created_at, expires_at, record, record_sig)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
			req.Tenant, rel.Seq, revision, version, req.Stage, string(regions), string(roles), rel.Replaces, rel.Rollback, req.Publisher, string(appr), rel.KeyID,
			rel.Bundle, rel.Digest, db.Micros(rel.CreatedAt), db.Micros(rel.ExpiresAt), rel.Record, rel.RecordSignature); err != nil {
			return err
		}
		kind, detail := "published", fmt.Sprintf("stage %s regions %v roles %v", req.Stage, req.Selector.Regions, req.Selector.Roles)
		if req.Rollback {
			kind, detail = "rolled_back", fmt.Sprintf("replaces revision %d; %s", rel.Replaces, detail)
		}
		return addEvent(ctx, tx, req.Tenant, Event{At: now, Kind: kind, Actor: req.Publisher, Version: version, Revision: revision, Detail: detail})
	})
	if err != nil {
		return Release{}, fmt.Errorf("publish %s: %w", req.Tenant, err)
	}
	return rel, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// signRelease rebuilds the version's runtime bundle with the release's
// revision, validity and release record, signed with key; the signature
// is then checked through the ring's sigstore verifier, so a bundle that
// the trust root would not accept is never stored.
func signRelease(unsigned []byte, rel Release, key *signing.Key, ring *signing.Ring) ([]byte, error) {
	b, err := bundle.Open(unsigned, bundle.Limits{})
	if err != nil {
		return nil, fmt.Errorf("stored runtime bundle: %w", err)
	}
	m := b.Manifest
	m.Revision = rel.Revision
	m.CreatedAt, m.ExpiresAt = rel.CreatedAt, rel.ExpiresAt
	m.Release = &bundle.Release{Approvers: rel.Approvers, Publisher: rel.Publisher, Stage: rel.Stage, Replaces: rel.Replaces}
	files := make([]bundle.File, 0, len(b.Files))
	for _, p := range b.Paths() {
		files = append(files, bundle.File{Path: p, Data: b.Files[p]})
	}
	out, err := bundle.Build(m, files, bundle.BuildOptions{SigningKey: key.Private()})
	if err != nil {
		return nil, fmt.Errorf("sign release: %w", err)
	}
	signed, err := bundle.Open(out, bundle.Limits{})
	if err != nil {
		return nil, fmt.Errorf("signed release: %w", err)
	}
	// The manifest signature must be exactly what the sigstore signer
	// makes of the manifest (pure Ed25519 is deterministic) and verify
	// through the ring, or nothing is stored.
	sig, err := key.Sign(signed.ManifestBytes)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(sig, signed.Signature) {
		return nil, errors.New("signed release: bundle signature differs from the signer's")
	}
	if err := ring.Verify(key.ID, signed.ManifestBytes, signed.Signature); err != nil {
		return nil, fmt.Errorf("signed release: %w", err)
	}
	return out, nil
}

const releaseCols = `seq, revision, version, stage, regions, roles, replaces, rollback, publisher, approvers, key_id, digest, created_at, expires_at, record, record_sig`

func scanRelease(tenant string, row interface{ Scan(...any) error }, withBundle bool) (Release, error) {
	r := Release{Tenant: tenant}
	var regions, roles, appr string
	var created, expires int64
	dest := []any{&r.Seq, &r.Revision, &r.Version, &r.Stage, &regions, &roles, &r.Replaces, &r.Rollback, &r.Publisher, &appr, &r.KeyID, &r.Digest, &created, &expires, &r.Record, &r.RecordSignature}
	if withBundle {
		dest = append(dest, &r.Bundle)
	}
	if err := row.Scan(dest...); err != nil {
		return Release{}, err
	}
	r.CreatedAt, r.ExpiresAt = db.FromMicros(created), db.FromMicros(expires)
	for _, f := range []struct {
		s string
		v any
	}{{regions, &r.Selector.Regions}, {roles, &r.Selector.Roles}, {appr, &r.Approvers}} {
		if err := json.Unmarshal([]byte(f.s), f.v); err != nil {
			return Release{}, fmt.Errorf("stored release %d: %w", r.Revision, err)
		}
	}
	return r, nil
}

func readRelease(ctx context.Context, q querier, tenant string, seq int64) (Release, error) {
	r, err := scanRelease(tenant, q.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM releases WHERE tenant = $1 AND seq = $2`, tenant, seq), false)
	if errors.Is(err, sql.ErrNoRows) {
		return Release{}, fmt.Errorf("%w: %s release %d", ErrUnknownRevision, tenant, seq)
	}
	return r, err
}

// readRevision finds the original (non-rollback) release of revision.
func readRevision(ctx context.Context, q querier, tenant string, revision int64) (Release, error) {
	r, err := scanRelease(tenant, q.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM releases WHERE tenant = $1 AND revision = $2 AND rollback = $3`, tenant, revision, false), false)
	if errors.Is(err, sql.ErrNoRows) {
		return Release{}, fmt.Errorf("%w: %s revision %d", ErrUnknownRevision, tenant, revision)
	}
	return r, err
}

func listReleases(ctx context.Context, q querier, tenant string, limit int) ([]Release, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+releaseCols+` FROM releases WHERE tenant = $1 ORDER BY seq DESC LIMIT $2`, tenant, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Release{}
	for rows.Next() {
		r, err := scanRelease(tenant, rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Releases lists a tenant's releases, newest first, without bundles.
func (s *Store) Releases(ctx context.Context, tenant string) ([]Release, error) {
	rs, err := listReleases(ctx, s.db, tenant, 1000)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	return rs, nil
}

// Release returns release seq with its signed bundle.
func (s *Store) Release(ctx context.Context, tenant string, seq int64) (Release, error) {
	r, err := readRelease(ctx, s.db, tenant, seq)
	if err != nil {
		return Release{}, err
	}
	if r.Bundle, err = s.bundle(ctx, tenant, seq); err != nil {
		return Release{}, err
	}
	return r, nil
}

func (s *Store) bundle(ctx context.Context, tenant string, seq int64) ([]byte, error) {
	key := fmt.Sprintf("%s\x00%d", tenant, seq)
	s.mu.Lock()
	b, ok := s.cache[key]
	s.mu.Unlock()
	if ok {
		return b, nil
	}
	if err := s.db.QueryRowContext(ctx, `SELECT bundle FROM releases WHERE tenant = $1 AND seq = $2`, tenant, seq).Scan(&b); err != nil {
		return nil, fmt.Errorf("read bundle %s/%d: %w", tenant, seq, err)
	}
	s.mu.Lock()
	if len(s.cache) >= 256 {
		clear(s.cache)
	}
	s.cache[key] = b
	s.mu.Unlock()
	return b, nil
}

// Current returns the release a node of tenant in region with role runs:
// the highest revision whose selector matches it, with its bundle.
func (s *Store) Current(ctx context.Context, tenant, region, role string) (Release, error) {
	rs, err := s.Releases(ctx, tenant)
	if err != nil {
		return Release{}, err
	}
	for _, r := range rs {
		if r.Selector.Matches(region, role) {
			if r.Bundle, err = s.bundle(ctx, tenant, r.Seq); err != nil {
				return Release{}, err
			}
			return r, nil
		}
	}
	return Release{}, fmt.Errorf("%w: tenant %s region %q role %q", ErrNoRelease, tenant, region, role)
}

// Budgets returns the per-agent daily budgets (USD) of the version the
// latest release carries; nil when the tenant has no release.
func (s *Store) Budgets(ctx context.Context, tenant string) (map[string]float64, error) {
	prev, ok, err := s.latest(ctx, s.db, tenant)
	if err != nil || !ok {
		return nil, err
	}
	var raw string
	if err := s.db.QueryRowContext(ctx, `SELECT budgets FROM policy_versions WHERE tenant = $1 AND version = $2`, tenant, prev.Version).Scan(&raw); err != nil {
		return nil, fmt.Errorf("read budgets: %w", err)
	}
	var out map[string]float64
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		return nil, fmt.Errorf("stored budgets: %w", err)
	}
	return out, nil
}

// Events lists a tenant's lifecycle rows in order.
func (s *Store) Events(ctx context.Context, tenant string) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT at, kind, actor, version, revision, detail FROM policy_events WHERE tenant = $1 ORDER BY ord`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list policy events: %w", err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&at, &e.Kind, &e.Actor, &e.Version, &e.Revision, &e.Detail); err != nil {
			return nil, fmt.Errorf("list policy events: %w", err)
		}
		e.At = db.FromMicros(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// TenantsWithReleases lists tenants that have at least one release.
func (s *Store) TenantsWithReleases(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT tenant FROM policy_heads WHERE last_seq > 0 ORDER BY tenant`)
	if err != nil {
		return nil, fmt.Errorf("list tenants with releases: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// AgentOwner answers, from the tenant's newest release, who owns agent
// (approvals.OwnerPolicy). The control plane's rule is that an owner never
// approves requests of its own agents, so forbidSelfApproval is always
// true; an agent without an owner (or a tenant without a release) has
// owner "".
func (s *Store) AgentOwner(ctx context.Context, tenant, agent string) (string, bool, error) {
	prev, ok, err := s.latest(ctx, s.db, tenant)
	if err != nil {
		return "", true, fmt.Errorf("owner of %s: %w", agent, err)
	}
	if !ok {
		return "", true, nil
	}
	var owners map[string]string
	if err := s.versionJSON(ctx, tenant, prev.Version, "owners", &owners); err != nil {
		return "", true, fmt.Errorf("owner of %s: %w", agent, err)
	}
	return owners[agent], true, nil
}

// versionJSON reads one JSON column of a version row.
func (s *Store) versionJSON(ctx context.Context, tenant string, version int64, col string, v any) error {
	var raw string
	if err := s.db.QueryRowContext(ctx, `SELECT `+col+` FROM policy_versions WHERE tenant = $1 AND version = $2`, tenant, version).Scan(&raw); err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		return fmt.Errorf("stored %s: %w", col, err)
	}
	return nil
}

// DelegationAllowed reports whether the tenant's newest release lets agent
// to act for from (from's may_delegate_to lists to), for the token
// exchange (tokens.DelegationPolicy). No release allows nothing.
func (s *Store) DelegationAllowed(ctx context.Context, tenant, from, to string) (bool, error) {
	prev, ok, err := s.latest(ctx, s.db, tenant)
	if err != nil || !ok {
		return false, err
	}
	var delegates map[string][]string
	if err := s.versionJSON(ctx, tenant, prev.Version, "delegates", &delegates); err != nil {
		return false, fmt.Errorf("delegation of %s: %w", from, err)
	}
	return slices.Contains(delegates[from], to), nil
}

// BundlesActive returns the releases in force at some time in [from, to)
// (audit.BundleSource, for evidence packs): the newest release created
// before from that targets every node, and every release after it created
// before to. Each carries its signed runtime bundle and release record.
func (s *Store) BundlesActive(ctx context.Context, tenant string, from, to time.Time) ([]evidence.Bundle, error) {
	rs, err := s.Releases(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var picked []Release
	for _, r := range rs { // newest first
		if !r.CreatedAt.Before(to) {
			continue
		}
		picked = append(picked, r)
		if r.CreatedAt.Before(from) && len(r.Selector.Regions) == 0 && len(r.Selector.Roles) == 0 {
			break
		}
	}
	out := make([]evidence.Bundle, 0, len(picked))
	for i := len(picked) - 1; i >= 0; i-- {
		r := picked[i]
		b, err := s.bundle(ctx, tenant, r.Seq)
		if err != nil {
			return nil, err
		}
		out = append(out, evidence.Bundle{Revision: r.Revision, Name: fmt.Sprintf("release-%d", r.Seq),
			Files: map[string][]byte{"bundle.tar.gz": b, "release.json": []byte(r.Record), "release.sig": []byte(r.RecordSignature + "\n"),
				"release.kid": []byte(r.KeyID + "\n")}})
	}
	return out, nil
}

// Archive returns the archive bundle of a version (generated Rego, plan,
// OPA wasm, data; unsigned: the release record and runtime bundle carry
// the signatures).
func (s *Store) Archive(ctx context.Context, tenant string, version int64) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT archive_bundle FROM policy_versions WHERE tenant = $1 AND version = $2`, tenant, version).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s version %d", ErrUnknownVersion, tenant, version)
	}
	if err != nil {
		return nil, fmt.Errorf("read archive bundle: %w", err)
	}
	return b, nil
}
