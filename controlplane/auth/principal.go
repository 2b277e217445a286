// Package auth says who is calling the control plane and what they may do.
// Every API call carries a principal: a human or service with roles, or an
// enrolled node. Handlers read it from the request context; they never trust
// a tenant or node id the caller merely claims in a body or in xDS metadata.
package auth

import (
	"context"
	"fmt"
	"regexp"
	"slices"
)

// Role is one of the fixed roles of the control plane API.
type Role string

const (
	RoleAdmin     Role = "admin"     // manage tenants, users, keys, enrollment
	RoleAuthor    Role = "author"    // submit policies
	RoleApprover  Role = "approver"  // approve policies and approval requests
	RolePublisher Role = "publisher" // publish, roll out and roll back
	RoleAuditor   Role = "auditor"   // read audit evidence, export packs
	RoleNode      Role = "node"      // an enrolled data-plane node
	RoleAgent     Role = "agent"     // an agent polling its own approvals
)

// Principal is the authenticated caller of one request.
type Principal struct {
	// Subject is the stable id of the caller: a user name, a node id, or the
	// agent id of an agent token.
	Subject string
	// Tenant scopes what the caller may see; empty means every tenant
	// (only for admins and auditors created without one).
	Tenant string
	Roles  []Role
	// TokenID is the jti of the credential used, for the audit of API calls.
	TokenID string
	// Serves lists the tenants a shared gateway node works for, its home
	// Tenant among them. Only node principals carry it, and only as read
	// from the enrolled node record; empty means Tenant alone.
	Serves []string
	// Groups are the teams a human belongs to, as written into its API
	// token by the admin who issued it. A policy's approval rule names the
	// groups (or people) who may decide; see InApprovers.
	Groups []string
}

// Has reports whether p holds role r.
func (p Principal) Has(r Role) bool { return slices.Contains(p.Roles, r) }

// InApprovers reports whether p is one of approvers: its subject or one of
// its groups is listed. An empty list names nobody in particular, so any
// approver qualifies.
func (p Principal) InApprovers(approvers []string) bool {
	if len(approvers) == 0 {
		return true
	}
	if slices.Contains(approvers, p.Subject) {
		return true
	}
	for _, g := range p.Groups {
		if slices.Contains(approvers, g) {
			return true
		}
	}
	return false
}

// MaxGroups bounds the groups one API token carries.
const MaxGroups = 32

var reGroup = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$`)

// ValidGroupName reports whether g is a name a policy's approvers list and
// a token's groups may hold: the two are compared, so one rule serves both.
func ValidGroupName(g string) bool { return reGroup.MatchString(g) }

// ValidGroups checks a token's groups: at most MaxGroups, each a name as
// policies write approvers (letters, digits, ._:@/+-, at most 128 bytes),
// none repeated.
func ValidGroups(gs []string) error {
	if len(gs) > MaxGroups {
		return fmt.Errorf("groups: at most %d", MaxGroups)
	}
	seen := map[string]bool{}
	for i, g := range gs {
		if !ValidGroupName(g) {
			return fmt.Errorf("groups[%d]: %q is not a group name (letters, digits and ._:@/+-, at most 128 bytes)", i, g)
		}
		if seen[g] {
			return fmt.Errorf("groups[%d]: %q is listed twice", i, g)
		}
		seen[g] = true
	}
	return nil
}

// CanAccessTenant reports whether p may act on tenant t.
func (p Principal) CanAccessTenant(t string) bool { return p.Tenant == "" || p.Tenant == t }

// CanServe reports whether p, a node, may fetch configuration and submit
// requests and evidence for tenant t: its home tenant or one it serves.
// Unlike CanAccessTenant an empty Tenant grants nothing.
func (p Principal) CanServe(t string) bool {
	return t != "" && (t == p.Tenant || slices.Contains(p.Serves, t))
}

type ctxKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal of the request, if authenticated.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
