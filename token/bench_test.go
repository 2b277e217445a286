package token

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// BenchmarkVerify measures the per-request cost the filter pays for an
// agent token with a two-principal chain.
func BenchmarkVerify(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	ks, err := NewKeySet(priv.Public().(ed25519.PublicKey))
	if err != nil {
		b.Fatal(err)
	}
	tok, err := Mint(priv, baseClaims())
	if err != nil {
		b.Fatal(err)
	}
	opts := VerifyOptions{Now: now, Issuer: "https://cp.example", Audience: "aegis", Tenant: "acme"}
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if _, err := Verify(tok, ks, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMint(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	c := baseClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Mint(priv, c); err != nil {
			b.Fatal(err)
		}
	}
}
