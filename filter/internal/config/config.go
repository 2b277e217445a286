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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
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

// The wire form; pointers distinguish "absent" from zero where a zero is
// invalid rather than "use the default".
type wire struct {
	Bundles         map[string]string `json:"bundles"`
	JWKS            json.RawMessage   `json:"jwks"`
	Token           *wireToken        `json:"token"`
	Node            *wireNode         `json:"node"`
	Limits          *wireLimits       `json:"limits"`
	ControlPlane    *wireCP           `json:"control_plane"`
	Audit           *wireAudit        `json:"audit"`
	NoBundle        *wireNoBundle     `json:"no_bundle"`
	OnAuditOverflow string            `json:"on_audit_overflow"`
	State           *wireState        `json:"state"`
	Fetch           *wireFetch        `json:"fetch"`
}

type wireState struct {
	Inline    map[string]json.RawMessage `json:"inline"`
	RefreshMs *int                       `json:"refresh_ms"`
}

type wireFetch struct {
	Tenants   []string `json:"tenants"`
	Bundles   bool     `json:"bundles"`
	JWKS      bool     `json:"jwks"`
	RefreshMs *int     `json:"refresh_ms"`
}

type wireToken struct {
	Header       string `json:"header"`
	Issuer       string `json:"issuer"`
	Audience     string `json:"audience"`
	SkewSeconds  *int   `json:"skew_seconds"`
	CacheEntries *int   `json:"cache_entries"`
}

type wireNode struct {
	ID     string `json:"id"`
	Region string `json:"region"`
}

type wireLimits struct {
	MaxBodyBytes   *int `json:"max_body_bytes"`
	ApprovalHoldMs *int `json:"approval_hold_ms"`
}

type wireCP struct {
	Cluster   string `json:"cluster"`
	Authority string `json:"authority"`
	TimeoutMs *int   `json:"timeout_ms"`
}

type wireAudit struct {
	MaxQueue        *int `json:"max_queue"`
	BatchSize       *int `json:"batch_size"`
	FlushIntervalMs *int `json:"flush_interval_ms"`
}

type wireNoBundle struct {
	Read  string `json:"read"`
	Write string `json:"write"`
}

// Parse reads a plugin configuration. Every problem is reported, each
// prefixed with the field it is about.
func Parse(data []byte) (Config, error) {
	var c Config
	if len(data) > MaxConfigBytes {
		return c, fmt.Errorf("configuration: %d bytes, limit %d", len(data), MaxConfigBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, errors.New("configuration: empty (want a JSON object)")
	}
	if err := checkDuplicates(data); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, errors.New("configuration: data after the JSON object")
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	if len(w.Bundles) > MaxTenants {
		bad("bundles", "%d tenants, limit %d", len(w.Bundles), MaxTenants)
	}
	c.Bundles = make(map[string][]byte, len(w.Bundles))
	for _, tenant := range sortedKeys(w.Bundles) {
		field := "bundles." + tenant
		if !validName(tenant) {
			bad(field, "tenant name must be 1-128 characters of [A-Za-z0-9._-]")
			continue
		}
		b, err := base64.StdEncoding.Strict().DecodeString(w.Bundles[tenant])
		if err != nil {
			bad(field, "not standard base64: %v", err)
			continue
		}
		if len(b) == 0 {
			bad(field, "empty bundle")
			continue
		}
		c.Bundles[tenant] = b
	}

	if len(w.JWKS) == 0 || string(w.JWKS) == "null" {
		bad("jwks", "required: the JWKS (JSON object) agent tokens are verified with")
	} else if w.JWKS[0] != '{' {
		bad("jwks", "want a JSON object {\"keys\": [...]}")
	} else {
		c.JWKS = slices.Clone(w.JWKS)
	}

	c.Token = Token{Header: DefaultTokenHeader, SkewSeconds: DefaultTokenSkewSeconds, CacheEntries: DefaultTokenCacheEntries}
	if t := w.Token; t != nil {
		if t.Header != "" {
			h := t.Header
			switch {
			case !validHeaderName(h):
				bad("token.header", "%q is not a lower-case HTTP header name", h)
			case strings.HasPrefix(h, ":"):
				bad("token.header", "pseudo-header %q cannot carry a token", h)
			default:
				c.Token.Header = h
			}
		}
		c.Token.Issuer = t.Issuer
		c.Token.Audience = t.Audience
		if t.SkewSeconds != nil {
			if *t.SkewSeconds < 0 || *t.SkewSeconds > 600 {
				bad("token.skew_seconds", "%d outside [0, 600]", *t.SkewSeconds)
			} else {
				c.Token.SkewSeconds = *t.SkewSeconds
			}
		}
		if t.CacheEntries != nil {
			if *t.CacheEntries < 1 || *t.CacheEntries > 1<<16 {
				bad("token.cache_entries", "%d outside [1, 65536]", *t.CacheEntries)
			} else {
				c.Token.CacheEntries = *t.CacheEntries
			}
		}
	}

	if w.Node == nil || w.Node.ID == "" {
		bad("node.id", "required: names the node in audit chains")
	} else {
		if !validName(w.Node.ID) {
			bad("node.id", "must be 1-128 characters of [A-Za-z0-9._-]")
		}
		c.Node.ID = w.Node.ID
	}
	if w.Node != nil {
		if w.Node.Region != "" && !validName(w.Node.Region) {
			bad("node.region", "must be 1-128 characters of [A-Za-z0-9._-]")
		}
		c.Node.Region = w.Node.Region
	}

	c.Limits = Limits{MaxBodyBytes: DefaultMaxBodyBytes}
	if l := w.Limits; l != nil {
		if l.MaxBodyBytes != nil {
			if *l.MaxBodyBytes < 1 || *l.MaxBodyBytes > MaxMaxBodyBytes {
				bad("limits.max_body_bytes", "%d outside [1, %d]", *l.MaxBodyBytes, MaxMaxBodyBytes)
			} else {
				c.Limits.MaxBodyBytes = *l.MaxBodyBytes
			}
		}
		if l.ApprovalHoldMs != nil {
			if *l.ApprovalHoldMs < 0 || *l.ApprovalHoldMs > 300_000 {
				bad("limits.approval_hold_ms", "%d outside [0, 300000]", *l.ApprovalHoldMs)
			} else {
				c.Limits.ApprovalHoldMs = *l.ApprovalHoldMs
			}
		}
	}

	c.ControlPlane.TimeoutMs = DefaultCalloutTimeoutMs
	if cp := w.ControlPlane; cp != nil {
		if cp.Cluster == "" {
			bad("control_plane.cluster", "required when control_plane is given")
		} else if !validName(cp.Cluster) {
			bad("control_plane.cluster", "must be 1-128 characters of [A-Za-z0-9._-]")
		}
		c.ControlPlane.Cluster = cp.Cluster
		c.ControlPlane.Authority = cp.Authority
		if c.ControlPlane.Authority == "" {
			c.ControlPlane.Authority = cp.Cluster
		}
		if cp.TimeoutMs != nil {
			if *cp.TimeoutMs < 1 || *cp.TimeoutMs > 60_000 {
				bad("control_plane.timeout_ms", "%d outside [1, 60000]", *cp.TimeoutMs)
			} else {
				c.ControlPlane.TimeoutMs = *cp.TimeoutMs
			}
		}
	}

	c.Audit = Audit{MaxQueue: DefaultAuditMaxQueue, BatchSize: DefaultAuditBatchSize, FlushIntervalMs: DefaultAuditFlushMillis}
	if a := w.Audit; a != nil {
		setRange(&c.Audit.MaxQueue, a.MaxQueue, 1, 1<<20, "audit.max_queue", bad)
		setRange(&c.Audit.BatchSize, a.BatchSize, 1, 10_000, "audit.batch_size", bad)
		setRange(&c.Audit.FlushIntervalMs, a.FlushIntervalMs, 10, 600_000, "audit.flush_interval_ms", bad)
	}

	c.NoBundle = NoBundle{Read: Closed, Write: Closed}
	if nb := w.NoBundle; nb != nil {
		switch nb.Read {
		case "":
		case Open, Closed:
			c.NoBundle.Read = nb.Read
		default:
			bad("no_bundle.read", "%q: want %q or %q", nb.Read, Open, Closed)
		}
		switch nb.Write {
		case "", Closed:
		default:
			// A write that no policy checked is never let through.
			bad("no_bundle.write", "%q: only %q is accepted", nb.Write, Closed)
		}
	}

	switch w.OnAuditOverflow {
	case "":
		c.OnAuditOverflow = OverflowDenyWrites
	case OverflowDenyWrites, OverflowDrop:
		c.OnAuditOverflow = w.OnAuditOverflow
	default:
		bad("on_audit_overflow", "%q: want %q or %q", w.OnAuditOverflow, OverflowDenyWrites, OverflowDrop)
	}

	if st := w.State; st != nil {
		if len(st.Inline) > MaxTenants {
			bad("state.inline", "%d tenants, limit %d", len(st.Inline), MaxTenants)
		}
		c.State.Inline = make(map[string][]byte, len(st.Inline))
		for tenant, raw := range st.Inline {
			field := "state.inline." + tenant
			if !validName(tenant) {
				bad(field, "tenant name must be 1-128 characters of [A-Za-z0-9._-]")
				continue
			}
			// The signed envelope as a JSON object, or that object's
			// bytes in standard base64.
			switch {
			case len(raw) > 0 && raw[0] == '{':
				c.State.Inline[tenant] = slices.Clone(raw)
			case len(raw) > 0 && raw[0] == '"':
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					bad(field, "%v", err)
					continue
				}
				b, err := base64.StdEncoding.Strict().DecodeString(s)
				if err != nil || len(b) == 0 {
					bad(field, "not a signed state object or its standard base64")
					continue
				}
				c.State.Inline[tenant] = b
			default:
				bad(field, "want a signed state object or its standard base64")
			}
		}
		if st.RefreshMs != nil {
			if *st.RefreshMs < 100 || *st.RefreshMs > 3_600_000 {
				bad("state.refresh_ms", "%d outside [100, 3600000]", *st.RefreshMs)
			} else {
				c.State.RefreshMs = *st.RefreshMs
			}
		}
	}
	if f := w.Fetch; f != nil {
		if len(f.Tenants) > MaxTenants {
			bad("fetch.tenants", "%d tenants, limit %d", len(f.Tenants), MaxTenants)
		}
		for i, t := range f.Tenants {
			if !validName(t) {
				bad(fmt.Sprintf("fetch.tenants[%d]", i), "tenant name must be 1-128 characters of [A-Za-z0-9._-]")
			}
		}
		c.Fetch = Fetch{Tenants: slices.Compact(slices.Sorted(slices.Values(f.Tenants))), Bundles: f.Bundles, JWKS: f.JWKS, RefreshMs: DefaultFetchRefreshMs}
		if f.RefreshMs != nil {
			if *f.RefreshMs < 100 || *f.RefreshMs > 3_600_000 {
				bad("fetch.refresh_ms", "%d outside [100, 3600000]", *f.RefreshMs)
			} else {
				c.Fetch.RefreshMs = *f.RefreshMs
			}
		}
		if f.Bundles && len(f.Tenants) == 0 {
			bad("fetch.tenants", "required when fetch.bundles is true")
		}
	}
	if c.ControlPlane.Cluster == "" {
		if c.State.RefreshMs > 0 {
			bad("state.refresh_ms", "needs control_plane to fetch from")
		}
		if c.Fetch.Bundles || c.Fetch.JWKS {
			bad("fetch", "needs control_plane to fetch from")
		}
	}

	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

func setRange(dst *int, v *int, lo, hi int, field string, bad func(string, string, ...any)) {
	if v == nil {
		return
	}
	if *v < lo || *v > hi {
		bad(field, "%d outside [%d, %d]", *v, lo, hi)
		return
	}
	*dst = *v
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
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

// checkDuplicates walks the document and refuses an object with a repeated
// key: encoding/json keeps the last one silently, so two readers of the
// same document could disagree about a setting.
func checkDuplicates(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(path string, depth int) error
	walk = func(path string, depth int) error {
		if depth > 32 {
			return fmt.Errorf("%s: nested too deeply", orRoot(path))
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		switch d {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				field := join(path, k)
				// encoding/json matches field names case-insensitively
				// (Unicode simple folding), so "Node" and "node" are the
				// same setting and must not both appear.
				fk := fold(k)
				if seen[fk] {
					return fmt.Errorf("%s: duplicate key", field)
				}
				seen[fk] = true
				if err := walk(field, depth+1); err != nil {
					return err
				}
			}
		case '[':
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	return walk("", 0)
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

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}
