package token

import (
	"errors"
	"fmt"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// fieldNames are the members of every object this package decodes
// (header, claims, act, JWKS, JWK).
var fieldNames = []string{
	"alg", "kid", "typ", "crit",
	"iss", "sub", "aud", "tenant", "org", "scope", "region",
	"exp", "nbf", "iat", "jti", "act",
	"tool", "params_digest", "approval_id", // override tokens
	"keys", "kty", "crv", "x", "use", "key_ops", "d",
}

// foldedNames maps each of fieldNames, folded, to its spelling.
var foldedNames = func() map[string]string {
	m := make(map[string]string, len(fieldNames))
	for _, n := range fieldNames {
		m[jsonx.FoldKey(n)] = n
	}
	return m
}()

// maxDepth bounds nesting below the top value; a token needs at most
// MaxChain+2 levels.
const maxDepth = 32

var errNotObject = errors.New("not a JSON object")

// parseJSON parses data as one strict JSON value (jsonx: no duplicate
// keys, valid UTF-8, nothing after it) and checks every object's keys:
// two keys that differ only in case, or a key spelled in another case
// than one of fieldNames, are refused at any depth. Other JWT libraries
// match claim names exactly, a case-insensitive one (encoding/json,
// which Unicode-folds, so "ſub" is "sub") does not; refusing what the two
// would read differently keeps every reader on one meaning.
func parseJSON(data []byte) (*jsonx.Value, error) {
	v, err := jsonx.ParseWith(data, jsonx.Options{MaxDepth: maxDepth + 1})
	if err != nil {
		return nil, err
	}
	if err := checkKeys(v, ""); err != nil {
		return nil, err
	}
	return v, nil
}

// parseObject is parseJSON for a document that must be an object.
func parseObject(data []byte) (*jsonx.Value, error) {
	if len(data) == 0 || data[0] != '{' {
		return nil, errNotObject
	}
	return parseJSON(data)
}

func checkKeys(v *jsonx.Value, path string) error {
	switch v.Kind {
	case jsonx.Array:
		for i := range v.Elems {
			if err := checkKeys(&v.Elems[i], jsonx.Index(path, i)); err != nil {
				return err
			}
		}
	case jsonx.Object:
		// Objects here are small; a linear scan beats a map until they
		// are not (a hostile header is parsed before the signature).
		var folded []string
		var seen map[string]bool
		for i := range v.Members {
			m := &v.Members[i]
			f := jsonx.FoldKey(m.Key)
			dup := false
			if seen != nil {
				dup = seen[f]
				seen[f] = true
			} else {
				for _, g := range folded {
					dup = dup || g == f
				}
				folded = append(folded, f)
				if len(folded) == 16 {
					seen = make(map[string]bool, 2*len(folded))
					for _, g := range folded {
						seen[g] = true
					}
				}
			}
			p := jsonx.Key(path, m.Key)
			if dup {
				return m.Value.Fail(p, fmt.Sprintf("duplicate key %q (keys are compared case-insensitively)", m.Key))
			}
			if name, ok := foldedNames[f]; ok && name != m.Key {
				return m.Value.Fail(p, fmt.Sprintf("key %q must be spelled %q", m.Key, name))
			}
			if err := checkKeys(&m.Value, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeHeader reads a JOSE header: alg, kid and typ, nothing else. crit
// is recognised only to be refused by name (RFC 7515 §4.1.11 obliges a
// verifier that does not understand it to refuse the token).
func decodeHeader(data []byte) (header, error) {
	var h header
	v, err := parseObject(data)
	if err != nil {
		return h, err
	}
	o, _ := v.AsObject("")
	o.String("alg", &h.Alg)
	o.String("kid", &h.Kid)
	o.String("typ", &h.Typ)
	if c := o.Get("crit"); c != nil {
		h.Crit = c.Raw
	}
	return h, o.End()
}

// decodeClaims reads an agent token's claims. Claims this package does
// not know are ignored (RFC 7519 §4: a JWT may carry any); null is refused
// where a value is expected, since no issuer of ours writes it.
func decodeClaims(data []byte) (Claims, error) {
	var c Claims
	v, err := parseObject(data)
	if err != nil {
		return c, err
	}
	o, _ := v.AsObject("")
	o.String("iss", &c.Issuer)
	o.String("sub", &c.Subject)
	if a := o.Get("aud"); a != nil {
		aud, err := decodeAudience(a, "aud")
		o.Fail(err)
		c.Audience = aud
	}
	o.String("tenant", &c.Tenant)
	o.String("org", &c.Org)
	o.String("scope", &c.Scope)
	o.String("region", &c.Region)
	o.Int64("exp", &c.ExpiresAt)
	o.Int64("nbf", &c.NotBefore)
	o.Int64("iat", &c.IssuedAt)
	o.String("jti", &c.ID)
	if a := o.Get("act"); a != nil {
		act, err := decodeActor(a, "act")
		o.Fail(err)
		c.Act = act
	}
	o.Rest()
	return c, o.End()
}

func decodeActor(v *jsonx.Value, path string) (*Actor, error) {
	o, err := v.AsObject(path)
	if err != nil {
		return nil, err
	}
	a := new(Actor)
	o.String("sub", &a.Sub)
	if inner := o.Get("act"); inner != nil {
		act, err := decodeActor(inner, o.Path("act"))
		o.Fail(err)
		a.Act = act
	}
	o.Rest()
	return a, o.End()
}

// decodeAudience accepts a string or an array of strings (RFC 7519
// §4.1.3).
func decodeAudience(v *jsonx.Value, path string) (Audience, error) {
	switch v.Kind {
	case jsonx.String:
		return Audience{v.Str}, nil
	case jsonx.Array:
		many, err := v.AsStrings(path)
		return Audience(many), err
	}
	return nil, v.Fail(path, "aud must be a string or an array of strings")
}

// UnmarshalJSON accepts a string or an array of strings; null leaves a
// unchanged, as encoding/json's convention for Unmarshalers asks.
func (a *Audience) UnmarshalJSON(data []byte) error {
	v, err := jsonx.Parse(data)
	if err != nil {
		return err
	}
	if v.Kind == jsonx.Null {
		return nil
	}
	aud, err := decodeAudience(v, "aud")
	if err != nil {
		return errors.New("aud must be a string or an array of strings")
	}
	*a = aud
	return nil
}

func decodeOverrideClaims(data []byte) (OverrideClaims, error) {
	var c OverrideClaims
	v, err := parseObject(data)
	if err != nil {
		return c, err
	}
	o, _ := v.AsObject("")
	o.String("iss", &c.Issuer)
	o.String("sub", &c.Subject)
	if a := o.Get("aud"); a != nil {
		aud, err := decodeAudience(a, "aud")
		o.Fail(err)
		c.Audience = aud
	}
	o.String("tenant", &c.Tenant)
	o.String("tool", &c.Tool)
	o.String("params_digest", &c.ParamsDigest)
	o.String("approval_id", &c.ApprovalID)
	o.String("jti", &c.ID)
	o.Int64("iat", &c.IssuedAt)
	o.Int64("exp", &c.ExpiresAt)
	o.Int64("nbf", &c.NotBefore)
	o.Rest()
	return c, o.End()
}

// The encoders below write what encoding/json wrote for the tagged
// structs, byte for byte (HTML-escaped strings, omitempty, field order),
// so tokens minted before and after read the same; TestEncodeLikeJSON
// holds them to it.

func appendHeader(b []byte, h header) []byte {
	w := jsonx.Writer{B: b}
	w.BeginObject()
	w.Key("alg")
	w.String(h.Alg)
	w.Key("kid")
	w.String(h.Kid)
	w.Key("typ")
	w.String(h.Typ)
	if len(h.Crit) > 0 {
		w.Key("crit")
		w.Raw(h.Crit)
	}
	w.EndObject()
	return w.B
}

// AppendJSON appends c as JSON, byte for byte what encoding/json writes
// for Claims: the token's payload, and the claims the filter hands its
// policy.
func (c *Claims) AppendJSON(b []byte) []byte { return appendClaims(b, c) }

func appendClaims(b []byte, c *Claims) []byte {
	w := jsonx.Writer{B: b}
	w.BeginObject()
	if c.Issuer != "" {
		w.Key("iss")
		w.String(c.Issuer)
	}
	w.Key("sub")
	w.String(c.Subject)
	if len(c.Audience) > 0 {
		w.Key("aud")
		w.Strings(c.Audience)
	}
	w.Key("tenant")
	w.String(c.Tenant)
	for _, f := range [...]struct{ k, v string }{{"org", c.Org}, {"scope", c.Scope}, {"region", c.Region}} {
		if f.v != "" {
			w.Key(f.k)
			w.String(f.v)
		}
	}
	w.Key("exp")
	w.Int(c.ExpiresAt)
	if c.NotBefore != 0 {
		w.Key("nbf")
		w.Int(c.NotBefore)
	}
	w.Key("iat")
	w.Int(c.IssuedAt)
	w.Key("jti")
	w.String(c.ID)
	if c.Act != nil {
		w.Key("act")
		appendActor(&w, c.Act)
	}
	w.EndObject()
	return w.B
}

func appendActor(w *jsonx.Writer, a *Actor) {
	w.BeginObject()
	w.Key("sub")
	w.String(a.Sub)
	if a.Act != nil {
		w.Key("act")
		appendActor(w, a.Act)
	}
	w.EndObject()
}

func appendOverrideClaims(b []byte, c *OverrideClaims) []byte {
	w := jsonx.Writer{B: b}
	w.BeginObject()
	w.Key("iss")
	w.String(c.Issuer)
	w.Key("sub")
	w.String(c.Subject)
	w.Key("aud")
	if c.Audience == nil {
		w.Null()
	} else {
		w.Strings(c.Audience)
	}
	for _, f := range [...]struct{ k, v string }{{"tenant", c.Tenant}, {"tool", c.Tool}, {"params_digest", c.ParamsDigest}, {"approval_id", c.ApprovalID}, {"jti", c.ID}} {
		w.Key(f.k)
		w.String(f.v)
	}
	w.Key("iat")
	w.Int(c.IssuedAt)
	w.Key("exp")
	w.Int(c.ExpiresAt)
	if c.NotBefore != 0 {
		w.Key("nbf")
		w.Int(c.NotBefore)
	}
	w.EndObject()
	return w.B
}
