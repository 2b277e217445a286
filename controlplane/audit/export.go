package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
)

// BundleSource gives the policy bundles (release records and runtime
// bundles) that were active for a tenant in a window. The policy store
// implements it.
type BundleSource interface {
	BundlesActive(ctx context.Context, tenant string, from, to time.Time) ([]evidence.Bundle, error)
}

// ApprovalSource gives the approval records, with their approvers, decided
// or created for a tenant in a window. The approvals store implements it.
type ApprovalSource interface {
	ApprovalsBetween(ctx context.Context, tenant string, from, to time.Time) ([]json.RawMessage, error)
}

// ExportOptions are the sources and key of an evidence pack.
type ExportOptions struct {
	Key       ed25519.PrivateKey
	Bundles   BundleSource   // nil: the pack holds no bundles
	Approvals ApprovalSource // nil: the pack holds no approvals
	TempDir   string
	Now       time.Time
}

// Export writes a signed evidence pack of tenant's events between from and
// to. Per chain it exports a contiguous seq range: from just after the last
// checkpoint signed before the window (or seq 1) to the last event in the
// window, extended to every checkpoint signed in the window. The range comes
// from signed checkpoints and the chain head, not from the rows alone, so
// rows deleted from the database show up as missing events when the pack is
// verified instead of silently shrinking it.
func (s *Store) Export(ctx context.Context, w io.Writer, tenant string, from, to time.Time, o ExportOptions) error {
	b, err := evidence.NewBuilder(o.TempDir, evidence.Meta{Tenant: tenant, From: from, To: to, CreatedAt: o.Now})
	if err != nil {
		return err
	}
	defer b.Close()
	type chainRef struct {
		node, chain, home string
		key, head         int64
	}
	var chains []chainRef
	// A shared gateway's chain belongs to its home tenant but carries the
	// events of every tenant it serves: those chains are exported too, with
	// the other tenants' events as hash-only (redacted) links.
	rows, err := s.db.QueryContext(ctx, `SELECT node_id, chain_id, chain_key, head_seq, tenant FROM audit_chains c WHERE c.tenant = $1
		OR EXISTS (SELECT 1 FROM audit_chain_tenants t WHERE t.tenant = $1 AND t.node_id = c.node_id AND t.chain_id = c.chain_id)
		ORDER BY node_id, chain_id`, tenant)
	if err != nil {
		return fmt.Errorf("export: chains: %w", err)
	}
	for rows.Next() {
		var c chainRef
		if err := rows.Scan(&c.node, &c.chain, &c.key, &c.head, &c.home); err != nil {
			rows.Close()
			return fmt.Errorf("export: chains: %w", err)
		}
		chains = append(chains, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export: chains: %w", err)
	}
	fromUS, toUS := db.Micros(from), db.Micros(to)
	for _, c := range chains {
		proof, ok, err := s.chainRange(ctx, c.node, c.chain, c.key, c.head, fromUS, toUS)
		if err != nil {
			return fmt.Errorf("export: chain %s/%s: %w", c.node, c.chain, err)
		}
		if !ok {
			continue
		}
		if c.home != tenant {
			proof.Tenant = c.home
		}
		b.AddChain(proof)
		rows, err := s.db.QueryContext(ctx, `SELECT seq, hash, tenant, body FROM audit_events WHERE chain_key = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq`,
			c.key, proof.FirstSeq, proof.LastSeq)
		if err != nil {
			return fmt.Errorf("export: chain %s/%s: %w", c.node, c.chain, err)
		}
		for rows.Next() {
			l := evidence.EventLine{NodeID: c.node, ChainID: c.chain}
			var body []byte
			var evTenant string
			if err := rows.Scan(&l.Seq, &l.Hash, &evTenant, &body); err != nil {
				rows.Close()
				return fmt.Errorf("export: chain %s/%s: %w", c.node, c.chain, err)
			}
			if evTenant == tenant {
				l.Event = body
			} else {
				l.Redacted = true
			}
			if err := b.AddEvent(l); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("export: chain %s/%s: %w", c.node, c.chain, err)
		}
		cps, err := s.Checkpoints(ctx, CheckpointFilter{Tenant: c.home, NodeID: c.node, ChainID: c.chain, MinSeq: max(proof.FirstSeq-1, 1), MaxSeq: proof.LastSeq})
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		for _, cp := range cps {
			b.AddCheckpoint(cp)
		}
	}
	if o.Bundles != nil {
		bundles, err := o.Bundles.BundlesActive(ctx, tenant, from, to)
		if err != nil {
			return fmt.Errorf("export: bundles: %w", err)
		}
		for _, bd := range bundles {
			if err := b.AddBundle(bd); err != nil {
				return err
			}
		}
	}
	if o.Approvals != nil {
		approvals, err := o.Approvals.ApprovalsBetween(ctx, tenant, from, to)
		if err != nil {
			return fmt.Errorf("export: approvals: %w", err)
		}
		for _, a := range approvals {
			b.AddApproval(a)
		}
	}
	return b.Finish(w, o.Key)
}

// chainRange picks the seq range of one chain (key is its chain_key) to
// export and its anchor.
func (s *Store) chainRange(ctx context.Context, node, chain string, key, head, fromUS, toUS int64) (evidence.ChainProof, bool, error) {
	p := evidence.ChainProof{NodeID: node, ChainID: chain, PrevHash: evidence.ZeroHash}
	var lo, hi, cpHi, cpBefore sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT min(seq), max(seq) FROM audit_events WHERE chain_key = $1 AND time_us >= $2 AND time_us <= $3`,
		key, fromUS, toUS).Scan(&lo, &hi); err != nil {
		return p, false, err
	}
	if err := s.db.QueryRowContext(ctx, `SELECT max(seq) FROM audit_checkpoints WHERE node_id = $1 AND chain_id = $2 AND time_us >= $3 AND time_us <= $4`,
		node, chain, fromUS, toUS).Scan(&cpHi); err != nil {
		return p, false, err
	}
	if !lo.Valid && !cpHi.Valid {
		return p, false, nil
	}
	// Start right after the last checkpoint signed before the window (or at
	// seq 1): the anchor is then a signed hash, and rows deleted at the
	// start of the window are missing events, not a shorter window.
	if err := s.db.QueryRowContext(ctx, `SELECT max(seq) FROM audit_checkpoints WHERE node_id = $1 AND chain_id = $2 AND time_us < $3`,
		node, chain, fromUS).Scan(&cpBefore); err != nil {
		return p, false, err
	}
	p.FirstSeq = cpBefore.Int64 + 1
	if lo.Valid && lo.Int64 < p.FirstSeq {
		p.FirstSeq = lo.Int64
	}
	p.LastSeq = max(hi.Int64, cpHi.Int64)
	p.LastSeq = min(p.LastSeq, head)
	if p.LastSeq < p.FirstSeq {
		return p, false, nil
	}
	if p.FirstSeq == 1 {
		return p, true, nil
	}
	var prev string
	err := s.db.QueryRowContext(ctx, `SELECT hash FROM audit_events WHERE chain_key = $1 AND seq = $2`, key, p.FirstSeq-1).Scan(&prev)
	if isNoRows(err) {
		err = s.db.QueryRowContext(ctx, `SELECT hash FROM audit_checkpoints WHERE node_id = $1 AND chain_id = $2 AND seq = $3`, node, chain, p.FirstSeq-1).Scan(&prev)
	}
	switch {
	case isNoRows(err):
		// The anchor row is gone too: start the proof one earlier so the
		// verifier names the missing event instead of a wrong hash.
		p.FirstSeq--
	case err != nil:
		return p, false, err
	default:
		p.PrevHash = prev
	}
	return p, true, nil
}
