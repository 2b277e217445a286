// Package tokens is the control plane's token service: per-tenant, per-region
// Ed25519 signing keys with rotation, the JWKS that nodes and third parties
// verify with, short-lived agent tokens, RFC 8693 token exchange gated by the
// tenant's policy (may_delegate_to), one-time override tokens for approvals,
// and revocations plus a per-tenant kill switch for the live state.
//
// Tokens are minted with package token, the same code whose verifier runs in
// the filter, so whatever this service issues the data plane accepts.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/token"
)

// Defaults for Config.
const (
	DefaultTTL = 15 * time.Minute
	DefaultMax = time.Hour
	tokenSkew  = token.DefaultSkew
)

// DelegationPolicy answers from the tenant's published policy whether agent
// from may let agent to act for it (may_delegate_to). The policy store
// implements it; ParseDelegation reads the answer from compiled data.json.
//
// # Notes
// Safe for concurrent use. An error refuses the exchange (fail closed).
type DelegationPolicy interface {
	DelegationAllowed(ctx context.Context, tenant, from, to string) (bool, error)
}

// Config configures a Service. DB, Issuer and KeyEncryptionKey are required.
type Config struct {
	DB *db.DB
	// Issuer is the iss claim of every token minted here.
	Issuer string
	// KeyEncryptionKey (KEKSize bytes, from the operator: a 0600 file or a
	// secret manager, never the database) seals the signing keys at rest.
	KeyEncryptionKey []byte
	// DefaultRegion names the signing key used when a request names no
	// region, and for override tokens.
	DefaultRegion string
	// DefaultTTL and MaxTTL bound agent token lifetimes (defaults 15m, 1h).
	// A retired key stays in the JWKS for MaxTTL plus clock skew.
	DefaultTTL, MaxTTL time.Duration
	// RotateAfter rotates an active key on first use after this age; zero
	// rotates only on request.
	RotateAfter time.Duration
	// OnKeysChanged, when set, is called after a tenant's key set changed
	// (a key created or rotated) so the server can push the new JWKS to
	// nodes at once instead of waiting for their next fetch.
	OnKeysChanged func(ctx context.Context, tenant string)
	// OnRevocationsChanged, when set, is called after a tenant's
	// revocations or kill switch changed, so live state is re-signed and
	// pushed at once (a kill switch must not wait for the next refresh).
	OnRevocationsChanged func(ctx context.Context, tenant string)
	// Delegation gates token exchange; nil refuses every exchange.
	Delegation DelegationPolicy
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DB == nil {
		errs = append(errs, errors.New("DB is required"))
	}
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if len(c.KeyEncryptionKey) != KEKSize {
		errs = append(errs, fmt.Errorf("KeyEncryptionKey has %d bytes, want %d", len(c.KeyEncryptionKey), KEKSize))
	}
	if c.DefaultTTL < 0 || c.MaxTTL < 0 || c.RotateAfter < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.DefaultTTL > 0 && c.MaxTTL > 0 && c.DefaultTTL > c.MaxTTL {
		errs = append(errs, fmt.Errorf("DefaultTTL %s exceeds MaxTTL %s", c.DefaultTTL, c.MaxTTL))
	}
	if c.Registerer == nil {
		errs = append(errs, errors.New("a prometheus registerer is required"))
	}
	return errors.Join(errs...)
}

type metrics struct {
	minted      *prometheus.CounterVec
	refused     *prometheus.CounterVec
	revocations *prometheus.CounterVec
	rotations   prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		minted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_tokens_minted_total", Help: "Tokens minted, by kind (agent, exchange, override).",
		}, []string{"kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_token_exchange_refused_total", Help: "Token exchanges refused, by error code.",
		}, []string{"code"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_token_revocations_total", Help: "Revocations recorded, by kind (agent, jti).",
		}, []string{"kind"}),
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aegis_token_key_rotations_total", Help: "Signing key rotations.",
		}),
	}
	for _, c := range []prometheus.Collector{m.minted, m.refused, m.revocations, m.rotations} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// Service is the token service. Safe for concurrent use.
type Service struct {
	cfg  Config
	keys *keyStore
	m    *metrics
	log  *slog.Logger
}

// New migrates the token tables and returns the service.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("token service config: %w", err)
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMax
	}
	if cfg.DefaultTTL > cfg.MaxTTL {
		cfg.DefaultTTL = cfg.MaxTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.DB.Migrate(ctx, "tokens", migrationsFS()); err != nil {
		return nil, err
	}
	ks, err := newKeyStore(cfg.DB, cfg.KeyEncryptionKey)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, keys: ks, m: m, log: cfg.Logger}, nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// publishFor is how long a retired key must stay published: until every
// token it signed has expired, with room for verifiers' clock skew.
func (s *Service) publishFor() time.Duration { return s.cfg.MaxTTL + tokenSkew }

// Rotate makes a new active key for (tenant, region) and keeps the old one
// published until its tokens have expired. It returns the new kid.
func (s *Service) Rotate(ctx context.Context, tenant, region string) (string, error) {
	kid, err := s.keys.rotate(ctx, tenant, s.region(region), s.now(), s.publishFor())
	if err != nil {
		return "", err
	}
	s.m.rotations.Inc()
	s.keysChanged(ctx, tenant)
	s.log.InfoContext(ctx, "token key rotated", "tenant", tenant, "region", s.region(region), "kid", kid)
	return kid, nil
}

// activeKey returns the signing key of (tenant, region), reporting a new
// key to OnKeysChanged.
func (s *Service) activeKey(ctx context.Context, tenant, region string) (signingKey, error) {
	k, err := s.keys.active(ctx, tenant, s.region(region), s.now(), s.cfg.RotateAfter, s.publishFor())
	if err == nil && k.fresh {
		s.keysChanged(ctx, tenant)
	}
	return k, err
}

func (s *Service) keysChanged(ctx context.Context, tenant string) {
	if s.cfg.OnKeysChanged != nil {
		s.cfg.OnKeysChanged(ctx, tenant)
	}
}

func (s *Service) revocationsChanged(ctx context.Context, tenant string) {
	if s.cfg.OnRevocationsChanged != nil {
		s.cfg.OnRevocationsChanged(ctx, tenant)
	}
}

func (s *Service) region(r string) string {
	if r == "" {
		return s.cfg.DefaultRegion
	}
	return r
}

// KeySet returns the keys that verify the tenant's tokens now.
func (s *Service) KeySet(ctx context.Context, tenant string) (*token.KeySet, error) {
	return s.keys.keySet(ctx, tenant, s.now())
}

// Register adds the service's routes to mux. The JWKS routes are public;
// /v1/tokens/exchange authenticates the tokens in its body (a principal,
// when present, may name the actor itself); every other route needs a
// principal.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/jwks.json", s.handleJWKS)
	mux.HandleFunc("GET /v1/tenants/{tenant}/jwks", s.handleJWKS)
	mux.HandleFunc("POST /v1/tokens/agent", s.handleMint)
	mux.HandleFunc("POST /v1/tokens/exchange", s.handleExchange)
	mux.HandleFunc("POST /v1/tenants/{tenant}/keys/rotate", s.handleRotate)
	mux.HandleFunc("GET /v1/tenants/{tenant}/revocations", s.handleListRevocations)
	mux.HandleFunc("POST /v1/tenants/{tenant}/revocations", s.handleRevoke)
	mux.HandleFunc("DELETE /v1/tenants/{tenant}/revocations/{kind}/{value}", s.handleUnrevoke)
	mux.HandleFunc("GET /v1/tenants/{tenant}/kill-switch", s.handleGetKillSwitch)
	mux.HandleFunc("PUT /v1/tenants/{tenant}/kill-switch", s.handleSetKillSwitch)
}

// JWKS returns the tenant's published keys as a JWKS document, the bytes
// GET /v1/tenants/{tenant}/jwks serves. A tenant without a key gets its
// default-region key created first, so the document always holds at least
// one key (verifiers refuse an empty set).
func (s *Service) JWKS(ctx context.Context, tenant string) ([]byte, error) {
	if !validName(tenant) {
		return nil, fmt.Errorf("JWKS: invalid tenant %q", tenant)
	}
	now := s.now()
	pk, err := s.keys.published(ctx, tenant, now)
	if err != nil {
		return nil, err
	}
	if len(pk) == 0 {
		if _, err := s.activeKey(ctx, tenant, ""); err != nil {
			return nil, err
		}
		if pk, err = s.keys.published(ctx, tenant, now); err != nil {
			return nil, err
		}
	}
	return token.MarshalBoundJWKS(bound(pk)...)
}

// bound lists published keys with their tenants: every key the service
// publishes signs one tenant's tokens only, and says so in the JWKS, so
// that a gateway serving several tenants refuses a token whose tenant is
// not its signing key's.
func bound(pk []publishedKey) []token.BoundKey {
	out := make([]token.BoundKey, len(pk))
	for i, k := range pk {
		out[i] = token.BoundKey{Tenant: k.tenant, Pub: k.pub}
	}
	return out
}
