package nodes

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func csrPEM(t testing.TB, priv ed25519.PrivateKey) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "node"}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestParseEnrollRequest(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	b64 := base64.StdEncoding.EncodeToString
	jt := "aegis-join-abc"
	proof := b64(ed25519.Sign(priv, []byte(EnrollProofPrefix+jt)))
	csr := csrPEM(t, priv)
	tamperedCSR := strings.Replace(csr, csr[len(csr)-60:len(csr)-59], "A", 1)
	for _, tc := range []struct {
		name    string
		req     EnrollRequest
		wantErr string
		want    ed25519.PublicKey
	}{
		{"key and proof", EnrollRequest{JoinToken: jt, PublicKey: b64(pub), Proof: proof}, "", pub},
		{"csr", EnrollRequest{JoinToken: jt, CSR: csr}, "", pub},
		{"csr and matching key", EnrollRequest{JoinToken: jt, CSR: csr, PublicKey: b64(pub)}, "", pub},
		{"csr and other key", EnrollRequest{JoinToken: jt, CSR: csr, PublicKey: b64(otherPub)}, "different keys", nil},
		{"no join token", EnrollRequest{PublicKey: b64(pub), Proof: proof}, "join_token", nil},
		{"no key", EnrollRequest{JoinToken: jt}, "want csr", nil},
		{"key without proof", EnrollRequest{JoinToken: jt, PublicKey: b64(pub)}, "proof", nil},
		{"proof by another key", EnrollRequest{JoinToken: jt, PublicKey: b64(pub), Proof: b64(ed25519.Sign(otherPriv, []byte(EnrollProofPrefix+jt)))}, "does not verify", nil},
		{"proof for another token", EnrollRequest{JoinToken: jt, PublicKey: b64(pub), Proof: b64(ed25519.Sign(priv, []byte(EnrollProofPrefix+"other")))}, "does not verify", nil},
		{"short key", EnrollRequest{JoinToken: jt, PublicKey: b64(pub[:31]), Proof: proof}, "32-byte", nil},
		{"bad name", EnrollRequest{JoinToken: jt, Name: "a b", PublicKey: b64(pub), Proof: proof}, "name", nil},
		{"csr garbage", EnrollRequest{JoinToken: jt, CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, "csr", nil},
		{"csr wrong block", EnrollRequest{JoinToken: jt, CSR: strings.ReplaceAll(csr, "CERTIFICATE REQUEST", "CERTIFICATE")}, "csr", nil},
		{"csr tampered", EnrollRequest{JoinToken: jt, CSR: tamperedCSR}, "csr", nil},
		{"csr trailing block", EnrollRequest{JoinToken: jt, CSR: csr + csr}, "csr", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEnrollRequest(tc.req)
			if tc.wantErr == "" {
				if err != nil || !got.Equal(tc.want) {
					t.Fatalf("got %x, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseEnrollRequest(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	b64 := base64.StdEncoding.EncodeToString
	f.Add("aegis-join-x", "", b64(pub), b64(ed25519.Sign(priv, []byte(EnrollProofPrefix+"aegis-join-x"))), "")
	f.Add("aegis-join-x", "n1", "", "", csrPEM(f, priv))
	f.Add("", "", "", "", "-----BEGIN CERTIFICATE REQUEST-----\n\n-----END CERTIFICATE REQUEST-----")
	f.Fuzz(func(t *testing.T, jt, name, key, proof, csr string) {
		got, err := ParseEnrollRequest(EnrollRequest{JoinToken: jt, Name: name, PublicKey: key, Proof: proof, CSR: csr})
		if err != nil {
			return
		}
		if len(got) != ed25519.PublicKeySize {
			t.Fatalf("accepted a %d-byte key", len(got))
		}
		// An accepted key was proven: by the CSR's self-signature or by
		// the proof over the join token.
		if csr == "" && !ed25519.Verify(got, []byte(EnrollProofPrefix+jt), mustB64(proof)) {
			t.Fatal("accepted a key without a valid proof")
		}
	})
}

func mustB64(s string) []byte {
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}

func TestCAAndIdentity(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateCA(dir, now)
	if err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("reload CA: %v", err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	certPEM, err := ca.IssueNode("acme", "node-1", pub, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now})
	if err != nil {
		t.Fatalf("node certificate does not verify against the CA: %v", err)
	}
	id, tenant, err := IdentityFromTLS(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: chains})
	if err != nil || id != "node-1" || tenant != "acme" {
		t.Fatalf("identity %q %q %v", id, tenant, err)
	}
	// A presented but unverified certificate is no identity.
	if _, _, err := IdentityFromTLS(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("unverified certificate accepted: %v", err)
	}
	for _, u := range []string{"spiffe://other/tenant/acme/node/n", "spiffe://aegis/tenant/acme/node/", "spiffe://aegis/tenant//node/n", "spiffe://aegis/tenant/acme/node/n/x", "https://aegis/tenant/acme/node/n", "spiffe://aegis/tenant/acme/node/n?x=1"} {
		parsed, _ := url.Parse(u)
		fake := &x509.Certificate{URIs: []*url.URL{parsed}}
		if _, _, err := IdentityFromTLS(&tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{fake}}}); err == nil {
			t.Errorf("URI %s accepted as a node identity", u)
		}
	}
	// A CA key that does not match its certificate is refused.
	other := t.TempDir()
	if _, err := LoadOrCreateCA(other, now); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(filepath.Join(other, "ca.key"), filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir, now); err == nil {
		t.Fatal("mismatched CA key accepted")
	}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o600)
}
