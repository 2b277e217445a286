package tokens

import (
	"bytes"
	"encoding/json"
	"fmt"
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
