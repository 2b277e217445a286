// Package bundle reads and writes Aegis policy bundles: a deterministic
// .tar.gz holding manifest.json, the files it pins by SHA-256, and
// manifest.sig, a pure Ed25519 signature over the exact manifest bytes.
//
// One reader serves both bundle kinds: "archive" (everything the compiler
// produced, for audit and OPA tooling) and "runtime" (what nodes load). The
// package is compiled into the wasip1 filter, so it uses the standard
// library and internal/jsonx only (no encoding/json, issue 3) and never
// touches the file system.
package bundle

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// Format is the only manifest format this package reads and writes.
const Format = "aegis.bundle/v1"

// Bundle kinds.
const (
	KindArchive = "archive"
	KindRuntime = "runtime"
)

// Names reserved for the manifest and its signature inside the archive.
const (
	ManifestPath  = "manifest.json"
	SignaturePath = "manifest.sig"
)

// MaxPathLen bounds file paths so that every path fits a USTAR header name
// field on its own, which keeps the archive layout independent of where
// archive/tar would split a long name.
const MaxPathLen = 100

// Release is the publish-time record the control plane adds before it signs
// the manifest it ships: who approved and published it, and the rollout
// stage. Replaces is set on a rollback: the revision this (lower) revision
// is allowed to replace.
type Release struct {
	Approvers []string `json:"approvers,omitempty"`
	Publisher string   `json:"publisher,omitempty"`
	Stage     string   `json:"stage,omitempty"`
	Replaces  int64    `json:"replaces,omitempty"`
}

// Manifest describes a bundle and pins its files. Its JSON encoding is the
// signed payload, so Marshal must stay deterministic: struct fields in
// declaration order, map keys sorted, times in UTC with whole seconds —
// byte for byte what encoding/json's indenting Encoder wrote, which the
// signatures of bundles already published cover.
type Manifest struct {
	Format        string            `json:"format"`
	Kind          string            `json:"kind"`
	Tenant        string            `json:"tenant"`
	Name          string            `json:"name"`
	Revision      int64             `json:"revision"`
	CreatedAt     time.Time         `json:"created_at"`
	ExpiresAt     time.Time         `json:"expires_at"`
	EngineVersion string            `json:"engine_version"`
	Builtins      []string          `json:"builtins"`
	Entrypoints   []string          `json:"entrypoints"`
	Files         map[string]string `json:"files"`
	Release       *Release          `json:"release,omitempty"`
	// Policy is free-form data for the compiler and the filter (MCP
	// endpoints, tool routes). Numbers decode as Number so that a
	// parse/marshal cycle does not change them.
	Policy map[string]any `json:"policy,omitempty"`
}

// Marshal returns the canonical manifest bytes: two-space indented JSON
// without HTML escaping, ending in a newline. It validates first, so an
// invalid manifest is never signed.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m.encode()
}

func (m *Manifest) encode() ([]byte, error) {
	b, err := m.appendJSON(nil)
	if err != nil {
		return nil, errs.Errorf("encode manifest: %w", err)
	}
	return b, nil
}

func (m *Manifest) appendJSON(b []byte) ([]byte, error) {
	e := indenter{b: b}
	e.open('{')
	for _, f := range [...]struct{ k, v string }{{"format", m.Format}, {"kind", m.Kind}, {"tenant", m.Tenant}, {"name", m.Name}} {
		e.key(f.k)
		e.b = appendString(e.b, f.v)
	}
	e.key("revision")
	e.b = strconv.AppendInt(e.b, m.Revision, 10)
	e.key("created_at")
	if err := e.time(m.CreatedAt); err != nil {
		return nil, err
	}
	e.key("expires_at")
	if err := e.time(m.ExpiresAt); err != nil {
		return nil, err
	}
	e.key("engine_version")
	e.b = appendString(e.b, m.EngineVersion)
	// nil and empty lists would otherwise encode differently (null vs []).
	for _, l := range [...]struct {
		k string
		v []string
	}{{"builtins", m.Builtins}, {"entrypoints", m.Entrypoints}} {
		e.key(l.k)
		if l.v == nil {
			l.v = []string{}
		}
		e.strings(l.v)
	}
	e.key("files")
	e.stringMap(m.Files)
	if r := m.Release; r != nil {
		e.key("release")
		e.open('{')
		if len(r.Approvers) > 0 {
			e.key("approvers")
			e.strings(r.Approvers)
		}
		for _, f := range [...]struct{ k, v string }{{"publisher", r.Publisher}, {"stage", r.Stage}} {
			if f.v != "" {
				e.key(f.k)
				e.b = appendString(e.b, f.v)
			}
		}
		if r.Replaces != 0 {
			e.key("replaces")
			e.b = strconv.AppendInt(e.b, r.Replaces, 10)
		}
		e.close('}')
	}
	if len(m.Policy) > 0 {
		e.key("policy")
		if err := e.value(m.Policy); err != nil {
			return nil, errs.Errorf("policy: %w", err)
		}
	}
	e.close('}')
	return append(e.b, '\n'), nil
}

// ParseManifest decodes and validates manifest bytes strictly: valid UTF-8,
// no duplicate keys at any depth, no unknown fields (an older node must not
// silently ignore a field it does not understand) and nothing after the
// JSON value.
func ParseManifest(data []byte) (*Manifest, error) {
	if !utf8.Valid(data) {
		return nil, errs.Errorf("%w: manifest is not valid UTF-8", ErrInvalid)
	}
	v, err := jsonx.Parse(data)
	if err != nil {
		return nil, errs.Errorf("%w: manifest: %v", ErrInvalid, err)
	}
	if err := checkManifestKeys(v); err != nil {
		return nil, errs.Errorf("%w: manifest: %v", ErrInvalid, err)
	}
	m, err := decodeManifest(v)
	if err != nil {
		return nil, errs.Errorf("%w: manifest: %v", ErrInvalid, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every field and reports all problems at once.
func (m *Manifest) Validate() error {
	var probs problems
	add := probs.add

	if m.Format != Format {
		add("format %q, want %q", m.Format, Format)
	}
	if m.Kind != KindArchive && m.Kind != KindRuntime {
		add("kind %q, want %q or %q", m.Kind, KindArchive, KindRuntime)
	}
	if err := checkName(m.Tenant); err != nil {
		add("tenant: %v", err)
	}
	if err := checkName(m.Name); err != nil {
		add("name: %v", err)
	}
	if m.Revision < 1 {
		add("revision %d, want >= 1", m.Revision)
	}
	if err := checkTime(m.CreatedAt); err != nil {
		add("created_at: %v", err)
	}
	if err := checkTime(m.ExpiresAt); err != nil {
		add("expires_at: %v", err)
	}
	if !m.ExpiresAt.After(m.CreatedAt) {
		add("expires_at %s is not after created_at %s", m.ExpiresAt.Format(time.RFC3339), m.CreatedAt.Format(time.RFC3339))
	}
	if strings.TrimSpace(m.EngineVersion) == "" {
		add("engine_version is empty")
	}
	for i, b := range m.Builtins {
		if b == "" {
			add("builtins[%d] is empty", i)
		}
		if i > 0 && m.Builtins[i-1] >= b {
			add("builtins must be sorted and unique: %q after %q", b, m.Builtins[i-1])
		}
	}
	if len(m.Entrypoints) == 0 {
		add("entrypoints is empty")
	}
	seen := map[string]bool{}
	for i, e := range m.Entrypoints {
		if e == "" {
			add("entrypoints[%d] is empty", i)
		}
		if seen[e] {
			add("entrypoint %q listed twice", e)
		}
		seen[e] = true
	}
	if len(m.Files) == 0 {
		add("files is empty")
	}
	paths := make([]string, 0, len(m.Files))
	for p := range m.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := CheckPath(p); err != nil {
			add("files: %v", err)
		}
		if !isSHA256Hex(m.Files[p]) {
			add("files[%q]: %q is not a lowercase hex SHA-256", p, m.Files[p])
		}
	}
	if r := m.Release; r != nil {
		if r.Replaces < 0 {
			add("release.replaces %d is negative", r.Replaces)
		}
		if r.Replaces != 0 && r.Replaces <= m.Revision {
			add("release.replaces %d must be above revision %d (a rollback replaces a newer revision)", r.Replaces, m.Revision)
		}
	}
	if len(probs) > 0 {
		return errs.Errorf("%w: manifest: %s", ErrInvalid, strings.Join(probs, "; "))
	}
	return nil
}

// problems collects Validate's findings. add stays out of line: inlined
// at each of Validate's nineteen checks it cost the filter module 5 kB.
type problems []string

//go:noinline
func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// CheckPath reports whether p may name a file inside a bundle: a relative,
// clean, slash-separated path of printable ASCII, not one of the reserved
// manifest names. Anything else could escape an extraction directory or be
// read differently by another tar implementation.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPathLen:
		return errs.Errorf("path %.40q... longer than %d bytes", p, MaxPathLen)
	case p == ManifestPath || p == SignaturePath:
		return errs.Errorf("path %q is reserved", p)
	case p[0] == '/':
		return errs.Errorf("path %q is absolute", p)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c >= 0x7f || c == '\\' || c == ':' {
			return errs.Errorf("path %q contains byte %#x", p, c)
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return errs.Errorf("path %q has an empty segment", p)
		case ".", "..":
			return errs.Errorf("path %q contains %q", p, seg)
		}
	}
	return nil
}

func checkName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 128 {
		return errs.Errorf("%d bytes, want at most 128", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return errs.Errorf("%q: only letters, digits, '-', '_' and '.' are allowed", s)
		}
	}
	return nil
}

func checkTime(t time.Time) error {
	switch {
	case t.IsZero():
		return errors.New("missing")
	case t.Location() != time.UTC:
		return errs.Errorf("%s is not UTC", t.Format(time.RFC3339))
	case t.Nanosecond() != 0:
		return errs.Errorf("%s has fractional seconds", t.Format(time.RFC3339Nano))
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
