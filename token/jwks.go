package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/aegis-mesh/aegis/keys"
)

// JWKS limits: a key set is configuration, never large.
const (
	MaxJWKSBytes = 64 << 10
	MaxJWKSKeys  = 100
)

// ErrJWKS is wrapped by every ParseJWKS error.
var ErrJWKS = errors.New("invalid JWKS")

// KeySet maps key ids to Ed25519 public keys, each optionally bound to a
// tenant. It is immutable once built and safe for concurrent use.
type KeySet struct {
	keys    map[string]ed25519.PublicKey
	tenants map[string]string // kid → tenant, for bound keys only
}

// BoundKey is a public key that signs tokens of one tenant only.
type BoundKey struct {
	Tenant string
	Pub    ed25519.PublicKey
}

// NewBoundKeySet returns a key set whose keys verify only tokens of their
// tenant (Verify refuses a token whose tenant claim differs). On a gateway
// shared by several tenants this keeps one tenant's leaked key from
// forging another tenant's agents.
func NewBoundKeySet(bound ...BoundKey) (*KeySet, error) {
	pubs := make([]ed25519.PublicKey, len(bound))
	for i, b := range bound {
		if !validKeyTenant(b.Tenant) {
			return nil, fmt.Errorf("key set: key %d: tenant %q is not a tenant name", i, b.Tenant)
		}
		pubs[i] = b.Pub
	}
	ks, err := NewKeySet(pubs...)
	if err != nil {
		return nil, err
	}
	ks.tenants = make(map[string]string, len(bound))
	for _, b := range bound {
		ks.tenants[keys.KeyID(b.Pub)] = b.Tenant
	}
	return ks, nil
}

// Tenant returns the tenant the key kid is bound to, or "" for a key that
// is not bound.
func (ks *KeySet) Tenant(kid string) string {
	if ks == nil {
		return ""
	}
	return ks.tenants[kid]
}

// validKeyTenant: tenant names as the control plane allows them.
func validKeyTenant(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NewKeySet returns a key set holding pubs under their RFC 7638
// thumbprints (keys.KeyID), the kid Mint writes.
func NewKeySet(pubs ...ed25519.PublicKey) (*KeySet, error) {
	ks := &KeySet{keys: make(map[string]ed25519.PublicKey, len(pubs))}
	for i, p := range pubs {
		if len(p) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key set: key %d has %d bytes, want %d", i, len(p), ed25519.PublicKeySize)
		}
		kid := keys.KeyID(p)
		if _, dup := ks.keys[kid]; dup {
			return nil, fmt.Errorf("key set: key %d (kid %s) given twice", i, kid)
		}
		ks.keys[kid] = bytes.Clone(p)
	}
	return ks, nil
}

// Lookup returns the key for kid. A nil set holds no keys.
func (ks *KeySet) Lookup(kid string) (ed25519.PublicKey, bool) {
	if ks == nil {
		return nil, false
	}
	k, ok := ks.keys[kid]
	return k, ok
}

// KeyIDs returns the key ids in sorted order.
func (ks *KeySet) KeyIDs() []string {
	if ks == nil {
		return nil
	}
	ids := make([]string, 0, len(ks.keys))
	for id := range ks.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// jwk is an OKP public key (RFC 8037 §2). D is declared only to reject
// private keys with a clear message.
type jwk struct {
	Kty    string   `json:"kty"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Kid    string   `json:"kid,omitempty"`
	Tenant string   `json:"tenant,omitempty"` // Aegis: the key signs this tenant's tokens only
	Alg    string   `json:"alg,omitempty"`
	Use    string   `json:"use,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	D      *string  `json:"d,omitempty"`
}

type jwks struct {
	Keys []json.RawMessage `json:"keys"`
}

// MarshalJWKS renders pubs as a JWKS document: kty OKP, crv Ed25519,
// kid = keys.KeyID, alg EdDSA, use sig, in the order given, indented and
// ending in a newline.
func MarshalJWKS(pubs ...ed25519.PublicKey) ([]byte, error) {
	bound := make([]BoundKey, len(pubs))
	for i, p := range pubs {
		bound[i].Pub = p
	}
	return marshalJWKS(bound)
}

// MarshalBoundJWKS is MarshalJWKS for keys bound to tenants: each key also
// carries a "tenant" member. JOSE libraries ignore members they do not
// know (RFC 7517 §4); ParseJWKS reads it back into the binding.
func MarshalBoundJWKS(bound ...BoundKey) ([]byte, error) {
	for i, b := range bound {
		if !validKeyTenant(b.Tenant) {
			return nil, fmt.Errorf("marshal JWKS: key %d: tenant %q is not a tenant name", i, b.Tenant)
		}
	}
	return marshalJWKS(bound)
}

func marshalJWKS(bound []BoundKey) ([]byte, error) {
	pubs := make([]ed25519.PublicKey, len(bound))
	for i, b := range bound {
		pubs[i] = b.Pub
	}
	if _, err := NewKeySet(pubs...); err != nil {
		return nil, fmt.Errorf("marshal JWKS: %w", err)
	}
	out := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, b := range bound {
		out.Keys = append(out.Keys, jwk{
			Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(b.Pub),
			Kid: keys.KeyID(b.Pub), Tenant: b.Tenant, Alg: Algorithm, Use: "sig",
		})
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal JWKS: %w", err)
	}
	return append(data, '\n'), nil
}

// ParseJWKS reads a JWKS document strictly: every key must be an Ed25519
// OKP public key (x of 32 bytes, no private part), alg EdDSA and use sig
// when present, key_ops containing "verify" when present, no unknown
// members, no duplicate kids. A key without kid is filed under its
// thumbprint.
func ParseJWKS(data []byte) (*KeySet, error) {
	if len(data) > MaxJWKSBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrJWKS, len(data), MaxJWKSBytes)
	}
	var set jwks
	if err := strictUnmarshal(bytes.TrimSpace(data), &set, true); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrJWKS, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrJWKS)
	}
	if len(set.Keys) > MaxJWKSKeys {
		return nil, fmt.Errorf("%w: %d keys, limit %d", ErrJWKS, len(set.Keys), MaxJWKSKeys)
	}
	ks := &KeySet{keys: make(map[string]ed25519.PublicKey, len(set.Keys))}
	for i, raw := range set.Keys {
		var k jwk
		if err := strictUnmarshal(raw, &k, true); err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %v", ErrJWKS, i, err)
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %v", ErrJWKS, i, err)
		}
		kid := k.Kid
		if kid == "" {
			kid = keys.KeyID(pub)
		}
		if _, dup := ks.keys[kid]; dup {
			return nil, fmt.Errorf("%w: keys[%d]: kid %q given twice", ErrJWKS, i, kid)
		}
		ks.keys[kid] = pub
		if k.Tenant != "" {
			if !validKeyTenant(k.Tenant) {
				return nil, fmt.Errorf("%w: keys[%d]: tenant %q is not a tenant name", ErrJWKS, i, k.Tenant)
			}
			if ks.tenants == nil {
				ks.tenants = map[string]string{}
			}
			ks.tenants[kid] = k.Tenant
		}
	}
	return ks, nil
}

func (k *jwk) publicKey() (ed25519.PublicKey, error) {
	switch {
	case k.D != nil:
		return nil, errors.New("contains a private key (d)")
	case k.Kty != "OKP":
		return nil, fmt.Errorf("kty %q, want OKP", k.Kty)
	case k.Crv != "Ed25519":
		return nil, fmt.Errorf("crv %q, want Ed25519", k.Crv)
	case k.Alg != "" && k.Alg != Algorithm:
		return nil, fmt.Errorf("alg %q, want %s", k.Alg, Algorithm)
	case k.Use != "" && k.Use != "sig":
		return nil, fmt.Errorf("use %q, want sig", k.Use)
	}
	if k.KeyOps != nil {
		ok := false
		for _, op := range k.KeyOps {
			ok = ok || op == "verify"
		}
		if !ok {
			return nil, fmt.Errorf("key_ops %q does not allow verify", k.KeyOps)
		}
	}
	x, err := decodeSegment("x", k.X)
	if err != nil {
		return nil, err
	}
	if len(x) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("x has %d bytes, want %d", len(x), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(x), nil
}
