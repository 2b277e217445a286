// Package token mints and verifies Aegis agent tokens: compact JWS JWTs
// signed with Ed25519 (alg EdDSA, RFC 8037) whose claims name the tenant
// and the delegation chain (RFC 8693 "act").
//
// Verification is written against crypto/ed25519 and internal/jsonx only,
// because the wasip1 filter runs it on every request; it accepts exactly
// one algorithm and rejects anything ambiguous (duplicate JSON keys,
// padded or non-canonical base64url, unknown header parameters).
package token

import (
	"strings"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// MaxChain bounds the delegation chain: the acting agent plus at most four
// principals. Deeper chains are refused when minting and when verifying.
const MaxChain = 5

// Actor is one RFC 8693 §4.1 "act" claim: the party acting, and in its own
// act the party that acted before it.
type Actor struct {
	Sub string `json:"sub"`
	Act *Actor `json:"act,omitempty"`
}

// Audience is the "aud" claim. Mint always writes a JSON array; Verify
// accepts an array or a single string, both allowed by RFC 7519 §4.1.3
// (go-jose, for one, writes a lone audience as a string).
type Audience []string

// Claims are the claims of an agent token. Times are NumericDate seconds
// since the Unix epoch; zero means absent for nbf.
type Claims struct {
	Issuer    string   `json:"iss,omitempty"`
	Subject   string   `json:"sub"`
	Audience  Audience `json:"aud,omitempty"`
	Tenant    string   `json:"tenant"`
	Org       string   `json:"org,omitempty"`
	Scope     string   `json:"scope,omitempty"` // space-separated, RFC 8693 §4.2
	Region    string   `json:"region,omitempty"`
	ExpiresAt int64    `json:"exp"`
	NotBefore int64    `json:"nbf,omitempty"`
	IssuedAt  int64    `json:"iat"`
	ID        string   `json:"jti"`
	Act       *Actor   `json:"act,omitempty"`
}

// Scopes splits the scope claim into its tokens.
func (c *Claims) Scopes() []string { return strings.Fields(c.Scope) }

// Delegate returns the sub and act claims for agent acting for the given
// principals, in the order the CLI takes them: agent acts for
// actingFor[0], who acts for actingFor[1], and so on. The last principal
// is the subject; the agent is the outermost (current) actor, as RFC 8693
// §4.1 orders them. Without principals the agent is its own subject.
func Delegate(agent string, actingFor ...string) (sub string, act *Actor) {
	if len(actingFor) == 0 {
		return agent, nil
	}
	// Innermost first: the principal closest to the subject acted earliest.
	for i := len(actingFor) - 2; i >= 0; i-- {
		act = &Actor{Sub: actingFor[i], Act: act}
	}
	return actingFor[len(actingFor)-1], &Actor{Sub: agent, Act: act}
}

// Chain returns the delegation chain, acting agent first and principal
// (sub) last: for agent A acting for P1 acting for P2, [A, P1, P2].
func Chain(c *Claims) []string {
	var chain []string
	for a := c.Act; a != nil; a = a.Act {
		chain = append(chain, a.Sub)
	}
	return append(chain, c.Subject)
}

// Agent returns the acting agent: the outermost actor, or the subject
// when nobody acts on its behalf.
func Agent(c *Claims) string { return Chain(c)[0] }

// checkChain enforces the depth bound, non-empty names and that no party
// appears twice (a loop would let an agent pose as its own principal).
func checkChain(c *Claims) error {
	depth := 1
	for a := c.Act; a != nil; a = a.Act {
		if depth++; depth > MaxChain {
			return errs.Errorf("%w: delegation chain longer than %d", ErrChain, MaxChain)
		}
	}
	seen := map[string]bool{}
	for _, p := range Chain(c) {
		if p == "" {
			return errs.Errorf("%w: empty party in the delegation chain", ErrChain)
		}
		if seen[p] {
			return errs.Errorf("%w: %q appears twice in the delegation chain", ErrChain, p)
		}
		seen[p] = true
	}
	return nil
}
