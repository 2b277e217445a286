package config

// The encoding/json reader this package used before jsonx, kept as the
// reference the differential tests hold Parse to: whatever it refused,
// Parse must refuse, and whatever both accept must read the same.

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

// The legacyWire form; pointers distinguish "absent" from zero where a zero is
// invalid rather than "use the default".
type legacyWire struct {
	Bundles         map[string]string   `json:"bundles"`
	JWKS            json.RawMessage     `json:"jwks"`
	Token           *legacyWireToken    `json:"token"`
	Node            *legacyWireNode     `json:"node"`
	Limits          *legacyWireLimits   `json:"limits"`
	ControlPlane    *legacyWireCP       `json:"control_plane"`
	Audit           *legacyWireAudit    `json:"audit"`
	NoBundle        *legacyWireNoBundle `json:"no_bundle"`
	OnAuditOverflow string              `json:"on_audit_overflow"`
	State           *legacyWireState    `json:"state"`
	Fetch           *legacyWireFetch    `json:"fetch"`
}

type legacyWireState struct {
	Inline    map[string]json.RawMessage `json:"inline"`
	RefreshMs *int                       `json:"refresh_ms"`
}

type legacyWireFetch struct {
	Tenants   []string `json:"tenants"`
	Bundles   bool     `json:"bundles"`
	JWKS      bool     `json:"jwks"`
	RefreshMs *int     `json:"refresh_ms"`
}

type legacyWireToken struct {
	Header       string `json:"header"`
	Issuer       string `json:"issuer"`
	Audience     string `json:"audience"`
	SkewSeconds  *int   `json:"skew_seconds"`
	CacheEntries *int   `json:"cache_entries"`
}

type legacyWireNode struct {
	ID     string `json:"id"`
	Region string `json:"region"`
}

type legacyWireLimits struct {
	MaxBodyBytes   *int `json:"max_body_bytes"`
	ApprovalHoldMs *int `json:"approval_hold_ms"`
}

type legacyWireCP struct {
	Cluster   string `json:"cluster"`
	Authority string `json:"authority"`
	TimeoutMs *int   `json:"timeout_ms"`
}

type legacyWireAudit struct {
	MaxQueue        *int `json:"max_queue"`
	BatchSize       *int `json:"batch_size"`
	FlushIntervalMs *int `json:"flush_interval_ms"`
}

type legacyWireNoBundle struct {
	Read  string `json:"read"`
	Write string `json:"write"`
}

// Parse reads a plugin configuration. Every problem is reported, each
// prefixed with the field it is about.
func legacyParse(data []byte) (Config, error) {
	var c Config
	if len(data) > MaxConfigBytes {
		return c, fmt.Errorf("configuration: %d bytes, limit %d", len(data), MaxConfigBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, errors.New("configuration: empty (want a JSON object)")
	}
	if err := legacyCheckDuplicates(data); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	var w legacyWire
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
	for _, tenant := range legacySortedKeys(w.Bundles) {
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
		legacySetRange(&c.Audit.MaxQueue, a.MaxQueue, 1, 1<<20, "audit.max_queue", bad)
		legacySetRange(&c.Audit.BatchSize, a.BatchSize, 1, 10_000, "audit.batch_size", bad)
		legacySetRange(&c.Audit.FlushIntervalMs, a.FlushIntervalMs, 10, 600_000, "audit.flush_interval_ms", bad)
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

func legacySetRange(dst *int, v *int, lo, hi int, field string, bad func(string, string, ...any)) {
	if v == nil {
		return
	}
	if *v < lo || *v > hi {
		bad(field, "%d outside [%d, %d]", *v, lo, hi)
		return
	}
	*dst = *v
}

func legacySortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// legacyCheckDuplicates walks the document and refuses an object with a repeated
// key: encoding/json keeps the last one silently, so two readers of the
// same document could disagree about a setting.
func legacyCheckDuplicates(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(path string, depth int) error
	walk = func(path string, depth int) error {
		if depth > 32 {
			return fmt.Errorf("%s: nested too deeply", legacyOrRoot(path))
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
				field := legacyJoin(path, k)
				// encoding/json matches field names case-insensitively
				// (Unicode simple folding), so "Node" and "node" are the
				// same setting and must not both appear.
				fk := legacyFold(k)
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
func legacyFold(s string) string {
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

func legacyJoin(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func legacyOrRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}
