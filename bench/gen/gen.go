// Package gen writes synthetic policy sets of a chosen size for the
// scaling benchmarks: n agents and n tools, shaped like the payments
// example (typed parameters with ranges, enums and patterns, DLP
// sanitizing, approval thresholds, delegation, regions), so that decision
// latency can be compared across sizes. A policy engine that indexes stays
// flat as n grows; one that scans does not. There are no budgets or rate
// limits: a long run must get the same decision for the same request
// from its first call to its last.
package gen

import (
	"fmt"
	"strings"
)

// Hosts spreads tools over a few upstream hosts, as real deployments do:
// lookups must discriminate on path as well as host.
const Hosts = 8

// PolicySet returns the YAML of a policy set with n agents and n tools
// (n >= 1). Agent i may call tools i, i+1 and i+2 (mod n), and every
// fourth agent also a wildcard group; tool i is
// POST https://svc<i mod 8>.gen.internal/v1/tool<i>.
func PolicySet(n int) ([]byte, error) {
	if n < 1 {
		return nil, fmt.Errorf("policy set size %d: need at least 1", n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: aegis.policy/v1
kind: PolicySet
metadata:
  name: generated-%d
  tenant: acme
  description: Synthetic policy set for scaling benchmarks (%d agents, %d tools).
defaults:
  unknown_agent: deny
  unknown_tool: deny
  mode: enforce
  fail: {read: open, write: closed}
  max_body_bytes: 524288
dlp:
  - name: email
    pattern: '(?i)[a-z0-9._%%+-]+@[a-z0-9.-]+\.[a-z]{2,}'
    replace: '[email]'
  - name: card
    builtin: card_number
    replace: '[card]'
agents:
`, n, n, n)
	for i := range n {
		tools := []string{ToolName(i), ToolName((i + 1) % n), ToolName((i + 2) % n)}
		if i%4 == 0 {
			tools = append(tools, fmt.Sprintf("group%d.*", i%16))
		}
		fmt.Fprintf(&b, "  - id: %s\n    owner: team-%d\n    tools: [%s]\n    regions: [eu-west-1, us-east-1]\n",
			AgentName(i), i%10, strings.Join(dedupe(tools), ", "))
		if i > 0 {
			fmt.Fprintf(&b, "    may_delegate_to: [%s]\n", AgentName(i-1))
		}
	}
	b.WriteString("tools:\n")
	for i := range n {
		fmt.Fprintf(&b, `  - name: %s
    risk: %s
    kind: write
    cost_usd: 0.01
    http: {host: %s, method: POST, path: %s}
    params:
      amount: {type: number, min: 0.01, max: 50000, required: true}
      currency: {type: string, enum: [EUR, USD, GBP], required: true}
      account: {type: string, pattern: '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'}
      memo: {type: string, max_length: 140}
    additional_params: deny
    approval:
      - when: {param: amount, gt: 5000}
        approvers: [leads-%d]
        expires_in: 15m
    sanitize:
      params: [memo]
      dlp: [email, card]
`, ToolName(i), []string{"low", "medium", "high"}[i%3], Host(i), Path(i), i%10)
	}
	return []byte(b.String()), nil
}

// AgentName is agent i's id.
func AgentName(i int) string { return fmt.Sprintf("agent-%d", i) }

// ToolName is tool i's name; every tool sits in one of 16 groups so that
// wildcard grants have something to match.
func ToolName(i int) string { return fmt.Sprintf("group%d.tool%d", i%16, i) }

// Host is tool i's upstream host.
func Host(i int) string { return fmt.Sprintf("svc%d.gen.internal", i%Hosts) }

// Path is tool i's request path.
func Path(i int) string { return fmt.Sprintf("/v1/tool%d", i) }

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
