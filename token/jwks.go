package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"sort"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/internal/jsonx"
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
			return nil, errs.Errorf("key set: key %d: tenant %q is not a tenant name", i, b.Tenant)
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
			return nil, errs.Errorf("key set: key %d has %d bytes, want %d", i, len(p), ed25519.PublicKeySize)
		}
		kid := keys.KeyID(p)
		if _, dup := ks.keys[kid]; dup {
			return nil, errs.Errorf("key set: key %d (kid %s) given twice", i, kid)
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

// jwk is an OKP public key (RFC 8037 §2). HasD records a private part,
// read only to refuse it with a clear message.
type jwk struct {
	Kty    string
	Crv    string
	X      string
	Kid    string
	Tenant string // Aegis: the key signs this tenant's tokens only
	Alg    string
	Use    string
	KeyOps []string
	HasD   bool
}

// decodeJWK reads one key object, refusing members RFC 8037 does not
// give an OKP public key (and tenant, ours).
func decodeJWK(v *jsonx.Value, path string) (jwk, error) {
	var k jwk
	o, err := v.AsObject(path)
	if err != nil {
		return k, err
	}
	o.String("kty", &k.Kty)
	o.String("crv", &k.Crv)
	o.String("x", &k.X)
	o.String("kid", &k.Kid)
	o.String("tenant", &k.Tenant)
	o.String("alg", &k.Alg)
	o.String("use", &k.Use)
	o.Strings("key_ops", &k.KeyOps)
	k.HasD = o.Get("d") != nil
	return k, o.End()
}

// appendJWKS writes the document encoding/json's MarshalIndent(v, "",
// "  ") wrote for {"keys":[jwk...]} with omitempty on kid, tenant, alg
// and use; go-jose and other JOSE readers take it as before.
func appendJWKS(b []byte, ks []jwk) []byte {
	b = append(b, "{\n  \"keys\": ["...)
	for i, k := range ks {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    {"...)
		first := true
		for _, f := range [...]struct {
			name, val string
			omit      bool
		}{
			{"kty", k.Kty, false}, {"crv", k.Crv, false}, {"x", k.X, false},
			{"kid", k.Kid, true}, {"tenant", k.Tenant, true}, {"alg", k.Alg, true}, {"use", k.Use, true},
		} {
			if f.omit && f.val == "" {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, "\n      "...)
			b = jsonx.AppendString(b, f.name)
			b = append(b, ": "...)
			b = jsonx.AppendString(b, f.val)
		}
		b = append(b, "\n    }"...)
	}
	if len(ks) > 0 {
		b = append(b, "\n  "...)
	}
	return append(b, "]\n}\n"...)
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
			return nil, errs.Errorf("marshal JWKS: key %d: tenant %q is not a tenant name", i, b.Tenant)
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
		return nil, errs.Errorf("marshal JWKS: %w", err)
	}
	ks := make([]jwk, 0, len(bound))
	for _, b := range bound {
		ks = append(ks, jwk{
			Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(b.Pub),
			Kid: keys.KeyID(b.Pub), Tenant: b.Tenant, Alg: Algorithm, Use: "sig",
		})
	}
	return appendJWKS(nil, ks), nil
}

// ParseJWKS reads a JWKS document strictly: every key must be an Ed25519
// OKP public key (x of 32 bytes, no private part), alg EdDSA and use sig
// when present, key_ops containing "verify" when present, no unknown
// members, no duplicate kids. A key without kid is filed under its
// thumbprint.
func ParseJWKS(data []byte) (*KeySet, error) {
	if len(data) > MaxJWKSBytes {
		return nil, errs.Errorf("%w: %d bytes, limit %d", ErrJWKS, len(data), MaxJWKSBytes)
	}
	v, err := parseObject(bytes.TrimSpace(data))
	if err != nil {
		return nil, errs.Errorf("%w: %v", ErrJWKS, err)
	}
	o, _ := v.AsObject("")
	var elems []jsonx.Value
	if kv := o.Get("keys"); kv != nil {
		es, err := kv.AsArray("keys")
		o.Fail(err)
		elems = es
	}
	if err := o.End(); err != nil {
		return nil, errs.Errorf("%w: %v", ErrJWKS, err)
	}
	if len(elems) == 0 {
		return nil, errs.Errorf("%w: no keys", ErrJWKS)
	}
	if len(elems) > MaxJWKSKeys {
		return nil, errs.Errorf("%w: %d keys, limit %d", ErrJWKS, len(elems), MaxJWKSKeys)
	}
	ks := &KeySet{keys: make(map[string]ed25519.PublicKey, len(elems))}
	for i := range elems {
		k, err := decodeJWK(&elems[i], jsonx.Index("keys", i))
		if err != nil {
			return nil, errs.Errorf("%w: %v", ErrJWKS, err)
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, errs.Errorf("%w: keys[%d]: %v", ErrJWKS, i, err)
		}
		kid := k.Kid
		if kid == "" {
			kid = keys.KeyID(pub)
		}
		if _, dup := ks.keys[kid]; dup {
			return nil, errs.Errorf("%w: keys[%d]: kid %q given twice", ErrJWKS, i, kid)
		}
		ks.keys[kid] = pub
		if k.Tenant != "" {
			if !validKeyTenant(k.Tenant) {
				return nil, errs.Errorf("%w: keys[%d]: tenant %q is not a tenant name", ErrJWKS, i, k.Tenant)
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
	case k.HasD:
		return nil, errors.New("contains a private key (d)")
	case k.Kty != "OKP":
		return nil, errs.Errorf("kty %q, want OKP", k.Kty)
	case k.Crv != "Ed25519":
		return nil, errs.Errorf("crv %q, want Ed25519", k.Crv)
	case k.Alg != "" && k.Alg != Algorithm:
		return nil, errs.Errorf("alg %q, want %s", k.Alg, Algorithm)
	case k.Use != "" && k.Use != "sig":
		return nil, errs.Errorf("use %q, want sig", k.Use)
	}
	if k.KeyOps != nil {
		ok := false
		for _, op := range k.KeyOps {
			ok = ok || op == "verify"
		}
		if !ok {
			return nil, errs.Errorf("key_ops %q does not allow verify", k.KeyOps)
		}
	}
	x, err := decodeSegment("x", k.X)
	if err != nil {
		return nil, err
	}
	if len(x) != ed25519.PublicKeySize {
		return nil, errs.Errorf("x has %d bytes, want %d", len(x), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(x), nil
}
