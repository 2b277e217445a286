package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/aegis-mesh/aegis/bundle"
)

// dataRoot is policies.DataRoot, copied so this package does not link the
// policy compiler (and OPA); a test keeps the two equal.
const dataRoot = "aegis_policy"

// Delegations is the may_delegate_to table of one compiled policy: for each
// agent, the agents that may act for it.
type Delegations map[string]map[string]bool

// Allows reports whether from lists to in may_delegate_to. Unknown agents
// delegate to nobody.
func (d Delegations) Allows(from, to string) bool { return d[from][to] }

// ParseDelegation reads the may_delegate_to table from a compiled policy's
// data.json (policies.Compiled.Data), the same table the filter's policy
// evaluates, so the exchange and the data plane agree on who may delegate.
func ParseDelegation(data []byte) (Delegations, error) {
	var doc map[string]struct {
		Agents map[string]struct {
			MayDelegateTo map[string]bool `json:"may_delegate_to"`
		} `json:"agents"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("policy data: %w", err)
	}
	root, ok := doc[dataRoot]
	if !ok {
		return nil, fmt.Errorf("policy data: no %q member", dataRoot)
	}
	out := Delegations{}
	for id, a := range root.Agents {
		set := map[string]bool{}
		for to, yes := range a.MayDelegateTo {
			if yes {
				set[to] = true
			}
		}
		out[id] = set
	}
	return out, nil
}

// BundleDelegation is a DelegationPolicy reading may_delegate_to from the
// tenant's current runtime bundle (its data.json), as the function returns
// it: for example the policy store's current release for the tenant. A
// tenant without a bundle, or a bundle that does not open, refuses every
// delegation (the function's error is returned).
type BundleDelegation func(ctx context.Context, tenant string) (runtimeBundle []byte, err error)

// DelegationAllowed implements DelegationPolicy.
func (f BundleDelegation) DelegationAllowed(ctx context.Context, tenant, from, to string) (bool, error) {
	raw, err := f(ctx, tenant)
	if err != nil {
		return false, fmt.Errorf("current bundle of %q: %w", tenant, err)
	}
	b, err := bundle.Open(raw, bundle.Limits{})
	if err != nil {
		return false, fmt.Errorf("current bundle of %q: %w", tenant, err)
	}
	if b.Manifest.Tenant != tenant {
		return false, fmt.Errorf("current bundle of %q belongs to tenant %q", tenant, b.Manifest.Tenant)
	}
	data, ok := b.Files["data.json"]
	if !ok {
		return false, fmt.Errorf("current bundle of %q has no data.json", tenant)
	}
	d, err := ParseDelegation(data)
	if err != nil {
		return false, err
	}
	return d.Allows(from, to), nil
}
