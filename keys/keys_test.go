package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTripAndX509Interop(t *testing.T) {
	priv, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)

	privPEM, err := MarshalPrivatePEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicPEM(pub)
	if err != nil {
		t.Fatal(err)
	}

	// Our encoding must be byte-identical to crypto/x509's.
	wantPriv, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	wantPub, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(privPEM); !bytes.Equal(b.Bytes, wantPriv) {
		t.Errorf("private DER differs from crypto/x509:\n got %x\nwant %x", b.Bytes, wantPriv)
	}
	if b, _ := pem.Decode(pubPEM); !bytes.Equal(b.Bytes, wantPub) {
		t.Errorf("public DER differs from crypto/x509:\n got %x\nwant %x", b.Bytes, wantPub)
	}

	gotPriv, err := ParsePrivatePEM(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !gotPriv.Equal(priv) {
		t.Error("private key changed in round trip")
	}
	gotPub, err := ParsePublicPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !gotPub.Equal(pub) {
		t.Error("public key changed in round trip")
	}
}

func TestOpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k.pem")
	pubFile := filepath.Join(dir, "p.pem")
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	if out, err := exec.Command(openssl, "pkey", "-in", keyFile, "-pubout", "-out", pubFile).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
	privPEM, _ := os.ReadFile(keyFile)
	pubPEM, _ := os.ReadFile(pubFile)
	priv, err := ParsePrivatePEM(privPEM)
	if err != nil {
		t.Fatalf("openssl private key: %v", err)
	}
	pub, err := ParsePublicPEM(pubPEM)
	if err != nil {
		t.Fatalf("openssl public key: %v", err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("openssl public key does not match its private key")
	}

	// And openssl reads what we write: derive the public key from our PEM.
	ours, _ := Generate(rand.Reader)
	ourPEM, _ := MarshalPrivatePEM(ours)
	if err := os.WriteFile(keyFile, ourPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "pkey", "-in", keyFile, "-pubout").Output()
	if err != nil {
		t.Fatalf("openssl cannot read our private key: %v", err)
	}
	want, _ := MarshalPublicPEM(ours.Public().(ed25519.PublicKey))
	if !bytes.Equal(out, want) {
		t.Errorf("openssl derived\n%s\nwant\n%s", out, want)
	}
}

func TestParsePKCS8V2(t *testing.T) {
	priv, _ := Generate(rand.Reader)
	pub := priv.Public().(ed25519.PublicKey)
	v2 := append(append(append(append([]byte(nil), pkcs8V2Prefix...), priv.Seed()...), pkcs8V2PubTag...), pub...)
	got, err := ParsePrivatePEM(pem.EncodeToMemory(&pem.Block{Type: PrivatePEMType, Bytes: v2}))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(priv) {
		t.Fatal("v2 key parsed to a different key")
	}
	other, _ := Generate(rand.Reader)
	copy(v2[len(v2)-32:], other.Public().(ed25519.PublicKey))
	_, err = ParsePrivatePEM(pem.EncodeToMemory(&pem.Block{Type: PrivatePEMType, Bytes: v2}))
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched v2 public key: err = %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	priv, _ := Generate(rand.Reader)
	pub := priv.Public().(ed25519.PublicKey)
	privPEM, _ := MarshalPrivatePEM(priv)
	pubPEM, _ := MarshalPublicPEM(pub)
	privDER, _ := pem.Decode(privPEM)
	pubDER, _ := pem.Decode(pubPEM)

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPriv, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	enc := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	withHeader := pem.EncodeToMemory(&pem.Block{Type: PrivatePEMType, Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: privDER.Bytes})

	tests := []struct {
		name    string
		public  bool
		data    []byte
		wantMsg string
	}{
		{"private empty", false, nil, "no PEM block"},
		{"private garbage", false, []byte("not a key"), "no PEM block"},
		{"private given public", false, pubPEM, `PEM block type "PUBLIC KEY"`},
		{"private encrypted", false, enc("ENCRYPTED PRIVATE KEY", []byte{1}), "encrypted"},
		{"private with headers", false, withHeader, "headers"},
		{"private ecdsa", false, enc(PrivatePEMType, ecPriv), "not an Ed25519 key"},
		{"private truncated", false, enc(PrivatePEMType, privDER.Bytes[:len(privDER.Bytes)-1]), "malformed"},
		{"private extended", false, enc(PrivatePEMType, append(bytes.Clone(privDER.Bytes), 0)), "malformed"},
		{"private two blocks", false, append(bytes.Clone(privPEM), privPEM...), "several PEM blocks"},
		{"private trailing data", false, append(bytes.Clone(privPEM), "junk"...), "trailing data"},
		{"public empty", true, nil, "no PEM block"},
		{"public given private", true, privPEM, `PEM block type "PRIVATE KEY"`},
		{"public ecdsa", true, enc(PublicPEMType, ecPub), "not an Ed25519 key"},
		{"public truncated", true, enc(PublicPEMType, pubDER.Bytes[:40]), "malformed"},
		{"public bad bitstring padding", true, enc(PublicPEMType, func() []byte { b := bytes.Clone(pubDER.Bytes); b[11] = 1; return b }()), "malformed"},
		{"public two blocks", true, append(bytes.Clone(pubPEM), pubPEM...), "several PEM blocks"},
		{"public trailing data", true, append(bytes.Clone(pubPEM), "x"...), "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.public {
				_, err = ParsePublicPEM(tt.data)
			} else {
				_, err = ParsePrivatePEM(tt.data)
			}
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("err = %v, want ErrInvalidKey", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestTrailingWhitespaceAllowed(t *testing.T) {
	priv, _ := Generate(rand.Reader)
	privPEM, _ := MarshalPrivatePEM(priv)
	if _, err := ParsePrivatePEM(append(privPEM, "\n\n  \n"...)); err != nil {
		t.Fatal(err)
	}
}

func TestMarshalRejectsBadLengths(t *testing.T) {
	if _, err := MarshalPrivatePEM(make([]byte, 10)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("private: err = %v", err)
	}
	if _, err := MarshalPublicPEM(make([]byte, 10)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("public: err = %v", err)
	}
}

// RFC 8037 Appendix A.3 gives the thumbprint of the Appendix A.2 key.
func TestKeyIDRFC8037Vector(t *testing.T) {
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := KeyID(x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("KeyID = %s, want %s", got, want)
	}
}

func TestGenerateRejectsNilReader(t *testing.T) {
	if _, err := Generate(nil); err == nil {
		t.Fatal("Generate(nil) succeeded")
	}
}
