// Package distrib keeps the edge's runtime bundles: it takes them from
// files or from the control plane (GET /v1/tenants/{tenant}/bundle with
// ETag), verifies each one against the operator's bundle key before
// anything uses it, and caches the last good one per tenant on disk. At
// start the cache is verified again, so a bundle edited on disk is
// refused; the tenant then keeps nothing (the filter fails closed with
// its no_bundle behaviour) or whatever good bundle a source provides.
//
// The edge verifies what the filter verifies again: the filter holds the
// same trust root and is the enforcement point; distrib's checks decide
// what is cached and what is handed to the filter.
package distrib

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
)

// RuntimeLimits bound a runtime bundle, as the filter bounds it.
var RuntimeLimits = bundle.Limits{MaxArchiveBytes: 8 << 20, MaxTotalBytes: 32 << 20, MaxFileBytes: 16 << 20, MaxEntries: 64}

var tenantRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// Entry is one tenant's verified bundle.
type Entry struct {
	Raw      []byte
	Manifest bundle.Manifest
	ETag     string // hex sha256 of Raw
	// ToolHosts are the hosts the policy declares tools on (HTTP routes
	// and MCP endpoints), lower case without port.
	ToolHosts []string
}

// Store holds the current bundle of each tenant. It is safe for
// concurrent use.
type Store struct {
	pub      ed25519.PublicKey
	cacheDir string // "" disables the disk cache
	now      func() time.Time
	log      *slog.Logger

	mu      sync.RWMutex
	entries map[string]*Entry
	hosts   map[string]bool
	// onChange is called (outside mu) after a bundle is accepted.
	onChange func()
	refused  atomic.Int64
}

// Refused counts bundles refused since the store was made (cache entries
// at start included).
func (s *Store) Refused() int64 { return s.refused.Load() }

// NewStore returns a store verifying with pub and caching in cacheDir.
// It loads and re-verifies the cache; refused cache files are logged,
// counted in the returned error list, and left out.
func NewStore(pub ed25519.PublicKey, cacheDir string, log *slog.Logger, now func() time.Time) (*Store, []error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{pub: pub, cacheDir: cacheDir, now: now, log: log, entries: map[string]*Entry{}, hosts: map[string]bool{}}
	if cacheDir == "" {
		return s, nil
	}
	var errs []error
	ents, err := os.ReadDir(cacheDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return s, []error{fmt.Errorf("reading the bundle cache: %w", err)}
	}
	for _, e := range ents {
		tenant, ok := strings.CutSuffix(e.Name(), ".bundle")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(cacheDir, e.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("bundle cache %s: %w", e.Name(), err))
			continue
		}
		ent, err := s.verify(data, tenant)
		if err != nil {
			s.refused.Add(1)
			log.Error("cached bundle refused", "tenant", tenant, "err", err)
			errs = append(errs, fmt.Errorf("bundle cache %s: %w", e.Name(), err))
			continue
		}
		s.entries[tenant] = ent
	}
	s.rebuildHosts()
	return s, errs
}

// OnChange registers f, called after each accepted bundle.
func (s *Store) OnChange(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = f
}

// verify opens and checks a bundle: signature, validity window, kind,
// and (when tenant is set) its tenant.
func (s *Store) verify(data []byte, tenant string) (*Entry, error) {
	if len(s.pub) != ed25519.PublicKeySize {
		return nil, errors.New("no bundle public key: no bundle can be trusted")
	}
	b, err := bundle.Open(data, RuntimeLimits)
	if err != nil {
		return nil, err
	}
	if err := b.Verify(s.pub, s.now()); err != nil {
		return nil, err
	}
	if b.Manifest.Kind != bundle.KindRuntime {
		return nil, fmt.Errorf("bundle kind %q, want %q", b.Manifest.Kind, bundle.KindRuntime)
	}
	if !tenantRE.MatchString(b.Manifest.Tenant) {
		return nil, fmt.Errorf("bundle tenant %q is not a valid tenant name", b.Manifest.Tenant)
	}
	if tenant != "" {
		if err := bundle.CheckTenant(&b.Manifest, tenant); err != nil {
			return nil, err
		}
	}
	hosts, err := toolHosts(b)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return &Entry{Raw: data, Manifest: b.Manifest, ETag: hex.EncodeToString(sum[:]), ToolHosts: hosts}, nil
}

// Offer verifies data and, if it is a valid upgrade of the tenant's
// current bundle (bundle.CheckUpgrade: higher revision, identical
// re-delivery, or a signed rollback), makes it current and caches it.
// tenant may be empty to take it from the manifest. It reports whether
// the current bundle changed.
func (s *Store) Offer(data []byte, tenant string) (changed bool, err error) {
	defer func() {
		if err != nil {
			s.refused.Add(1)
		}
	}()
	ent, err := s.verify(data, tenant)
	if err != nil {
		return false, err
	}
	tenant = ent.Manifest.Tenant
	s.mu.Lock()
	cur := s.entries[tenant]
	if cur != nil && cur.ETag == ent.ETag {
		s.mu.Unlock()
		return false, nil
	}
	var curM *bundle.Manifest
	if cur != nil {
		curM = &cur.Manifest
	}
	if err := bundle.CheckUpgrade(curM, &ent.Manifest); err != nil {
		s.mu.Unlock()
		return false, err
	}
	if s.cacheDir != "" {
		if err := writeAtomic(s.cacheDir, tenant+".bundle", data); err != nil {
			s.mu.Unlock()
			return false, err
		}
	}
	s.entries[tenant] = ent
	s.rebuildHosts()
	f := s.onChange
	s.mu.Unlock()
	s.log.Info("bundle accepted", "tenant", tenant, "revision", ent.Manifest.Revision, "name", ent.Manifest.Name)
	if f != nil {
		f()
	}
	return true, nil
}

// Get returns the tenant's current bundle.
func (s *Store) Get(tenant string) (*Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.entries[tenant]
	return e, ok
}

// Bundles returns every tenant's current bundle bytes.
func (s *Store) Bundles() map[string][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string][]byte, len(s.entries))
	for t, e := range s.entries {
		out[t] = e.Raw
	}
	return out
}

// Tenants returns the tenants with a bundle, sorted.
func (s *Store) Tenants() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.entries))
	for t := range s.entries {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// IsToolHost reports whether any current policy declares tools on host
// (lower case, no port).
func (s *Store) IsToolHost(host string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hosts[host]
}

func (s *Store) rebuildHosts() {
	s.hosts = map[string]bool{}
	for _, e := range s.entries {
		for _, h := range e.ToolHosts {
			s.hosts[h] = true
		}
	}
}

// toolHosts reads the hosts a runtime bundle declares tools on: the keys
// of data.json's aegis_policy.http_routes and the hosts of its MCP
// endpoints (also listed in the manifest's policy object).
func toolHosts(b *bundle.Bundle) ([]string, error) {
	data, ok := b.Files["data.json"]
	if !ok {
		return nil, errors.New("bundle has no data.json")
	}
	var d struct {
		Policy struct {
			HTTPRoutes   map[string]json.RawMessage `json:"http_routes"`
			MCPEndpoints map[string]struct {
				Host string `json:"host"`
			} `json:"mcp_endpoints"`
		} `json:"aegis_policy"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("bundle data.json: %w", err)
	}
	set := map[string]bool{}
	for h := range d.Policy.HTTPRoutes {
		set[normHost(h)] = true
	}
	for _, e := range d.Policy.MCPEndpoints {
		if e.Host != "" {
			set[normHost(e.Host)] = true
		}
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	slices.Sort(out)
	return out, nil
}

func normHost(h string) string {
	h = strings.ToLower(h)
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.Trim(h, "[]")
}

func writeAtomic(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bundle cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return fmt.Errorf("bundle cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("bundle cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("bundle cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("bundle cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("bundle cache: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("bundle cache: %w", err)
	}
	defer d.Close()
	return d.Sync()
}

// Source delivers a tenant's bundle bytes. etag is what the caller has
// (hex sha256, or ""); a source answers changed=false when it has nothing
// newer. The REST fetcher implements it; an ADS/ECDS client can too.
type Source interface {
	Fetch(ctx context.Context, tenant, etag string) (data []byte, changed bool, err error)
}

// Poll asks src for each tenant every interval until ctx ends, offering
// what it returns. Failures are logged and retried at the next tick: the
// current bundle stays in force while the control plane is unreachable.
func (s *Store) Poll(ctx context.Context, src Source, tenants []string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.pollOnce(ctx, src, tenants)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Store) pollOnce(ctx context.Context, src Source, tenants []string) {
	for _, tenant := range tenants {
		etag := ""
		if e, ok := s.Get(tenant); ok {
			etag = e.ETag
		}
		data, changed, err := src.Fetch(ctx, tenant, etag)
		if err != nil {
			s.log.Warn("bundle fetch failed; keeping the current bundle", "tenant", tenant, "err", err)
			continue
		}
		if !changed {
			continue
		}
		if _, err := s.Offer(data, tenant); err != nil {
			s.log.Error("bundle from the control plane refused; keeping the current bundle", "tenant", tenant, "err", err)
		}
	}
}
