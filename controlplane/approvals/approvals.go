// Package approvals runs the human-approval queue for calls a policy marks
// approval_needed: nodes create approvals, related requests are batched, an
// approver (never the agent's own owner when the policy forbids it) approves
// or denies, pending approvals expire, and an approval yields one one-time
// override token, handed once to the requesting agent and redeemable exactly
// once across the fleet.
package approvals

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/webhook"
	"github.com/aegis-mesh/aegis/token"
)

// NotApproverError is ErrNotApprover with the approvers the policy named.
type NotApproverError struct{ Approvers []string }

func (e *NotApproverError) Error() string {
	return ErrNotApprover.Error() + " (" + strings.Join(e.Approvers, ", ") + ")"
}

// Is makes errors.Is(err, ErrNotApprover) hold.
func (e *NotApproverError) Is(target error) bool { return target == ErrNotApprover }

// Statuses of an approval.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusDenied   = "denied"
	StatusExpired  = "expired"
)

// Sentinels callers branch on; the handlers map them to API.md codes.
var (
	ErrNotFound        = errors.New("approval not found")
	ErrExpired         = errors.New("expired")
	ErrAlreadyDecided  = errors.New("approval already decided")
	ErrSelfApproval    = errors.New("the agent's owner may not approve its request")
	ErrNotApprover     = errors.New("the approver is not one the policy names")
	ErrAlreadyRedeemed = errors.New("override already redeemed")
	ErrMismatch        = errors.New("override does not match the request")
	ErrInvalidOverride = errors.New("override token invalid")
)

// Overrides mints and verifies one-time override tokens with the tenant's
// token keys. *tokens.Service implements it.
type Overrides interface {
	// MintOverride signs c (iss and jti are set by the implementation) and
	// returns the token and its jti.
	MintOverride(ctx context.Context, c token.OverrideClaims) (tok, jti string, err error)
	// VerifyOverride checks signature, type, issuer, tenant and clock.
	VerifyOverride(ctx context.Context, tenant, tok string, now time.Time) (*token.OverrideClaims, error)
}

// OwnerPolicy answers from the tenant's published policy who owns an agent
// (the agent's owner field) and whether the policy forbids that owner from
// approving the agent's requests. The policy store implements it.
//
// # Notes
// Safe for concurrent use. An error refuses the decision (fail closed).
type OwnerPolicy interface {
	AgentOwner(ctx context.Context, tenant, agent string) (owner string, forbidSelfApproval bool, err error)
}

// AgentTokens verifies an agent token a node forwards on behalf of the
// agent whose request it holds. *tokens.Service implements it.
type AgentTokens interface {
	AgentPrincipal(ctx context.Context, tok string) (auth.Principal, error)
}

// Notifier receives approval events; *webhook.Notifier implements it.
//
// A Notifier whose outbox is in the service's database gets the events of
// a change through Enqueue, inside the transaction that makes the change,
// and a Wake once it commits: the approval and its notifications are stored
// together or not at all. Notify is used only for a Notifier without a
// database (Outbox nil): it gets the events after the commit and keeps them
// in memory, so a stop before delivery loses them.
type Notifier interface {
	// Outbox is the database the outbox lives in; nil when there is none.
	Outbox() *db.DB
	Enqueue(ctx context.Context, tx *sql.Tx, evs ...webhook.Event) error
	Wake()
	// Notify must not block.
	Notify(ev webhook.Event)
}

// Defaults for Config.
const (
	DefaultExpiry      = 15 * time.Minute
	DefaultMaxExpiry   = 24 * time.Hour
	DefaultOverrideTTL = 5 * time.Minute
	DefaultSweepEvery  = 5 * time.Second
)

// Config configures a Service. DB, Overrides, Owners and Registerer are
// required.
type Config struct {
	DB        *db.DB
	Overrides Overrides
	Owners    OwnerPolicy
	// Agents lets a node poll an approval for the agent whose request it
	// holds (header x-aegis-agent-token) and receive the override in the
	// agent's place; nil: nodes only see the status.
	Agents AgentTokens
	// Notifier is told about new, decided and expired approvals; nil:
	// nobody. An outbox it has must be in DB.
	Notifier Notifier
	// DefaultExpiry applies when a request has no expires_in; MaxExpiry
	// caps it.
	DefaultExpiry, MaxExpiry time.Duration
	// OverrideTTL is the lifetime of an override token from its delivery.
	OverrideTTL time.Duration
	// SweepEvery is the period of Run's expiry sweep.
	SweepEvery time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DB == nil {
		errs = append(errs, errors.New("DB is required"))
	}
	if c.Overrides == nil {
		errs = append(errs, errors.New("overrides (the token service) are required"))
	}
	if c.Owners == nil {
		errs = append(errs, errors.New("an owner policy is required"))
	}
	if c.Registerer == nil {
		errs = append(errs, errors.New("a prometheus registerer is required"))
	}
	if c.Notifier != nil && c.DB != nil {
		// The outbox rows are written in the approval's own transaction,
		// which only exists on DB.
		if o := c.Notifier.Outbox(); o != nil && o != c.DB {
			errs = append(errs, fmt.Errorf("the notifier's outbox is in %s, not in the approvals database %s", o.DSN, c.DB.DSN))
		}
	}
	if c.DefaultExpiry < 0 || c.MaxExpiry < 0 || c.OverrideTTL < 0 || c.SweepEvery < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}

type metrics struct {
	volume      *prometheus.CounterVec
	decideTime  *prometheus.HistogramVec
	expiries    prometheus.Counter
	redemptions *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		volume: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_approvals_total",
			Help: "Approval requests by outcome: created, batched (joined a pending approval), approved, denied, expired.",
		}, []string{"outcome"}),
		decideTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aegis_approval_decision_seconds",
			Help:    "Time from an approval's creation to its decision, by decision (approved, denied).",
			Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 14400, 86400},
		}, []string{"decision"}),
		expiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aegis_approval_expiries_total", Help: "Approvals that expired undecided.",
		}),
		redemptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_override_redemptions_total", Help: "Override redemptions by result (ok, already_redeemed, mismatch, expired, invalid_token, forbidden).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.volume, m.decideTime, m.expiries, m.redemptions} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("register approval metrics: %w", err)
		}
	}
	return m, nil
}

// Service is the approval service. Safe for concurrent use.
type Service struct {
	cfg Config
	m   *metrics
	log *slog.Logger
	// outbox: the notifier takes events in the change's transaction.
	outbox bool
}

// New migrates the approval tables and returns the service.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("approvals config: %w", err)
	}
	if cfg.DefaultExpiry == 0 {
		cfg.DefaultExpiry = DefaultExpiry
	}
	if cfg.MaxExpiry == 0 {
		cfg.MaxExpiry = DefaultMaxExpiry
	}
	if cfg.OverrideTTL == 0 {
		cfg.OverrideTTL = DefaultOverrideTTL
	}
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = DefaultSweepEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.DB.Migrate(ctx, "approvals", migrationsFS()); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, m: m, log: cfg.Logger, outbox: cfg.Notifier != nil && cfg.Notifier.Outbox() != nil}, nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// Run expires pending approvals every SweepEvery until ctx ends. Reads also
// expire what they touch, so a stopped sweeper delays only the expiry
// notifications of approvals nobody looks at.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "approval expiry sweep", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// addEvent appends to evs the event of type typ about a, as of now; with
// no Notifier there is nobody to tell and evs stays as it is.
func (s *Service) addEvent(evs []webhook.Event, a *Approval, typ string, now time.Time) []webhook.Event {
	if s.cfg.Notifier == nil {
		return evs
	}
	return append(evs, webhook.Event{
		Type: typ, Time: now, Tenant: a.Tenant, ApprovalID: a.ID, Status: a.Status, Agent: a.Agent, Chain: a.Chain,
		Tool: a.Tool, Reasons: a.Reasons, Approvers: a.Approvers, RequestSummary: a.RequestSummary, Batched: a.Batched,
		ExpiresAt: a.ExpiresAt, DecidedBy: a.DecidedBy,
	})
}

// record writes evs into the notifier's outbox inside tx, the transaction
// of the change they report. An error fails that transaction: a change
// that cannot be announced is not made. For a Notifier without a database
// nothing happens here; announce hands it the events after the commit.
func (s *Service) record(ctx context.Context, tx *sql.Tx, evs []webhook.Event) error {
	if !s.outbox || len(evs) == 0 {
		return nil
	}
	if err := s.cfg.Notifier.Enqueue(ctx, tx, evs...); err != nil {
		return fmt.Errorf("notification outbox: %w", err)
	}
	return nil
}

// announce runs once the change behind evs committed: it wakes the
// outbox's workers, or queues the events in memory for a Notifier without
// a database.
func (s *Service) announce(evs []webhook.Event) {
	switch {
	case len(evs) == 0:
	case s.outbox:
		s.cfg.Notifier.Wake()
	default:
		for _, ev := range evs {
			s.cfg.Notifier.Notify(ev)
		}
	}
}
