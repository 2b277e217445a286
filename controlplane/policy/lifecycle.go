// Package policy runs the policy lifecycle of each tenant: submit a YAML
// policy set (validated and compiled by package policies), approve it
// (recording who; optionally two-person and N distinct approvers), publish
// it as a signed release (runtime bundle with its release record: approvers,
// publisher, stage, replaces), roll it out by stage, region and node role,
// and roll back. Every transition is an immutable, timestamped row.
//
// Versions and revisions: a submission gets the next version number of its
// tenant; each release (publish, widening a rollout, rollback) gets the next
// revision, the number in the signed manifest that nodes compare. Revisions
// only grow, so nodes never see a downgrade; a rollback is a new revision
// whose release record names the revision it replaces and whose content is
// an earlier approved version.
package policy

import (
	"errors"
	"fmt"
	"slices"
)

// Stages of a release.
const (
	StageObserve = "observe" // decisions recorded, calls not blocked
	StageEnforce = "enforce"
)

// Errors of the lifecycle, each with a stable code for the API.
var (
	ErrUnknownVersion    = errors.New("unknown policy version")
	ErrUnknownRevision   = errors.New("unknown release revision")
	ErrNoRelease         = errors.New("no release for this node")
	ErrSelfApproval      = errors.New("the submitter cannot approve under the tenant's two-person rule")
	ErrAlreadyApproved   = errors.New("already approved by this approver")
	ErrNotApproved       = errors.New("policy version is not approved")
	ErrRevisionDowngrade = errors.New("revision is not above the latest release")
	ErrRevisionConflict  = errors.New("revision is not the next one")
	ErrRollbackTarget    = errors.New("rollback target is not an earlier approved release or version")
	ErrTenantMismatch    = errors.New("policy set names another tenant")
)

// Code maps a lifecycle error to its API error code and HTTP status.
func Code(err error) (code string, status int) {
	switch {
	case errors.Is(err, ErrUnknownVersion):
		return "unknown_version", 404
	case errors.Is(err, ErrUnknownRevision):
		return "unknown_revision", 404
	case errors.Is(err, ErrNoRelease):
		return "no_release", 404
	case errors.Is(err, ErrSelfApproval):
		return "self_approval", 403
	case errors.Is(err, ErrAlreadyApproved):
		return "already_approved", 409
	case errors.Is(err, ErrNotApproved):
		return "not_approved", 409
	case errors.Is(err, ErrRevisionDowngrade):
		return "revision_downgrade", 409
	case errors.Is(err, ErrRevisionConflict):
		return "revision_conflict", 409
	case errors.Is(err, ErrRollbackTarget):
		return "bad_rollback_target", 409
	case errors.Is(err, ErrTenantMismatch):
		return "tenant_mismatch", 422
	}
	return "internal", 500
}

// ApprovalRule is a tenant's approval setting.
type ApprovalRule struct {
	TwoPerson bool
	Required  int
}

// CheckApproval decides whether approver may approve a version submitted
// by submitter that already has the approvers in have.
func CheckApproval(rule ApprovalRule, submitter, approver string, have []string) error {
	if rule.TwoPerson && approver == submitter {
		return ErrSelfApproval
	}
	if slices.Contains(have, approver) {
		return ErrAlreadyApproved
	}
	return nil
}

// Approved reports whether a version with these approvers (distinct
// names) may be published. Under the two-person rule the submitter's own
// approval never counts, even one recorded before the rule was turned on.
func Approved(rule ApprovalRule, submitter string, approvers []string) bool {
	n := 0
	for _, a := range approvers {
		if rule.TwoPerson && a == submitter {
			continue
		}
		n++
	}
	req := rule.Required
	if req < 1 {
		req = 1
	}
	return n >= req
}

// CheckRevision decides the revision of a new release: latest+1, and a
// requested revision (0: any) must be exactly that.
func CheckRevision(latest, requested int64) (int64, error) {
	next := latest + 1
	switch {
	case requested == 0 || requested == next:
		return next, nil
	case requested <= latest:
		return 0, fmt.Errorf("%w: requested %d, latest %d", ErrRevisionDowngrade, requested, latest)
	default:
		return 0, fmt.Errorf("%w: requested %d, next is %d", ErrRevisionConflict, requested, next)
	}
}

// Selector limits a release to nodes of some regions and roles; empty
// lists match every node.
type Selector struct {
	Regions []string `json:"regions,omitempty"`
	Roles   []string `json:"roles,omitempty"`
}

// Matches reports whether a node in region with role is targeted.
func (s Selector) Matches(region, role string) bool {
	return (len(s.Regions) == 0 || slices.Contains(s.Regions, region)) &&
		(len(s.Roles) == 0 || slices.Contains(s.Roles, role))
}
