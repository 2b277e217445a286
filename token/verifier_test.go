package token

import (
	"errors"
	"testing"
	"time"
)

func TestVerifierCaches(t *testing.T) {
	priv, pub := newKey(t)
	v := NewVerifier(keySet(t, pub), VerifyOptions{Tenant: "acme"}, 2)
	tok := mustMint(t, priv, baseClaims())

	first, err := v.Verify(tok, now)
	if err != nil {
		t.Fatal(err)
	}
	if v.Len() != 1 {
		t.Fatalf("Len = %d after one token", v.Len())
	}
	// The caller's copy is its own: changing it does not reach the cache.
	first.Tenant = "evil"
	first.Act.Sub = "evil"
	first.Audience[0] = "evil"
	second, err := v.Verify(tok, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if second.Tenant != "acme" || second.Act.Sub != "agent-a" || second.Audience[0] != "aegis" {
		t.Fatalf("cached claims were modified through a returned copy: %+v", second)
	}

	// A cached token still expires, and is dropped when it does.
	if _, err := v.Verify(tok, now.Add(10*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired cached token: %v", err)
	}
	if v.Len() != 0 {
		t.Fatalf("Len = %d after expiry", v.Len())
	}

	// Refusals are not cached.
	// Flip one character well inside the signature: the last characters of
	// a base64url signature carry padding bits and could decode the same.
	i := len(tok) - 10
	flipped := byte('A')
	if tok[i] == 'A' {
		flipped = 'B'
	}
	if _, err := v.Verify(tok[:i]+string(flipped)+tok[i+1:], now); err == nil {
		t.Fatal("tampered token accepted")
	}
	if v.Len() != 0 {
		t.Fatalf("Len = %d after a refusal", v.Len())
	}

	// Options apply to cached tokens too: a token for another tenant is
	// refused on the first and on every later call.
	other := baseClaims()
	other.Tenant = "other"
	otherTok := mustMint(t, priv, other)
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(otherTok, now); !errors.Is(err, ErrTenant) {
			t.Fatalf("call %d: other tenant: %v", i, err)
		}
	}
}

func TestVerifierBound(t *testing.T) {
	priv, pub := newKey(t)
	v := NewVerifier(keySet(t, pub), VerifyOptions{}, 3)
	var toks []string
	for i := 0; i < 10; i++ {
		tok := mustMint(t, priv, baseClaims())
		toks = append(toks, tok)
		if _, err := v.Verify(tok, now); err != nil {
			t.Fatal(err)
		}
		if v.Len() > 3 {
			t.Fatalf("Len = %d, bound 3", v.Len())
		}
	}
	// The newest stay cached; a re-presented old token verifies again.
	if _, ok := v.entries[toks[9]]; !ok {
		t.Error("newest token not cached")
	}
	if _, ok := v.entries[toks[0]]; ok {
		t.Error("oldest token still cached")
	}
	if _, err := v.Verify(toks[0], now); err != nil {
		t.Fatal(err)
	}
	if v.Len() != 3 {
		t.Fatalf("Len = %d", v.Len())
	}
}

func BenchmarkVerifierCached(b *testing.B) {
	priv, pub := newKey(b)
	v := NewVerifier(keySet(b, pub), VerifyOptions{Tenant: "acme"}, 0)
	tok := mustMint(b, priv, baseClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
