package approvals

import (
	"context"
	"fmt"

	"github.com/aegis-mesh/aegis/policies"
)

// SourceOwners is an OwnerPolicy that reads agents' owners from the
// tenant's current policy source (file name and YAML), for example the
// policy file of the version the latest release carries. It forbids owners
// from approving their own agents' requests: the policy language has no
// setting to allow it, and separation of duties is the safe default.
type SourceOwners func(ctx context.Context, tenant string) (name string, src []byte, err error)

// AgentOwner implements OwnerPolicy. An agent the policy does not list has
// no owner.
func (f SourceOwners) AgentOwner(ctx context.Context, tenant, agent string) (string, bool, error) {
	name, src, err := f(ctx, tenant)
	if err != nil {
		return "", true, fmt.Errorf("policy source of %q: %w", tenant, err)
	}
	ps, errs := policies.Load(name, src)
	if len(errs) > 0 {
		return "", true, fmt.Errorf("policy source of %q: %w", tenant, errs)
	}
	if ps.Metadata.Tenant != tenant {
		return "", true, fmt.Errorf("policy source of %q is for tenant %q", tenant, ps.Metadata.Tenant)
	}
	for _, a := range ps.Agents {
		if a.ID == agent {
			return a.Owner, true, nil
		}
	}
	return "", true, nil
}
