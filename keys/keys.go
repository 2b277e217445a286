// Package keys generates, encodes and parses the Ed25519 keys that sign
// Aegis bundles and agent tokens.
//
// It is compiled into the wasip1 filter, so it reads the two fixed DER
// shapes an Ed25519 key can take (PKCS#8 private key, PKIX public key)
// itself instead of importing crypto/x509, which would drag a large part of
// the standard library (and net) into the filter.
package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// PEM block types, as written by openssl and crypto/x509.
const (
	PrivatePEMType = "PRIVATE KEY"
	PublicPEMType  = "PUBLIC KEY"
)

// ErrInvalidKey is wrapped by every parse error, so callers can tell a bad
// key file from an I/O problem.
var ErrInvalidKey = errors.New("invalid key")

// DER encodings of Ed25519 keys (RFC 8410). Both are fixed-length: an
// AlgorithmIdentifier with OID 1.3.101.112 and no parameters, then the raw
// key bytes.
var (
	// SEQUENCE(46) { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING(32) } }
	pkcs8Prefix = []byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}
	// RFC 8410 §7 OneAsymmetricKey v2 with the public key appended:
	// SEQUENCE(81) { INTEGER 1, alg, OCTET STRING { OCTET STRING(32) }, [1] BIT STRING(33) { 0, key } }
	pkcs8V2Prefix = []byte{0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}
	pkcs8V2PubTag = []byte{0x81, 0x21, 0x00}
	// SEQUENCE(42) { SEQUENCE { OID 1.3.101.112 }, BIT STRING(33) { 0 unused bits, key } }
	pkixPrefix = []byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}
	// The AlgorithmIdentifier alone, used only to tell "another algorithm"
	// from "garbage" in error messages.
	ed25519AlgID = []byte{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}
)

// Generate returns a new Ed25519 private key drawn from rand.
func Generate(rand io.Reader) (ed25519.PrivateKey, error) {
	if rand == nil {
		return nil, errors.New("generate key: nil random source")
	}
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, errs.Errorf("generate key: %w", err)
	}
	return priv, nil
}

// MarshalPrivatePEM encodes priv as a PKCS#8 "PRIVATE KEY" PEM block, the
// form `openssl genpkey -algorithm ed25519` writes.
func MarshalPrivatePEM(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errs.Errorf("marshal private key: %w: length %d, want %d", ErrInvalidKey, len(priv), ed25519.PrivateKeySize)
	}
	der := append(append([]byte(nil), pkcs8Prefix...), priv.Seed()...)
	return pem.EncodeToMemory(&pem.Block{Type: PrivatePEMType, Bytes: der}), nil
}

// MarshalPublicPEM encodes pub as a PKIX "PUBLIC KEY" PEM block
// (SubjectPublicKeyInfo), readable by openssl and cosign.
func MarshalPublicPEM(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errs.Errorf("marshal public key: %w: length %d, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	der := append(append([]byte(nil), pkixPrefix...), pub...)
	return pem.EncodeToMemory(&pem.Block{Type: PublicPEMType, Bytes: der}), nil
}

// ParsePrivatePEM parses exactly one PKCS#8 Ed25519 "PRIVATE KEY" block.
// Both the v1 form (seed only) and the RFC 8410 v2 form (seed plus public
// key, which must match the seed) are accepted.
func ParsePrivatePEM(data []byte) (ed25519.PrivateKey, error) {
	der, err := onePEM(data, PrivatePEMType)
	if err != nil {
		return nil, errs.Errorf("parse private key: %w", err)
	}
	priv, err := parsePKCS8(der)
	if err != nil {
		return nil, errs.Errorf("parse private key: %w", err)
	}
	return priv, nil
}

// ParsePublicPEM parses exactly one PKIX Ed25519 "PUBLIC KEY" block.
func ParsePublicPEM(data []byte) (ed25519.PublicKey, error) {
	der, err := onePEM(data, PublicPEMType)
	if err != nil {
		return nil, errs.Errorf("parse public key: %w", err)
	}
	pub, err := parsePKIX(der)
	if err != nil {
		return nil, errs.Errorf("parse public key: %w", err)
	}
	return pub, nil
}

// KeyID returns the RFC 7638 JWK thumbprint of pub: base64url (no padding)
// of the SHA-256 of {"crv":"Ed25519","kty":"OKP","x":"<key>"}, members in
// lexicographic order and no whitespace, as RFC 8037 §2 defines for OKP.
func KeyID(pub ed25519.PublicKey) string {
	x := base64.RawURLEncoding.EncodeToString(pub)
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// onePEM decodes the single PEM block in data and checks its type. Text
// before the block (openssl comments) is tolerated, as encoding/pem does;
// anything but whitespace after it is not, so that a second key cannot hide
// behind the first.
func onePEM(data []byte, wantType string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errs.Errorf("%w: no PEM block found", ErrInvalidKey)
	}
	if block.Type != wantType {
		if block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errs.Errorf("%w: encrypted private keys are not supported", ErrInvalidKey)
		}
		return nil, errs.Errorf("%w: PEM block type %q, want %q", ErrInvalidKey, block.Type, wantType)
	}
	if len(block.Headers) != 0 {
		return nil, errs.Errorf("%w: PEM headers are not supported (encrypted key?)", ErrInvalidKey)
	}
	if rest = bytes.TrimSpace(rest); len(rest) != 0 {
		if next, _ := pem.Decode(rest); next != nil {
			return nil, errs.Errorf("%w: several PEM blocks, want exactly one", ErrInvalidKey)
		}
		return nil, errs.Errorf("%w: trailing data after the PEM block", ErrInvalidKey)
	}
	return block.Bytes, nil
}

func parsePKCS8(der []byte) (ed25519.PrivateKey, error) {
	switch {
	case len(der) == len(pkcs8Prefix)+ed25519.SeedSize && bytes.HasPrefix(der, pkcs8Prefix):
		return ed25519.NewKeyFromSeed(der[len(pkcs8Prefix):]), nil
	case len(der) == len(pkcs8V2Prefix)+ed25519.SeedSize+len(pkcs8V2PubTag)+ed25519.PublicKeySize &&
		bytes.HasPrefix(der, pkcs8V2Prefix):
		seed := der[len(pkcs8V2Prefix) : len(pkcs8V2Prefix)+ed25519.SeedSize]
		tail := der[len(pkcs8V2Prefix)+ed25519.SeedSize:]
		if !bytes.HasPrefix(tail, pkcs8V2PubTag) {
			return nil, errs.Errorf("%w: malformed PKCS#8 v2 public key field", ErrInvalidKey)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		if !bytes.Equal(priv.Public().(ed25519.PublicKey), tail[len(pkcs8V2PubTag):]) {
			return nil, errs.Errorf("%w: PKCS#8 public key does not match the private key", ErrInvalidKey)
		}
		return priv, nil
	case !bytes.Contains(der, ed25519AlgID):
		return nil, errs.Errorf("%w: not an Ed25519 key", ErrInvalidKey)
	default:
		return nil, errs.Errorf("%w: malformed PKCS#8 Ed25519 key (%d bytes)", ErrInvalidKey, len(der))
	}
}

func parsePKIX(der []byte) (ed25519.PublicKey, error) {
	switch {
	case len(der) == len(pkixPrefix)+ed25519.PublicKeySize && bytes.HasPrefix(der, pkixPrefix):
		return ed25519.PublicKey(bytes.Clone(der[len(pkixPrefix):])), nil
	case !bytes.Contains(der, ed25519AlgID):
		return nil, errs.Errorf("%w: not an Ed25519 key", ErrInvalidKey)
	default:
		return nil, errs.Errorf("%w: malformed PKIX Ed25519 public key (%d bytes)", ErrInvalidKey, len(der))
	}
}
