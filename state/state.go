// Package state builds and verifies the signed live-state document of
// API.md: a tenant's fast-changing facts (kill switch, revoked agents and
// tokens, remaining budgets) that the control plane publishes between
// policy bundles and every enforcing node applies.
//
// # Signed form
//
// The control plane signs the document with its state key and ships it as
//
//	{"payload":"<base64 of the document bytes>","signature":"<base64 Ed25519 signature over those bytes>"}
//
// (standard base64 with padding). The document bytes are the RFC 8785 (JCS)
// form of the document with every member present, exactly as Sign writes
// them; Open refuses any other spelling, so a signed document has one
// meaning only. Verification is pure Ed25519 over the decoded payload
// bytes, doable with any Ed25519 tool.
//
// The package is linked into the wasip1 filter: standard library, jcs and
// internal/jsonx only (no encoding/json, issue 3).
package state

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/internal/jsonx"
	"github.com/aegis-mesh/aegis/jcs"
)

// Limits on what Open accepts.
const (
	MaxEnvelopeBytes = 4 << 20
	MaxListEntries   = 100_000
)

// Errors returned by Open and Check; callers branch with errors.Is.
var (
	ErrMalformed = errors.New("live state malformed")
	ErrSignature = errors.New("live state signature does not verify")
	ErrTenant    = errors.New("live state is for another tenant")
	ErrStale     = errors.New("live state is older than the one in force")
)

// Document is one tenant's live state. Times are UTC, whole seconds.
type Document struct {
	Tenant        string    `json:"tenant"`
	Seq           int64     `json:"seq"`
	IssuedAt      time.Time `json:"issued_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	KillSwitch    bool      `json:"kill_switch"`
	RevokedAgents []string  `json:"revoked_agents"`
	RevokedJTIs   []string  `json:"revoked_jtis"`
	// Budgets maps agent → fleet-wide remaining spend today, in USD.
	Budgets map[string]float64 `json:"budgets"`
}

type envelope struct {
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// Encode returns the document bytes that Sign signs: the JCS form, lists
// sorted and deduplicated, absent lists and maps written empty.
func Encode(d Document) ([]byte, error) {
	if err := d.validate(); err != nil {
		return nil, err
	}
	d.IssuedAt, d.ExpiresAt = d.IssuedAt.UTC(), d.ExpiresAt.UTC()
	d.RevokedAgents = sortedSet(d.RevokedAgents)
	d.RevokedJTIs = sortedSet(d.RevokedJTIs)
	if d.Budgets == nil {
		d.Budgets = map[string]float64{}
	}
	raw, err := d.appendJSON(nil)
	if err != nil {
		return nil, errs.Errorf("encoding live state: %w", err)
	}
	return jcs.Canonicalize(raw)
}

// appendJSON writes d as encoding/json wrote the tagged struct; JCS then
// fixes the spelling, so only the values matter.
func (d *Document) appendJSON(b []byte) ([]byte, error) {
	w := jsonx.Writer{B: b}
	w.BeginObject()
	w.Key("tenant")
	w.String(d.Tenant)
	w.Key("seq")
	w.Int(d.Seq)
	for _, t := range [...]struct {
		k string
		v time.Time
	}{{"issued_at", d.IssuedAt}, {"expires_at", d.ExpiresAt}} {
		tb, err := t.v.MarshalJSON()
		if err != nil {
			return nil, err
		}
		w.Key(t.k)
		w.Raw(tb)
	}
	w.Key("kill_switch")
	w.Bool(d.KillSwitch)
	for _, l := range [...]struct {
		k string
		v []string
	}{{"revoked_agents", d.RevokedAgents}, {"revoked_jtis", d.RevokedJTIs}} {
		w.Key(l.k)
		if l.v == nil {
			w.Null()
		} else {
			w.Strings(l.v)
		}
	}
	w.Key("budgets")
	if d.Budgets == nil {
		w.Null()
		w.EndObject()
		return w.B, nil
	}
	w.BeginObject()
	agents := make([]string, 0, len(d.Budgets))
	for a := range d.Budgets {
		agents = append(agents, a)
	}
	slices.Sort(agents)
	for _, a := range agents {
		w.Key(a)
		w.Float(d.Budgets[a])
	}
	w.EndObject()
	w.EndObject()
	return w.B, nil
}

// decodeDocument reads the members Encode writes and refuses any other.
// A member left out reads as its zero value; the canonical-form check in
// Open refuses the document then.
func decodeDocument(v *jsonx.Value) (Document, error) {
	var d Document
	o, err := v.AsObject("")
	if err != nil {
		return d, err
	}
	o.String("tenant", &d.Tenant)
	o.Int64("seq", &d.Seq)
	for _, t := range [...]struct {
		k   string
		dst *time.Time
	}{{"issued_at", &d.IssuedAt}, {"expires_at", &d.ExpiresAt}} {
		if tv := o.Get(t.k); tv != nil {
			if tv.Kind != jsonx.String {
				o.Fail(tv.Fail(o.Path(t.k), "want an RFC 3339 time string, got "+tv.Kind.String()))
			} else if err := t.dst.UnmarshalJSON(tv.Raw); err != nil {
				o.Fail(tv.Fail(o.Path(t.k), err.Error()))
			}
		}
	}
	if v := o.Get("kill_switch"); v != nil {
		b, err := v.AsBool(o.Path("kill_switch"))
		o.Fail(err)
		d.KillSwitch = b
	}
	o.Strings("revoked_agents", &d.RevokedAgents)
	o.Strings("revoked_jtis", &d.RevokedJTIs)
	if b := o.Object("budgets"); b != nil {
		rest := b.Rest()
		d.Budgets = make(map[string]float64, len(rest))
		for _, m := range rest {
			usd, err := m.Value.AsFloat64(b.Path(m.Key))
			o.Fail(err)
			d.Budgets[m.Key] = usd
		}
	}
	return d, o.End()
}

func decodeEnvelope(v *jsonx.Value) (envelope, error) {
	var env envelope
	o, err := v.AsObject("")
	if err != nil {
		return env, err
	}
	o.String("payload", &env.Payload)
	o.String("signature", &env.Signature)
	return env, o.End()
}

// Sign returns the signed envelope of d.
func Sign(priv ed25519.PrivateKey, d Document) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errs.Errorf("signing live state: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	payload, err := Encode(d)
	if err != nil {
		return nil, err
	}
	w := jsonx.Writer{}
	w.BeginObject()
	w.Key("payload")
	w.String(base64.StdEncoding.EncodeToString(payload))
	w.Key("signature")
	w.String(base64.StdEncoding.EncodeToString(ed25519.Sign(priv, payload)))
	w.EndObject()
	return w.B, nil
}

// Open verifies a signed envelope with pub and returns its document. The
// signature is checked before the payload is parsed.
func Open(data []byte, pub ed25519.PublicKey) (*Document, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("live state: no valid state public key")
	}
	if len(data) > MaxEnvelopeBytes {
		return nil, errs.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(data), MaxEnvelopeBytes)
	}
	ev, err := jsonx.Parse(data)
	if err != nil {
		return nil, errs.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	env, err := decodeEnvelope(ev)
	if err != nil {
		return nil, errs.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	payload, err := base64.StdEncoding.Strict().DecodeString(env.Payload)
	if err != nil || len(payload) == 0 {
		return nil, errs.Errorf("%w: payload is not base64", ErrMalformed)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(env.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, errs.Errorf("%w: signature is not a base64 Ed25519 signature", ErrMalformed)
	}
	if !ed25519.Verify(pub, payload, sig) {
		return nil, ErrSignature
	}
	dv, err := jsonx.Parse(payload)
	if err != nil {
		return nil, errs.Errorf("%w: document: %v", ErrMalformed, err)
	}
	d, err := decodeDocument(dv)
	if err != nil {
		return nil, errs.Errorf("%w: document: %v", ErrMalformed, err)
	}
	// One spelling per document: what was signed must be exactly what
	// Encode writes for what was read.
	canon, err := Encode(d)
	if err != nil {
		return nil, errs.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(canon, payload) {
		return nil, errs.Errorf("%w: document is not in canonical form", ErrMalformed)
	}
	return &d, nil
}

// Check says whether next may replace current (nil: none yet) for tenant:
// same tenant, and seq not lower. An equal seq is a re-delivery.
func Check(current, next *Document, tenant string) error {
	if next.Tenant != tenant {
		return errs.Errorf("%w: %q, want %q", ErrTenant, next.Tenant, tenant)
	}
	if current != nil && next.Seq < current.Seq {
		return errs.Errorf("%w: seq %d, in force %d", ErrStale, next.Seq, current.Seq)
	}
	return nil
}

// Expired reports whether d is past its expiry at now. An expired
// document still revokes and kills (those never loosen); its budgets are
// no longer fleet truth.
func (d *Document) Expired(now time.Time) bool { return !now.Before(d.ExpiresAt) }

// Revoked returns the first party of chain that d revokes, if any.
func (d *Document) Revoked(chain []string) (string, bool) {
	for _, p := range chain {
		if _, ok := slices.BinarySearch(d.RevokedAgents, p); ok {
			return p, true
		}
	}
	return "", false
}

// RevokedJTI reports whether d revokes the token with this jti.
func (d *Document) RevokedJTI(jti string) bool {
	_, ok := slices.BinarySearch(d.RevokedJTIs, jti)
	return ok
}

// RemainingMicroUSD returns the fleet's remaining budget for agent in
// micro-dollars, and whether d has one.
func (d *Document) RemainingMicroUSD(agent string) (int64, bool) {
	usd, ok := d.Budgets[agent]
	if !ok {
		return 0, false
	}
	return int64(math.Round(usd * 1e6)), true
}

func (d *Document) validate() error {
	switch {
	case d.Tenant == "":
		return errs.Errorf("%w: no tenant", ErrMalformed)
	case d.Seq < 1:
		return errs.Errorf("%w: seq %d, want ≥ 1", ErrMalformed, d.Seq)
	case d.IssuedAt.IsZero() || d.ExpiresAt.IsZero():
		return errs.Errorf("%w: issued_at and expires_at are required", ErrMalformed)
	case !d.ExpiresAt.After(d.IssuedAt):
		return errs.Errorf("%w: expires_at is not after issued_at", ErrMalformed)
	case d.IssuedAt.Nanosecond() != 0 || d.ExpiresAt.Nanosecond() != 0:
		return errs.Errorf("%w: times must be whole seconds", ErrMalformed)
	case len(d.RevokedAgents) > MaxListEntries || len(d.RevokedJTIs) > MaxListEntries || len(d.Budgets) > MaxListEntries:
		return errs.Errorf("%w: more than %d entries in a list", ErrMalformed, MaxListEntries)
	}
	for _, s := range d.RevokedAgents {
		if s == "" {
			return errs.Errorf("%w: empty revoked agent", ErrMalformed)
		}
	}
	for _, s := range d.RevokedJTIs {
		if s == "" {
			return errs.Errorf("%w: empty revoked jti", ErrMalformed)
		}
	}
	for a, usd := range d.Budgets {
		// Upper bound keeps micro-dollars inside int64.
		if a == "" || math.IsNaN(usd) || usd < 0 || usd > 1e12 {
			return errs.Errorf("%w: budget %q: %v is not a remaining amount in [0, 1e12] USD", ErrMalformed, a, usd)
		}
	}
	return nil
}

func sortedSet(s []string) []string {
	out := append([]string{}, s...)
	slices.Sort(out)
	return slices.Compact(out)
}
