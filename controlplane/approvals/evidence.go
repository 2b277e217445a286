package approvals

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

// EvidenceRecord is how an approval appears in an evidence pack: the
// request, who could and who did decide it and when, and what became of its
// override. The override token itself is never stored, so the pack names it
// by jti only.
type EvidenceRecord struct {
	Record
	OverrideJTI      string     `json:"override_jti,omitempty"`
	OverrideIssuedAt *time.Time `json:"override_issued_at,omitempty"`
	RedeemedAt       *time.Time `json:"override_redeemed_at,omitempty"`
	RedeemedBy       string     `json:"override_redeemed_by,omitempty"`
}

// maxEvidenceApprovals bounds one pack's approvals so that a huge window
// fails loudly instead of building an approvals file the verifier refuses.
const maxEvidenceApprovals = 100000

// ApprovalsBetween returns, oldest first, every approval of tenant created
// or decided (expiry counts as a decision) between from and to inclusive,
// as evidence records. It implements audit.ApprovalSource. Approvals past
// their expiry are expired first, so the pack does not show them pending.
func (s *Service) ApprovalsBetween(ctx context.Context, tenant string, from, to time.Time) ([]json.RawMessage, error) {
	if _, err := s.Sweep(ctx); err != nil {
		return nil, fmt.Errorf("approvals for evidence: %w", err)
	}
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT a.id, a.tenant, a.agent, a.chain, a.tool, a.params_digest, a.reasons, a.approvers,
		a.policy_revision, a.decision_id, a.request_summary, a.requested_by, a.status, a.batched, a.created_at, a.expires_at,
		a.decided_at, a.decided_by, a.note, a.override_jti, a.override_issued_at, r.redeemed_at, r.node
		FROM approvals a LEFT JOIN override_redemptions r ON r.jti = a.override_jti AND r.approval_id = a.id
		WHERE a.tenant = $1 AND ((a.created_at >= $2 AND a.created_at <= $3) OR (a.decided_at >= $2 AND a.decided_at <= $3))
		ORDER BY a.created_at, a.id LIMIT $4`, tenant, db.Micros(from), db.Micros(to), maxEvidenceApprovals+1)
	if err != nil {
		return nil, fmt.Errorf("approvals for evidence: %w", err)
	}
	defer rows.Close()
	out := []json.RawMessage{}
	for rows.Next() {
		if len(out) == maxEvidenceApprovals {
			return nil, fmt.Errorf("approvals for evidence: more than %d in the window; export a shorter one", maxEvidenceApprovals)
		}
		rec, err := scanEvidence(rows)
		if err != nil {
			return nil, fmt.Errorf("approvals for evidence: %w", err)
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("approvals for evidence: %s: %w", rec.ID, err)
		}
		out = append(out, raw)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("approvals for evidence: %w", err)
	}
	return out, nil
}

func scanEvidence(rows *sql.Rows) (*EvidenceRecord, error) {
	var r EvidenceRecord
	var issued, redeemed sql.NullInt64
	var jti, node sql.NullString
	if err := scanRecord(rows, &r.Record, &jti, &issued, &redeemed, &node); err != nil {
		return nil, err
	}
	r.OverrideIssuedAt, r.RedeemedAt = optMicros(issued), optMicros(redeemed)
	r.OverrideJTI, r.RedeemedBy = jti.String, node.String
	return &r, nil
}
