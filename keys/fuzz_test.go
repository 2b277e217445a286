package keys

import (
	"crypto/ed25519"
	"errors"
	"testing"
)

func FuzzParsePEM(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	privPEM, _ := MarshalPrivatePEM(priv)
	pubPEM, _ := MarshalPublicPEM(priv.Public().(ed25519.PublicKey))
	f.Add(privPEM)
	f.Add(pubPEM)
	f.Add(append(append([]byte(nil), pubPEM...), pubPEM...))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if priv, err := ParsePrivatePEM(data); err == nil {
			if len(priv) != ed25519.PrivateKeySize {
				t.Fatalf("private key of %d bytes", len(priv))
			}
			// What parses must re-encode to a key that parses the same.
			again, err := MarshalPrivatePEM(priv)
			if err != nil {
				t.Fatal(err)
			}
			if back, err := ParsePrivatePEM(again); err != nil || !back.Equal(priv) {
				t.Fatalf("round trip: %v", err)
			}
		} else if !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("private: error without ErrInvalidKey: %v", err)
		}
		if pub, err := ParsePublicPEM(data); err == nil {
			if len(pub) != ed25519.PublicKeySize {
				t.Fatalf("public key of %d bytes", len(pub))
			}
		} else if !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("public: error without ErrInvalidKey: %v", err)
		}
	})
}
