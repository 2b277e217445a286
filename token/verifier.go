package token

import (
	"sync"
	"time"
)

// DefaultCacheEntries is the Verifier cache size when none is given.
const DefaultCacheEntries = 1024

// Verifier verifies tokens against one key set with fixed options and
// remembers the tokens it has accepted. Agents present the same token on
// every call until it expires, and an Ed25519 verification costs about
// 1.5 ms inside the wasip1 filter (no assembly there), so a repeated token
// costs only a map lookup and the claim checks that depend on the clock.
//
// # Notes
//
//   - Only accepted tokens are cached; every refusal is recomputed.
//   - A cached token is checked again at each call with the time given
//     (exp, nbf, iat) and dropped once it fails.
//   - The cache holds at most the given number of tokens and evicts the
//     oldest first, so memory stays below entries × MaxSize.
//   - Build a new Verifier when the key set changes.
//   - Safe for concurrent use.
type Verifier struct {
	ks   *KeySet
	opts VerifyOptions

	mu      sync.Mutex
	entries map[string]*Claims
	order   []string // ring of cached tokens, oldest at next
	next    int
}

// NewVerifier returns a Verifier for ks with opts (opts.Now is ignored:
// the time is given to each call) caching up to entries tokens
// (DefaultCacheEntries when entries <= 0).
func NewVerifier(ks *KeySet, opts VerifyOptions, entries int) *Verifier {
	if entries <= 0 {
		entries = DefaultCacheEntries
	}
	opts.Now = time.Time{}
	return &Verifier{ks: ks, opts: opts, entries: make(map[string]*Claims, entries), order: make([]string, 0, entries)}
}

// Verify is token.Verify with the Verifier's key set and options at now.
// The returned claims are the caller's own copy.
func (v *Verifier) Verify(tok string, now time.Time) (*Claims, error) {
	opts := v.opts
	opts.Now = now
	v.mu.Lock()
	cached, ok := v.entries[tok]
	v.mu.Unlock()
	if ok {
		if err := checkClaims(cached, opts); err != nil {
			v.mu.Lock()
			delete(v.entries, tok)
			v.mu.Unlock()
			return nil, err
		}
		return cached.clone(), nil
	}
	c, err := Verify(tok, v.ks, opts)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.insert(tok, c)
	v.mu.Unlock()
	return c.clone(), nil
}

// Len reports how many tokens are cached.
func (v *Verifier) Len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.entries)
}

func (v *Verifier) insert(tok string, c *Claims) {
	if _, ok := v.entries[tok]; ok {
		return
	}
	if len(v.order) < cap(v.order) {
		v.order = append(v.order, tok)
	} else {
		// Full ring: replace the oldest. It may already be gone (expired);
		// deleting a missing key is a no-op.
		delete(v.entries, v.order[v.next])
		v.order[v.next] = tok
		v.next = (v.next + 1) % len(v.order)
	}
	v.entries[tok] = c
}

// clone copies c deeply enough that the caller cannot change a cached
// value: the audience slice and the actor chain are copied.
func (c *Claims) clone() *Claims {
	out := *c
	out.Audience = append(Audience(nil), c.Audience...)
	var tail **Actor = &out.Act
	for a := c.Act; a != nil; a = a.Act {
		cp := &Actor{Sub: a.Sub}
		*tail = cp
		tail = &cp.Act
	}
	return &out
}
