// Package livestate builds, signs and serves each tenant's live state (the
// state package's document: kill switch, revocations, remaining budgets)
// from its sources: revocations and the kill switch from the tokens
// service, spend from the audit store, budgets from the published policy.
//
// The last signed document of every tenant is persisted with its seq, so
// seq keeps increasing across restarts and replicas: a replica signs a new
// document only through a compare-and-set on the stored seq, and a loser
// adopts the winner's document.
package livestate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/signing"
	"github.com/aegis-mesh/aegis/state"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Revocations is the tokens service's view (see the control-plane seams).
type Revocations interface {
	LiveRevocations(ctx context.Context, tenant string) (agents, jtis []string, killSwitch bool, err error)
}

// Spend is the audit store's view: USD spent per agent on a UTC day.
type Spend interface {
	SpentToday(ctx context.Context, tenant string, day time.Time) (map[string]float64, error)
}

// Budgets gives the per-agent daily budgets of the tenant's policy.
type Budgets interface {
	Budgets(ctx context.Context, tenant string) (map[string]float64, error)
}

// Config builds a Builder. Revocations and Spend may be nil until their
// services exist: then nothing is revoked and budgets are not reduced.
type Config struct {
	DB          *db.DB
	Ring        *signing.Ring // state signing keys
	Revocations Revocations
	Spend       Spend
	Budgets     Budgets
	// Interval is how often the facts are re-read; a new document is
	// signed when they changed, or when the last one has used up half of
	// Validity, its lifetime (so nodes always hold a valid one without a
	// new seq, and a new push, every interval).
	Interval, Validity time.Duration
	Now                func() time.Time
}

// Signed is a tenant's current signed state.
type Signed struct {
	Doc      state.Document
	Envelope []byte // the JSON envelope nodes receive
}

// Builder keeps live state current.
type Builder struct{ cfg Config }

// New migrates the live-state table and returns a builder.
func New(ctx context.Context, cfg Config) (*Builder, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := cfg.DB.Migrate(ctx, "livestate", sub); err != nil {
		return nil, err
	}
	if cfg.Interval <= 0 || cfg.Validity < 2*cfg.Interval {
		return nil, fmt.Errorf("live state: validity %v must be at least twice the interval %v", cfg.Validity, cfg.Interval)
	}
	return &Builder{cfg: cfg}, nil
}

func (b *Builder) now() time.Time {
	if b.cfg.Now != nil {
		return b.cfg.Now()
	}
	return time.Now()
}

// content gathers the facts of one tenant; seq and times are set later.
func (b *Builder) content(ctx context.Context, tenant string, now time.Time) (state.Document, error) {
	d := state.Document{Tenant: tenant, RevokedAgents: []string{}, RevokedJTIs: []string{}, Budgets: map[string]float64{}}
	if b.cfg.Revocations != nil {
		agents, jtis, kill, err := b.cfg.Revocations.LiveRevocations(ctx, tenant)
		if err != nil {
			return d, fmt.Errorf("revocations of %s: %w", tenant, err)
		}
		d.RevokedAgents, d.RevokedJTIs, d.KillSwitch = agents, jtis, kill
	}
	budgets, err := b.cfg.Budgets.Budgets(ctx, tenant)
	if err != nil {
		return d, fmt.Errorf("budgets of %s: %w", tenant, err)
	}
	var spent map[string]float64
	if b.cfg.Spend != nil && len(budgets) > 0 {
		if spent, err = b.cfg.Spend.SpentToday(ctx, tenant, now.UTC()); err != nil {
			return d, fmt.Errorf("spend of %s: %w", tenant, err)
		}
	}
	for agent, limit := range budgets {
		d.Budgets[agent] = Remaining(limit, spent[agent])
	}
	return d, nil
}

// Remaining is what is left of limit after spent, in whole micro-dollars
// (never negative, never more than limit), so float noise in the sum of
// audit costs cannot grant more than the policy allows.
func Remaining(limit, spent float64) float64 {
	if math.IsNaN(spent) || spent < 0 {
		spent = 0
	}
	// Spend rounds up to the next micro-dollar (with a tolerance for
	// binary fractions such as 0.1), the limit to the nearest one.
	limitMicro := math.Round(limit * 1e6)
	spentMicro := math.Ceil(spent*1e6 - 1e-3)
	return max(0, limitMicro-spentMicro) / 1e6
}

func digest(d state.Document) (string, error) {
	d.Seq, d.IssuedAt, d.ExpiresAt = 1, time.Unix(0, 0), time.Unix(1, 0)
	enc, err := state.Encode(d)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(enc)
	return hex.EncodeToString(sum[:]), nil
}

type stored struct {
	seq      int64
	digest   string
	issued   time.Time
	envelope []byte
}

func (b *Builder) load(ctx context.Context, tenant string) (stored, bool, error) {
	var s stored
	var issued int64
	err := b.cfg.DB.QueryRowContext(ctx, `SELECT seq, content_digest, issued_at, envelope FROM live_state WHERE tenant = $1`, tenant).
		Scan(&s.seq, &s.digest, &issued, &s.envelope)
	if errors.Is(err, sql.ErrNoRows) {
		return stored{}, false, nil
	}
	if err != nil {
		return stored{}, false, fmt.Errorf("read live state of %s: %w", tenant, err)
	}
	s.issued = db.FromMicros(issued)
	return s, true, nil
}

// Refresh recomputes tenant's state and signs a new document (next seq)
// when the facts changed or the last one is past half its validity.
// changed reports whether a new document was stored by this call.
func (b *Builder) Refresh(ctx context.Context, tenant string) (Signed, bool, error) {
	const attempts = 5
	for attempt := 0; ; attempt++ {
		now := b.now().UTC().Truncate(time.Second)
		d, err := b.content(ctx, tenant, now)
		if err != nil {
			return Signed{}, false, err
		}
		dg, err := digest(d)
		if err != nil {
			return Signed{}, false, fmt.Errorf("live state of %s: %w", tenant, err)
		}
		cur, ok, err := b.load(ctx, tenant)
		if err != nil {
			return Signed{}, false, err
		}
		// Another replica's fresh document is as good as ours when we keep
		// losing the race; the next refresh signs our facts.
		if ok && (cur.digest == dg || attempt == attempts) && now.Sub(cur.issued) < b.cfg.Validity/2 {
			s, err := b.open(cur.envelope)
			return s, false, err
		}
		d.Seq = cur.seq + 1
		d.IssuedAt, d.ExpiresAt = now, now.Add(b.cfg.Validity)
		env, err := state.Sign(b.cfg.Ring.Current().Private(), d)
		if err != nil {
			return Signed{}, false, fmt.Errorf("sign live state of %s: %w", tenant, err)
		}
		var res sql.Result
		if ok {
			res, err = b.cfg.DB.ExecContext(ctx, `UPDATE live_state SET seq = $2, content_digest = $3, issued_at = $4, expires_at = $5, envelope = $6 WHERE tenant = $1 AND seq = $7`,
				tenant, d.Seq, dg, db.Micros(d.IssuedAt), db.Micros(d.ExpiresAt), env, cur.seq)
		} else {
			res, err = b.cfg.DB.ExecContext(ctx, `INSERT INTO live_state (tenant, seq, content_digest, issued_at, expires_at, envelope) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant) DO NOTHING`,
				tenant, d.Seq, dg, db.Micros(d.IssuedAt), db.Micros(d.ExpiresAt), env)
		}
		if err != nil {
			return Signed{}, false, fmt.Errorf("store live state of %s: %w", tenant, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return Signed{Doc: d, Envelope: env}, true, nil
		}
		// Another replica stored a document first; recompute and look again.
		if attempt == attempts {
			return Signed{}, false, fmt.Errorf("live state of %s: seq kept moving under concurrent refreshes", tenant)
		}
	}
}

// Current returns the stored document, refreshing first when there is
// none or it is older than the interval.
func (b *Builder) Current(ctx context.Context, tenant string) (Signed, error) {
	cur, ok, err := b.load(ctx, tenant)
	if err != nil {
		return Signed{}, err
	}
	if ok && b.now().Sub(cur.issued) < b.cfg.Interval {
		return b.open(cur.envelope)
	}
	s, _, err := b.Refresh(ctx, tenant)
	return s, err
}

// open reads a stored envelope back, verifying it with the trusted state
// keys so that a row tampered with in the database is never served.
func (b *Builder) open(env []byte) (Signed, error) {
	lastErr := errors.New("no trusted state key")
	for _, pub := range b.cfg.Ring.PublicKeys() {
		d, err := state.Open(env, pub)
		if err == nil {
			return Signed{Doc: *d, Envelope: env}, nil
		}
		lastErr = err
	}
	return Signed{}, fmt.Errorf("stored live state: %w", lastErr)
}
