package approvals

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/webhook"
	"github.com/aegis-mesh/aegis/token"
)

// Record is what is stored of one approval request and its decision,
// shared by the API view (Approval) and the evidence view
// (EvidenceRecord); both render these fields at the top level.
type Record struct {
	ID             string     `json:"approval_id"`
	Tenant         string     `json:"tenant"`
	Agent          string     `json:"agent"`
	Chain          []string   `json:"chain"`
	Tool           string     `json:"tool"`
	ParamsDigest   string     `json:"params_digest"`
	Reasons        []string   `json:"reasons"`
	Approvers      []string   `json:"approvers"`
	PolicyRevision int64      `json:"policy_revision"`
	DecisionID     string     `json:"decision_id"`
	RequestSummary string     `json:"request_summary"`
	RequestedBy    string     `json:"requested_by"`
	Status         string     `json:"status"`
	Batched        int        `json:"batched"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	DecidedAt      *time.Time `json:"decided_at,omitempty"`
	DecidedBy      string     `json:"decided_by,omitempty"`
	Note           string     `json:"note,omitempty"`
}

// Approval is one approval request and its decision, as the API shows it:
// whether an override was issued, never which.
type Approval struct {
	Record
	OverrideIssued bool `json:"override_issued"`
	overrideJTI    string
}

const columns = `id, tenant, agent, chain, tool, params_digest, reasons, approvers, policy_revision, decision_id, request_summary,
	requested_by, status, batched, created_at, expires_at, decided_at, decided_by, note, override_jti`

type scanner interface{ Scan(dest ...any) error }

func scanApproval(row scanner) (*Approval, error) {
	var a Approval
	var jti sql.NullString
	if err := scanRecord(row, &a.Record, &jti); err != nil {
		return nil, err
	}
	a.overrideJTI, a.OverrideIssued = jti.String, jti.Valid
	return &a, nil
}

// scanRecord reads the columns (in that order) into r, then any further
// columns of the row into extra.
func scanRecord(row scanner, r *Record, extra ...any) error {
	var chain, reasons, approvers string
	var created, expires int64
	var decided sql.NullInt64
	var decidedBy, note sql.NullString
	dest := append([]any{&r.ID, &r.Tenant, &r.Agent, &chain, &r.Tool, &r.ParamsDigest, &reasons, &approvers, &r.PolicyRevision,
		&r.DecisionID, &r.RequestSummary, &r.RequestedBy, &r.Status, &r.Batched, &created, &expires, &decided, &decidedBy, &note}, extra...)
	if err := row.Scan(dest...); err != nil {
		return err
	}
	for _, f := range []struct {
		s   string
		dst *[]string
	}{{chain, &r.Chain}, {reasons, &r.Reasons}, {approvers, &r.Approvers}} {
		if err := json.Unmarshal([]byte(f.s), f.dst); err != nil {
			return fmt.Errorf("approval %s: stored list: %w", r.ID, err)
		}
	}
	r.CreatedAt, r.ExpiresAt = db.FromMicros(created), db.FromMicros(expires)
	r.DecidedAt = optMicros(decided)
	r.DecidedBy, r.Note = decidedBy.String, note.String
	return nil
}

func optMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := db.FromMicros(v.Int64)
	return &t
}

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v) // a []string always encodes
	return string(b)
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("approval id: %w", err)
	}
	return "ap_" + hex.EncodeToString(b[:]), nil
}

// Create records an approval request from node for tenant, or batches it
// onto the pending approval for the same agent, tool and params digest.
// created is false when it was batched. A new approval's notification (and
// that of a stale one it replaces) is stored in the same transaction.
func (s *Service) Create(ctx context.Context, tenant, node string, req CreateRequest) (a *Approval, created bool, err error) {
	now := s.now()
	expiresIn := s.cfg.DefaultExpiry
	if req.ExpiresIn > 0 {
		// Compared in seconds first: a huge expires_in must not overflow.
		expiresIn = time.Duration(min(req.ExpiresIn, int64(s.cfg.MaxExpiry/time.Second))) * time.Second
	}
	chain := req.Chain
	if len(chain) == 0 {
		chain = []string{req.Agent}
	}
	id, err := newID()
	if err != nil {
		return nil, false, err
	}
	var (
		expired []*Approval
		evs     []webhook.Event
	)
	for attempt := 0; ; attempt++ {
		err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
			// db.Tx may run this more than once: start clean each time.
			expired, a, created, evs = nil, nil, false, nil
			// A pending approval past its expiry must not absorb new
			// requests: expire it first.
			var err error
			expired, err = s.expireTx(ctx, tx, now, `AND tenant = $2 AND agent = $3 AND tool = $4 AND params_digest = $5`, tenant, req.Agent, req.Tool, req.ParamsDigest)
			if err != nil {
				return err
			}
			for _, x := range expired {
				evs = s.addEvent(evs, x, "approval.expired", now)
			}
			row := tx.QueryRowContext(ctx, `UPDATE approvals SET batched = batched + 1 WHERE tenant = $1 AND agent = $2 AND tool = $3 AND params_digest = $4 AND status = 'pending' RETURNING `+columns,
				tenant, req.Agent, req.Tool, req.ParamsDigest)
			a, err = scanApproval(row)
			if err == nil {
				// Batched: nobody is told, the approval is already known.
				return s.record(ctx, tx, evs)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("batch approval: %w", err)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO approvals (id, tenant, agent, chain, tool, params_digest, reasons, approvers, policy_revision,
				decision_id, request_summary, requested_by, status, batched, created_at, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', 1, $13, $14)`,
				id, tenant, req.Agent, jsonList(chain), req.Tool, req.ParamsDigest, jsonList(req.Reasons), jsonList(req.Approvers),
				req.PolicyRevision, req.DecisionID, req.RequestSummary, node, db.Micros(now), db.Micros(now.Add(expiresIn)))
			if err != nil {
				return fmt.Errorf("insert approval: %w", err)
			}
			created = true
			a = &Approval{Record: Record{ID: id, Tenant: tenant, Agent: req.Agent, Chain: chain, Tool: req.Tool, ParamsDigest: req.ParamsDigest,
				Reasons: req.Reasons, Approvers: req.Approvers, PolicyRevision: req.PolicyRevision, DecisionID: req.DecisionID,
				RequestSummary: req.RequestSummary, RequestedBy: node, Status: StatusPending, Batched: 1,
				CreatedAt: db.FromMicros(db.Micros(now)), ExpiresAt: db.FromMicros(db.Micros(now.Add(expiresIn)))}}
			evs = s.addEvent(evs, a, "approval.created", now)
			return s.record(ctx, tx, evs)
		})
		// Two replicas inserting the first request of a batch at once: one
		// wins the unique index, the other retries and joins its batch.
		if err != nil && db.IsUniqueViolation(err) && attempt < 3 {
			continue
		}
		break
	}
	if err != nil {
		return nil, false, fmt.Errorf("create approval: %w", err)
	}
	s.countExpired(expired)
	s.announce(evs)
	if created {
		s.m.volume.WithLabelValues("created").Inc()
	} else {
		s.m.volume.WithLabelValues("batched").Inc()
	}
	return a, created, nil
}

// expireTx marks pending approvals past their expiry as expired inside
// tx; extra narrows the set (placeholders from $2 on).
func (s *Service) expireTx(ctx context.Context, tx *sql.Tx, now time.Time, extra string, args ...any) ([]*Approval, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE approvals SET status = 'expired', decided_at = expires_at
		WHERE status = 'pending' AND expires_at <= $1 `+extra+` RETURNING `+columns, append([]any{db.Micros(now)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("expire approvals: %w", err)
	}
	defer rows.Close()
	var out []*Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("expire approvals: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// countExpired accounts for approvals whose expiry just committed.
func (s *Service) countExpired(as []*Approval) {
	for range as {
		s.m.volume.WithLabelValues("expired").Inc()
		s.m.expiries.Inc()
	}
}

// expire marks pending approvals past their expiry as expired (extra
// narrows the set, placeholders from $2 on) in one transaction with their
// approval.expired notifications, and returns them.
func (s *Service) expire(ctx context.Context, extra string, args ...any) ([]*Approval, error) {
	now := s.now()
	var (
		as  []*Approval
		evs []webhook.Event
	)
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		if as, err = s.expireTx(ctx, tx, now, extra, args...); err != nil {
			return err
		}
		evs = nil
		for _, a := range as {
			evs = s.addEvent(evs, a, "approval.expired", now)
		}
		return s.record(ctx, tx, evs)
	})
	if err != nil {
		return nil, err
	}
	s.countExpired(as)
	s.announce(evs)
	return as, nil
}

// Sweep expires every pending approval past its expiry and returns how
// many it expired.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	as, err := s.expire(ctx, "")
	return len(as), err
}

// read returns the approval id as stored, whatever its tenant.
func (s *Service) read(ctx context.Context, id string) (*Approval, error) {
	return scanApproval(s.cfg.DB.QueryRowContext(ctx, `SELECT `+columns+` FROM approvals WHERE id = $1`, id))
}

// Get returns the approval id of tenant (any tenant when empty), expiring
// it first when it is past due.
func (s *Service) Get(ctx context.Context, tenant, id string) (*Approval, error) {
	// Read first: agents poll pending approvals, and only a poll that
	// finds one past due pays for the expiry's transaction.
	a, err := s.read(ctx, id)
	if err == nil && a.Status == StatusPending && !a.ExpiresAt.After(s.now()) {
		exp, xerr := s.expire(ctx, `AND id = $2`, id)
		if xerr != nil {
			return nil, fmt.Errorf("approval %s: %w", id, xerr)
		}
		if len(exp) == 1 {
			a = exp[0]
		} else {
			// Decided or expired by someone else in between.
			a, err = s.read(ctx, id)
		}
	}
	if errors.Is(err, sql.ErrNoRows) || (err == nil && tenant != "" && a.Tenant != tenant) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read approval %s: %w", id, err)
	}
	return a, nil
}

// List returns approvals of tenant with status, the most batched first,
// then the oldest: many waiting requests and long waits go to the top.
func (s *Service) List(ctx context.Context, tenant, status string, limit int) ([]*Approval, error) {
	if _, err := s.Sweep(ctx); err != nil {
		return nil, err
	}
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT `+columns+` FROM approvals WHERE tenant = $1 AND status = $2
		ORDER BY batched DESC, created_at ASC, id ASC LIMIT $3`, tenant, status, limit)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	defer rows.Close()
	out := []*Approval{}
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("list approvals: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// errLostRace rolls back a decision that found the approval no longer
// pending.
var errLostRace = errors.New("approval no longer pending")

// Decide approves or denies a pending approval of tenant as approver, and
// stores the decision's notification in the same transaction. The owner of
// any agent in the request's chain may not decide it when the policy
// forbids self-approval.
func (s *Service) Decide(ctx context.Context, tenant, id string, by auth.Principal, decision, note string) (*Approval, error) {
	if decision != StatusApproved && decision != StatusDenied {
		return nil, fmt.Errorf("decision %q", decision)
	}
	a, err := s.Get(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	approver := by.Subject
	if !by.InApprovers(a.Approvers) {
		return nil, &NotApproverError{Approvers: a.Approvers}
	}
	for _, agent := range a.Chain {
		owner, forbid, err := s.cfg.Owners.AgentOwner(ctx, a.Tenant, agent)
		if err != nil {
			return nil, fmt.Errorf("owner of agent %q: %w", agent, err)
		}
		if forbid && owner != "" && strings.EqualFold(owner, approver) {
			return nil, fmt.Errorf("%w (%s owns %s)", ErrSelfApproval, approver, agent)
		}
	}
	now := s.now()
	var evs []webhook.Event
	err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE approvals SET status = $1, decided_at = $2, decided_by = $3, note = $4
			WHERE id = $5 AND tenant = $6 AND status = 'pending' AND expires_at > $2`, decision, db.Micros(now), approver, note, id, a.Tenant)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n != 1 {
			return errLostRace
		}
		a.Status, a.DecidedBy, a.Note = decision, approver, note
		a.DecidedAt = &now
		evs = s.addEvent(nil, a, "approval."+decision, now)
		return s.record(ctx, tx, evs)
	})
	if errors.Is(err, errLostRace) {
		// Lost a race with another decision or with the expiry.
		cur, gerr := s.Get(ctx, tenant, id)
		switch {
		case gerr != nil:
			return nil, gerr
		case cur.Status == StatusExpired || (cur.Status == StatusPending && !cur.ExpiresAt.After(now)):
			return cur, ErrExpired
		default:
			return cur, ErrAlreadyDecided
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decide approval %s: %w", id, err)
	}
	s.m.volume.WithLabelValues(decision).Inc()
	s.m.decideTime.WithLabelValues(decision).Observe(now.Sub(a.CreatedAt).Seconds())
	s.announce(evs)
	return a, nil
}

// DeliverOverride returns the override token of an approved approval the
// first time it is asked for, and "" afterwards: the token exists in clear
// only in that one reply. The token is minted on delivery, so nothing that
// could be replayed is stored; only its jti is.
func (s *Service) DeliverOverride(ctx context.Context, a *Approval) (string, error) {
	if a.Status != StatusApproved || a.OverrideIssued {
		return "", nil
	}
	now := s.now()
	tok, jti, err := s.cfg.Overrides.MintOverride(ctx, token.OverrideClaims{
		Subject: a.Agent, Tenant: a.Tenant, Tool: a.Tool, ParamsDigest: a.ParamsDigest, ApprovalID: a.ID,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(s.cfg.OverrideTTL).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("mint override for %s: %w", a.ID, err)
	}
	res, err := s.cfg.DB.ExecContext(ctx, `UPDATE approvals SET override_jti = $1, override_issued_at = $2
		WHERE id = $3 AND status = 'approved' AND override_jti IS NULL`, jti, db.Micros(now), a.ID)
	if err != nil {
		return "", fmt.Errorf("record override for %s: %w", a.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		// Another poll got it first; this token's jti is not recorded, so
		// it could never be redeemed anyway.
		return "", err
	}
	a.OverrideIssued = true
	return tok, nil
}

// RedeemRequest is the body of POST /v1/overrides/redeem.
type RedeemRequest struct {
	Token        string `json:"token"`
	Tenant       string `json:"tenant"`
	Agent        string `json:"agent"`
	Tool         string `json:"tool"`
	ParamsDigest string `json:"params_digest"`
}

// Redeem spends an override token for the request it names, exactly once
// across every replica: the insert into override_redemptions, keyed by jti,
// is the single atomic step.
func (s *Service) Redeem(ctx context.Context, node string, req RedeemRequest) (*token.OverrideClaims, error) {
	now := s.now()
	c, err := s.cfg.Overrides.VerifyOverride(ctx, req.Tenant, req.Token, now)
	if errors.Is(err, token.ErrExpired) {
		return nil, ErrExpired
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOverride, err)
	}
	if c.Tenant != req.Tenant || c.Subject != req.Agent || c.Tool != req.Tool || c.ParamsDigest != req.ParamsDigest {
		return nil, ErrMismatch
	}
	var status, jti sql.NullString
	err = s.cfg.DB.QueryRowContext(ctx, `SELECT status, override_jti FROM approvals WHERE id = $1 AND tenant = $2`, c.ApprovalID, c.Tenant).Scan(&status, &jti)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrMismatch
	}
	if err != nil {
		return nil, fmt.Errorf("read approval %s: %w", c.ApprovalID, err)
	}
	// Only the token delivered to the agent counts, and only while the
	// approval stands.
	if status.String != StatusApproved || jti.String != c.ID {
		return nil, ErrMismatch
	}
	res, err := s.cfg.DB.ExecContext(ctx, `INSERT INTO override_redemptions (jti, tenant, approval_id, node, redeemed_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (jti) DO NOTHING`, c.ID, c.Tenant, c.ApprovalID, node, db.Micros(now))
	if err != nil {
		return nil, fmt.Errorf("redeem override: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("redeem override: %w", err)
	}
	if n != 1 {
		return nil, ErrAlreadyRedeemed
	}
	return c, nil
}

// statuses a list may ask for.
var statuses = []string{StatusPending, StatusApproved, StatusDenied, StatusExpired}

func validStatus(s string) bool { return slices.Contains(statuses, s) }
