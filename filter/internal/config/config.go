// Package config reads the filter's plugin configuration: the JSON document
// Envoy hands the plugin in OnPluginStart (the `configuration` field, which
// the control plane may ship through ECDS).
//
// Parsing is a pure function so that it can be tabled and fuzzed without a
// host. It is strict: unknown fields, duplicate keys, trailing data and
// out-of-range values are errors naming the field, because a setting the
// filter silently ignored is a setting the operator believes is enforced.
//
// The trust root (the public keys that verify bundles and live state) and
// the node's signing key are deliberately not configurable here: whoever
// controls this document must not also control what verifies it. See
// package trust.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// Limits on the configuration itself.
const (
	MaxConfigBytes = 32 << 20
	MaxTenants     = 256
)

// Defaults applied to zero fields.
const (
	DefaultMaxBodyBytes      = 1 << 20
	DefaultTokenHeader       = "authorization"
	DefaultAuditMaxQueue     = 4096
	DefaultAuditBatchSize    = 256
	DefaultAuditFlushMillis  = 1000
	DefaultCalloutTimeoutMs  = 2000
	DefaultTokenSkewSeconds  = 60
	DefaultTokenCacheEntries = 1024
	DefaultFetchRefreshMs    = 30_000
	MaxMaxBodyBytes          = 16 << 20
)

// Fail behaviours for the no-bundle state.
const (
	Open   = "open"
	Closed = "closed"
)

// Audit overflow behaviours.
const (
	OverflowDenyWrites = "deny_writes"
	OverflowDrop       = "drop"
)

// Config is the parsed plugin configuration with defaults filled in.
type Config struct {
	// Bundles maps tenant → signed runtime bundle bytes (decoded from
	// base64). On a shared gateway the token's tenant picks the bundle.
	Bundles map[string][]byte
	// JWKS is the raw JWKS document the agent tokens verify against;
	// package token parses it.
	JWKS   []byte
	Token  Token
	Node   Node
	Limits Limits
	// ControlPlane names the Envoy cluster the filter calls out to.
	ControlPlane ControlPlane
	Audit        Audit
	NoBundle     NoBundle
	// OnAuditOverflow is OverflowDenyWrites or OverflowDrop.
	OnAuditOverflow string
	State           State
	Fetch           Fetch
}

// State is where each tenant's signed live state comes from.
type State struct {
	// Inline maps tenant → signed state envelope (package state).
	Inline map[string][]byte
	// RefreshMs > 0 fetches every tenant's state from the control plane
	// that often.
	RefreshMs int
}

// Fetch pulls runtime bundles and the JWKS from the control plane.
type Fetch struct {
	Tenants   []string // bundles fetched for these tenants (and their live state)
	Bundles   bool
	JWKS      bool
	RefreshMs int
}

// Tenants returns every tenant the configuration names, sorted: those
// with an inline bundle, inline state or a fetched bundle.
func (c *Config) Tenants() []string {
	set := map[string]bool{}
	for t := range c.Bundles {
		set[t] = true
	}
	for t := range c.State.Inline {
		set[t] = true
	}
	for _, t := range c.Fetch.Tenants {
		set[t] = true
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Token says where the agent token is and what it must say.
type Token struct {
	Header       string // lower-case header name; "authorization" means a Bearer token
	Issuer       string // required iss; "" skips the check
	Audience     string // a value aud must contain; "" skips the check
	SkewSeconds  int
	CacheEntries int
}

// Node describes the enforcing node.
type Node struct {
	ID     string
	Region string
}

// Limits bound per-request work.
type Limits struct {
	MaxBodyBytes   int
	ApprovalHoldMs int
}

// ControlPlane is where approvals, overrides and audit batches go.
type ControlPlane struct {
	Cluster   string
	Authority string
	TimeoutMs int
}

// Audit controls batching of audit events.
type Audit struct {
	MaxQueue        int
	BatchSize       int
	FlushIntervalMs int
}

// NoBundle says what happens to requests of a tenant without a good bundle.
type NoBundle struct {
	Read  string // GET, HEAD, OPTIONS: Open or Closed
	Write string // every other method: Closed only
}

// maxDepth bounds nesting in the configuration: the deepest legitimate
// member is a key inside the JWKS or a state envelope, a handful of levels
// down.
const maxDepth = 32

// Parse reads a plugin configuration. Every problem is reported, each
// naming the member it is about and, when the member is present, the line
// and column of its value, so that a refused plugin start points at the
// fix.
func Parse(data []byte) (Config, error) {
	if len(data) > MaxConfigBytes {
		return Config{}, errs.Errorf("configuration: %d bytes, limit %d", len(data), MaxConfigBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Config{}, errors.New("configuration: empty (want a JSON object)")
	}
	root, err := jsonx.ParseWith(data, jsonx.Options{MaxDepth: maxDepth})
	if err != nil {
		return Config{}, errs.Errorf("configuration: %w", err)
	}
	if err := checkFolded(root, ""); err != nil {
		return Config{}, errs.Errorf("configuration: %w", err)
	}
	if root.Kind != jsonx.Object {
		return Config{}, errs.Errorf("configuration: line %d, column %d: want a JSON object, got %s", root.Line, root.Col, root.Kind)
	}
	var d decoder
	c := d.config(root)
	if err := errors.Join(d.errs...); err != nil {
		return Config{}, errs.Errorf("configuration: %w", err)
	}
	return c, nil
}

// Member names of each object, for the hint on a name in the wrong case.
var (
	topNames      = []string{"bundles", "jwks", "token", "node", "limits", "control_plane", "audit", "no_bundle", "on_audit_overflow", "state", "fetch"}
	tokenNames    = []string{"header", "issuer", "audience", "skew_seconds", "cache_entries"}
	nodeNames     = []string{"id", "region"}
	limitsNames   = []string{"max_body_bytes", "approval_hold_ms"}
	cpNames       = []string{"cluster", "authority", "timeout_ms"}
	auditNames    = []string{"max_queue", "batch_size", "flush_interval_ms"}
	noBundleNames = []string{"read", "write"}
	stateNames    = []string{"inline", "refresh_ms"}
	fetchNames    = []string{"tenants", "bundles", "jwks", "refresh_ms"}
)

// decoder collects every problem rather than stopping at the first: an
// operator fixing a configuration wants the whole list at once.
type decoder struct{ errs []error }

func (d *decoder) add(err error) {
	if err != nil {
		d.errs = append(d.errs, err)
	}
}

// bad reports msg about the member at path; v is its value, nil when the
// member is absent (the message then has no position).
func (d *decoder) bad(v *jsonx.Value, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if v == nil {
		d.errs = append(d.errs, &jsonx.FieldError{Path: path, Msg: msg})
		return
	}
	d.errs = append(d.errs, v.Fail(path, msg))
}

// object returns member name as an Obj; nil when absent or not an object
// (reported).
func (d *decoder) object(o *jsonx.Obj, name string) *jsonx.Obj {
	v := o.Get(name)
	if v == nil {
		return nil
	}
	sub, err := v.AsObject(o.Path(name))
	d.add(err)
	return sub
}

// str returns member name's string and value; v is nil when the member is
// absent or not a string (reported).
func (d *decoder) str(o *jsonx.Obj, name string) (s string, v *jsonx.Value) {
	v = o.Get(name)
	if v == nil {
		return "", nil
	}
	s, err := v.AsString(o.Path(name))
	if err != nil {
		d.add(err)
		return "", nil
	}
	return s, v
}

func (d *decoder) boolean(o *jsonx.Obj, name string) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	b, err := v.AsBool(o.Path(name))
	d.add(err)
	return b
}

// intIn sets *dst to member name when it is present and an integer within
// [lo, hi]; it reports presence, whether or not the value was good.
func (d *decoder) intIn(o *jsonx.Obj, name string, lo, hi int64, dst *int) bool {
	v := o.Get(name)
	if v == nil {
		return false
	}
	n, err := v.AsInt64(o.Path(name))
	switch {
	case v.Kind == jsonx.Number && strings.ContainsAny(v.Str, ".eE"):
		// encoding/json refused these for an int field too; say why.
		d.bad(v, o.Path(name), "want an integer, got %s", v.Str)
	case err != nil:
		d.add(err)
	case n < lo || n > hi:
		d.bad(v, o.Path(name), "%d outside [%d, %d]", n, lo, hi)
	default:
		*dst = int(n)
	}
	return true
}

// end reports every member of o nobody read. Names are matched exactly; a
// known name in another case gets a hint, since encoding/json, which read
// this configuration before, matched names regardless of case.
func (d *decoder) end(o *jsonx.Obj, known []string) {
	for _, m := range o.Rest() {
		msg := "unknown member"
		for _, k := range known {
			if strings.EqualFold(k, m.Key) {
				msg = "unknown member (names are case-sensitive: " + strconv.Quote(k) + ")"
				break
			}
		}
		d.bad(&m.Value, o.Path(m.Key), "%s", msg)
	}
}

func (d *decoder) config(root *jsonx.Value) Config {
	var c Config
	o, err := root.AsObject("")
	if err != nil {
		d.add(err)
		return c
	}

	c.Bundles = map[string][]byte{}
	if v := o.Get("bundles"); v != nil {
		if b, err := v.AsObject("bundles"); err != nil {
			d.add(err)
		} else {
			if len(v.Members) > MaxTenants {
				d.bad(v, "bundles", "%d tenants, limit %d", len(v.Members), MaxTenants)
			}
			for _, m := range b.Rest() {
				field := b.Path(m.Key)
				if !validName(m.Key) {
					d.bad(&m.Value, field, "tenant name must be 1-128 characters of [A-Za-z0-9._-]")
					continue
				}
				s, err := m.Value.AsString(field)
				if err != nil {
					d.add(err)
					continue
				}
				bs, err := base64.StdEncoding.Strict().DecodeString(s)
				if err != nil {
					d.bad(&m.Value, field, "not standard base64: %v", err)
					continue
				}
				if len(bs) == 0 {
					d.bad(&m.Value, field, "empty bundle")
					continue
				}
				c.Bundles[m.Key] = bs
			}
		}
	}

	switch v := o.Get("jwks"); {
	case v == nil || v.Kind == jsonx.Null:
		d.bad(v, "jwks", "required: the JWKS (JSON object) agent tokens are verified with")
	case v.Kind != jsonx.Object:
		d.bad(v, "jwks", "want a JSON object {\"keys\": [...]}, got %s", v.Kind)
	default:
		// A copy: the plugin keeps it, and data is the host's buffer.
		c.JWKS = slices.Clone(v.Raw)
	}

	c.Token = Token{Header: DefaultTokenHeader, SkewSeconds: DefaultTokenSkewSeconds, CacheEntries: DefaultTokenCacheEntries}
	if t := d.object(o, "token"); t != nil {
		if h, hv := d.str(t, "header"); h != "" {
			switch {
			case !validHeaderName(h):
				d.bad(hv, "token.header", "%q is not a lower-case HTTP header name", h)
			case strings.HasPrefix(h, ":"):
				d.bad(hv, "token.header", "pseudo-header %q cannot carry a token", h)
			default:
				c.Token.Header = h
			}
		}
		c.Token.Issuer, _ = d.str(t, "issuer")
		c.Token.Audience, _ = d.str(t, "audience")
		d.intIn(t, "skew_seconds", 0, 600, &c.Token.SkewSeconds)
		d.intIn(t, "cache_entries", 1, 1<<16, &c.Token.CacheEntries)
		d.end(t, tokenNames)
	}

	nodeV := o.Get("node")
	var node *jsonx.Obj
	if nodeV != nil {
		node, err = nodeV.AsObject("node")
		d.add(err)
	}
	if node != nil {
		id, idv := d.str(node, "id")
		switch {
		case idv == nil && node.Has("id"):
			// mistyped, reported
		case id == "":
			d.bad(idv, "node.id", "required: names the node in audit chains")
		case !validName(id):
			d.bad(idv, "node.id", "must be 1-128 characters of [A-Za-z0-9._-]")
		}
		c.Node.ID = id
		region, rv := d.str(node, "region")
		if region != "" && !validName(region) {
			d.bad(rv, "node.region", "must be 1-128 characters of [A-Za-z0-9._-]")
		}
		c.Node.Region = region
		d.end(node, nodeNames)
	} else if nodeV == nil {
		d.bad(nil, "node.id", "required: names the node in audit chains")
	}

	c.Limits = Limits{MaxBodyBytes: DefaultMaxBodyBytes}
	if l := d.object(o, "limits"); l != nil {
		d.intIn(l, "max_body_bytes", 1, MaxMaxBodyBytes, &c.Limits.MaxBodyBytes)
		d.intIn(l, "approval_hold_ms", 0, 300_000, &c.Limits.ApprovalHoldMs)
		d.end(l, limitsNames)
	}

	c.ControlPlane.TimeoutMs = DefaultCalloutTimeoutMs
	if cp := d.object(o, "control_plane"); cp != nil {
		cl, clv := d.str(cp, "cluster")
		switch {
		case clv == nil && cp.Has("cluster"):
			// mistyped, reported
		case cl == "":
			d.bad(clv, "control_plane.cluster", "required when control_plane is given")
		case !validName(cl):
			d.bad(clv, "control_plane.cluster", "must be 1-128 characters of [A-Za-z0-9._-]")
		}
		c.ControlPlane.Cluster = cl
		c.ControlPlane.Authority, _ = d.str(cp, "authority")
		if c.ControlPlane.Authority == "" {
			c.ControlPlane.Authority = cl
		}
		d.intIn(cp, "timeout_ms", 1, 60_000, &c.ControlPlane.TimeoutMs)
		d.end(cp, cpNames)
	}

	c.Audit = Audit{MaxQueue: DefaultAuditMaxQueue, BatchSize: DefaultAuditBatchSize, FlushIntervalMs: DefaultAuditFlushMillis}
	if a := d.object(o, "audit"); a != nil {
		d.intIn(a, "max_queue", 1, 1<<20, &c.Audit.MaxQueue)
		d.intIn(a, "batch_size", 1, 10_000, &c.Audit.BatchSize)
		d.intIn(a, "flush_interval_ms", 10, 600_000, &c.Audit.FlushIntervalMs)
		d.end(a, auditNames)
	}

	c.NoBundle = NoBundle{Read: Closed, Write: Closed}
	if nb := d.object(o, "no_bundle"); nb != nil {
		switch r, rv := d.str(nb, "read"); r {
		case "":
		case Open, Closed:
			c.NoBundle.Read = r
		default:
			d.bad(rv, "no_bundle.read", "%q: want %q or %q", r, Open, Closed)
		}
		switch w, wv := d.str(nb, "write"); w {
		case "", Closed:
		default:
			// A write that no policy checked is never let through.
			d.bad(wv, "no_bundle.write", "%q: only %q is accepted", w, Closed)
		}
		d.end(nb, noBundleNames)
	}

	c.OnAuditOverflow = OverflowDenyWrites
	switch ov, ovv := d.str(o, "on_audit_overflow"); ov {
	case "":
	case OverflowDenyWrites, OverflowDrop:
		c.OnAuditOverflow = ov
	default:
		d.bad(ovv, "on_audit_overflow", "%q: want %q or %q", ov, OverflowDenyWrites, OverflowDrop)
	}

	if st := d.object(o, "state"); st != nil {
		d.stateInline(st, &c)
		d.intIn(st, "refresh_ms", 100, 3_600_000, &c.State.RefreshMs)
		d.end(st, stateNames)
	}

	if f := d.object(o, "fetch"); f != nil {
		c.Fetch.RefreshMs = DefaultFetchRefreshMs
		if tv := f.Get("tenants"); tv != nil {
			ts, err := tv.AsStrings("fetch.tenants")
			d.add(err)
			if len(ts) > MaxTenants {
				d.bad(tv, "fetch.tenants", "%d tenants, limit %d", len(ts), MaxTenants)
			}
			for i, t := range ts {
				if !validName(t) {
					d.bad(&tv.Elems[i], jsonx.Index("fetch.tenants", i), "tenant name must be 1-128 characters of [A-Za-z0-9._-]")
				}
			}
			c.Fetch.Tenants = slices.Compact(slices.Sorted(slices.Values(ts)))
		}
		c.Fetch.Bundles = d.boolean(f, "bundles")
		c.Fetch.JWKS = d.boolean(f, "jwks")
		d.intIn(f, "refresh_ms", 100, 3_600_000, &c.Fetch.RefreshMs)
		if c.Fetch.Bundles && len(c.Fetch.Tenants) == 0 {
			d.bad(nil, "fetch.tenants", "required when fetch.bundles is true")
		}
		d.end(f, fetchNames)
	}

	if c.ControlPlane.Cluster == "" {
		if c.State.RefreshMs > 0 {
			d.bad(o.V.Member("state").Member("refresh_ms"), "state.refresh_ms", "needs control_plane to fetch from")
		}
		if c.Fetch.Bundles || c.Fetch.JWKS {
			d.bad(o.V.Member("fetch"), "fetch", "needs control_plane to fetch from")
		}
	}
	d.end(o, topNames)
	return c
}

// stateInline reads state.inline: tenant → the signed state envelope as a
// JSON object, or that object's bytes in standard base64.
func (d *decoder) stateInline(st *jsonx.Obj, c *Config) {
	c.State.Inline = map[string][]byte{}
	v := st.Get("inline")
	if v == nil {
		return
	}
	in, err := v.AsObject("state.inline")
	if err != nil {
		d.add(err)
		return
	}
	if len(v.Members) > MaxTenants {
		d.bad(v, "state.inline", "%d tenants, limit %d", len(v.Members), MaxTenants)
	}
	for _, m := range in.Rest() {
		field := in.Path(m.Key)
		if !validName(m.Key) {
			d.bad(&m.Value, field, "tenant name must be 1-128 characters of [A-Za-z0-9._-]")
			continue
		}
		switch m.Value.Kind {
		case jsonx.Object:
			c.State.Inline[m.Key] = slices.Clone(m.Value.Raw)
		case jsonx.String:
			b, err := base64.StdEncoding.Strict().DecodeString(m.Value.Str)
			if err != nil || len(b) == 0 {
				d.bad(&m.Value, field, "not a signed state object or its standard base64")
				continue
			}
			c.State.Inline[m.Key] = b
		default:
			d.bad(&m.Value, field, "want a signed state object or its standard base64, got %s", m.Value.Kind)
		}
	}
}

// validName accepts the identifiers the filter puts in shared-data keys,
// metric names and URLs without escaping.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validHeaderName accepts lower-case RFC 9110 tokens (Envoy lower-cases
// header names, so an upper-case name would never match).
func validHeaderName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// checkFolded refuses an object with two keys that differ only in letter
// case, anywhere in the document (the JWKS and state envelopes included):
// a reader that matches names regardless of case, as encoding/json does,
// would take one for the other, so two readers of the same document could
// disagree about a setting. Exact duplicates the parser already refused.
func checkFolded(v *jsonx.Value, path string) error {
	switch v.Kind {
	case jsonx.Array:
		for i := range v.Elems {
			if err := checkFolded(&v.Elems[i], jsonx.Index(path, i)); err != nil {
				return err
			}
		}
	case jsonx.Object:
		var seen map[string]string
		if len(v.Members) > 1 {
			seen = make(map[string]string, len(v.Members))
		}
		for i := range v.Members {
			m := &v.Members[i]
			field := jsonx.Key(path, m.Key)
			if seen != nil {
				fk := fold(m.Key)
				if other, dup := seen[fk]; dup {
					return m.Value.Fail(field, "duplicate key: the same as "+strconv.Quote(other)+" to a reader that ignores letter case")
				}
				seen[fk] = m.Key
			}
			if err := checkFolded(&m.Value, field); err != nil {
				return err
			}
		}
	}
	return nil
}

// fold maps every rune to the smallest member of its simple-folding orbit,
// so keys equal under encoding/json's matching fold to the same string.
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}
