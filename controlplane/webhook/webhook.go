// Package webhook tells people about approvals: it posts events to Slack,
// Microsoft Teams or any HTTP endpoint (generic JSON), signs every delivery
// with HMAC-SHA256 so receivers can check it came from this control plane,
// and retries failed deliveries with exponential backoff.
//
// Delivery is asynchronous. With a database (Config.DB), each event becomes
// one outbox row per target and workers deliver from the outbox, so nothing
// is lost when the control plane stops and replicas share the work (see
// outbox.go). A caller recording a state change writes those rows with
// Enqueue inside its own transaction, so the change and its notification
// commit together or not at all. Without a database, Notify keeps events in
// a bounded in-memory queue; a full queue drops the event and counts it.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aegis-mesh/aegis/controlplane/db"
)

// Header names of a delivery.
const (
	HeaderSignature = "X-Aegis-Signature" // sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
	HeaderTimestamp = "X-Aegis-Timestamp" // Unix seconds, decimal
	HeaderEvent     = "X-Aegis-Event"     // the event type
	HeaderDelivery  = "X-Aegis-Delivery"  // unique per event and target, the same across retries
)

// Format is the payload shape a target expects.
type Format string

const (
	FormatSlack Format = "slack" // Slack incoming webhook: text + mrkdwn blocks
	FormatTeams Format = "teams" // Teams workflow webhook: a message with an Adaptive Card
	FormatJSON  Format = "json"  // the Event itself
)

// Target is one webhook receiver.
type Target struct {
	Name   string
	URL    string
	Format Format
	// Secret keys the HMAC signature; at least 16 bytes.
	Secret []byte
}

// Event is one approval notification. It carries no parameter values:
// only what an approver needs to find the request in the control plane.
type Event struct {
	Type           string    `json:"type"` // approval.created, approval.approved, approval.denied, approval.expired
	Time           time.Time `json:"time"`
	Tenant         string    `json:"tenant"`
	ApprovalID     string    `json:"approval_id"`
	Status         string    `json:"status"`
	Agent          string    `json:"agent"`
	Chain          []string  `json:"chain,omitempty"`
	Tool           string    `json:"tool"`
	Reasons        []string  `json:"reasons,omitempty"`
	Approvers      []string  `json:"approvers,omitempty"`
	RequestSummary string    `json:"request_summary,omitempty"`
	Batched        int       `json:"batched"`
	ExpiresAt      time.Time `json:"expires_at"`
	DecidedBy      string    `json:"decided_by,omitempty"`
}

// Config configures a Notifier.
type Config struct {
	Targets []Target
	// Client sends deliveries; nil means a client with a 10 s timeout.
	Client *http.Client
	// MaxAttempts per event and target (default 5); BaseDelay doubles after
	// each failed attempt (default 1 s) up to MaxDelay (default 1 min).
	MaxAttempts         int
	BaseDelay, MaxDelay time.Duration
	// QueueSize bounds events waiting for delivery (default 1024); Workers
	// deliver in parallel (default 2).
	QueueSize, Workers int
	Registerer         prometheus.Registerer
	Logger             *slog.Logger
	Now                func() time.Time
	// DB, when set, holds the outbox (migrated by New): deliveries survive
	// a stop and are shared by replicas. PollEvery is how often workers
	// look for due rows besides being woken by Notify or Wake (default 1 s).
	DB        *db.DB
	PollEvery time.Duration
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i, t := range c.Targets {
		u, err := url.Parse(t.URL)
		switch {
		case t.Name == "" || names[t.Name]:
			errs = append(errs, fmt.Errorf("target %d: name empty or given twice", i))
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			errs = append(errs, fmt.Errorf("target %s: URL must be http(s) with a host", t.Name))
		case t.Format != FormatSlack && t.Format != FormatTeams && t.Format != FormatJSON:
			errs = append(errs, fmt.Errorf("target %s: format %q, want slack, teams or json", t.Name, t.Format))
		case len(t.Secret) < 16:
			errs = append(errs, fmt.Errorf("target %s: secret shorter than 16 bytes", t.Name))
		}
		names[t.Name] = true
	}
	if c.MaxAttempts < 0 || c.BaseDelay < 0 || c.MaxDelay < 0 || c.QueueSize < 0 || c.Workers < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	if c.Registerer == nil {
		errs = append(errs, errors.New("a prometheus registerer is required"))
	}
	return errors.Join(errs...)
}

// Notifier delivers events to every target. Safe for concurrent use.
type Notifier struct {
	cfg        Config
	out        *outbox
	wake       chan struct{}
	queue      chan job
	deliveries *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	once       sync.Once
}

type job struct {
	ev     Event
	target Target
	id     string
}

// New returns a Notifier, with its outbox migrated when cfg.DB is set;
// deliveries start when Run runs.
func New(ctx context.Context, cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook config: %w", err)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.BaseDelay == 0 {
		cfg.BaseDelay = time.Second
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = time.Minute
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 1024
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PollEvery == 0 {
		cfg.PollEvery = time.Second
	}
	n := &Notifier{
		cfg:   cfg,
		wake:  make(chan struct{}, 1),
		queue: make(chan job, cfg.QueueSize),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_webhook_deliveries_total", Help: "Webhook events by target and outcome (delivered, failed, dropped).",
		}, []string{"target", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_webhook_attempts_total", Help: "Webhook delivery attempts by target.",
		}, []string{"target"}),
	}
	for _, c := range []prometheus.Collector{n.deliveries, n.attempts} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	if cfg.DB != nil && len(cfg.Targets) > 0 {
		// A lease outlives any one attempt, so two workers never post the
		// same row at once unless one of them died.
		lease := 3 * cfg.Client.Timeout
		if lease < 30*time.Second {
			lease = 30 * time.Second
		}
		out, err := newOutbox(ctx, cfg.DB, lease)
		if err != nil {
			return nil, err
		}
		n.out = out
	}
	return n, nil
}

// outboxWriteTimeout bounds how long Notify waits for the database before
// keeping the event in memory instead.
const outboxWriteTimeout = 5 * time.Second

// ErrNoOutbox is Enqueue's answer on a Notifier that has targets but no
// database to keep their deliveries in.
var ErrNoOutbox = errors.New("webhook: no outbox (Config.DB unset)")

// jobs makes ev's deliveries, one per target, each with its own id.
func (n *Notifier) jobs(ev Event) []job {
	jobs := make([]job, 0, len(n.cfg.Targets))
	for _, t := range n.cfg.Targets {
		var b [12]byte
		_, _ = rand.Read(b[:])
		jobs = append(jobs, job{ev: ev, target: t, id: hex.EncodeToString(b[:])})
	}
	return jobs
}

// Outbox returns the database that holds the outbox, or nil when there is
// none (no Config.DB, or no targets) and Notify is the only way in.
// Enqueue's transaction must belong to this database.
func (n *Notifier) Outbox() *db.DB {
	if n == nil || n.out == nil {
		return nil
	}
	return n.out.db
}

// Enqueue writes evs into the outbox, one row per event and target, inside
// tx: the caller's transaction on the Outbox database, the one recording
// the change the events report. The rows commit or roll back with that
// change, so a crash can neither lose the notification of a committed
// change nor announce one that never committed. Nothing is delivered before
// the commit; call Wake after it so that workers need not wait for their
// next poll. When db.Tx retries its function, each attempt writes rows of
// its own and only the committed attempt's remain.
//
// With no targets there is nothing to write; without an outbox it returns
// ErrNoOutbox, and the caller's transaction should fail with it.
func (n *Notifier) Enqueue(ctx context.Context, tx *sql.Tx, evs ...Event) error {
	if len(n.cfg.Targets) == 0 || len(evs) == 0 {
		return nil
	}
	if n.out == nil {
		return ErrNoOutbox
	}
	if tx == nil {
		return errors.New("webhook: Enqueue needs the caller's transaction")
	}
	now := n.cfg.Now()
	for _, ev := range evs {
		if err := n.out.addTx(ctx, tx, n.jobs(ev), now); err != nil {
			return fmt.Errorf("%s of %s: %w", ev.Type, ev.ApprovalID, err)
		}
	}
	return nil
}

// Wake tells the outbox workers that rows were committed. It never blocks;
// without it they find the rows within PollEvery anyway.
func (n *Notifier) Wake() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Notify hands ev to every target outside any transaction of the caller.
// It is the delivery path of a Notifier without a database: the event waits
// in the bounded in-memory queue (Notify never blocks), is dropped and
// counted when that queue is full, and is lost if the process stops first.
// With an outbox, Notify writes ev there in a transaction of its own and
// keeps it in memory only if that write fails; nothing ties that write to
// the change being reported, so a caller recording a change should use
// Enqueue inside the change's transaction instead.
func (n *Notifier) Notify(ev Event) {
	jobs := n.jobs(ev)
	if n.out != nil && len(jobs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), outboxWriteTimeout)
		err := n.out.add(ctx, jobs, n.cfg.Now())
		cancel()
		if err == nil {
			n.Wake()
			return
		}
		n.cfg.Logger.Error("webhook outbox write failed, event kept in memory", "type", ev.Type, "approval_id", ev.ApprovalID, "err", err)
	}
	for _, j := range jobs {
		select {
		case n.queue <- j:
		default:
			n.deliveries.WithLabelValues(j.target.Name, "dropped").Inc()
			n.cfg.Logger.Warn("webhook queue full, event dropped", "target", j.target.Name, "type", ev.Type, "approval_id", ev.ApprovalID)
		}
	}
}

// Run delivers queued events until ctx ends. Call it once.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	n.once.Do(func() {
		if n.out != nil {
			for range n.cfg.Workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n.runOutbox(ctx)
				}()
			}
		}
		for range n.cfg.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case j := <-n.queue:
						n.deliver(ctx, j)
					}
				}
			}()
		}
	})
	wg.Wait()
}

// deliveredRetention is how long delivered outbox rows are kept.
const deliveredRetention = 7 * 24 * time.Hour

// runOutbox delivers due outbox rows one at a time until ctx ends,
// sleeping until woken (Wake) or PollEvery passes when none is due.
func (n *Notifier) runOutbox(ctx context.Context) {
	tick := time.NewTicker(n.cfg.PollEvery)
	defer tick.Stop()
	lastPrune := time.Time{}
	for ctx.Err() == nil {
		now := n.cfg.Now()
		if now.Sub(lastPrune) > time.Hour {
			lastPrune = now
			if err := n.out.prune(ctx, now.Add(-deliveredRetention)); err != nil && ctx.Err() == nil {
				n.cfg.Logger.Warn("webhook outbox", "err", err)
			}
		}
		// Not cancelled halfway: a claim the database made but this worker
		// never heard of would hold the row for a whole lease.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outboxWriteTimeout)
		c, err := n.out.claim(cctx, now)
		cancel()
		if err != nil && ctx.Err() == nil {
			n.cfg.Logger.Warn("webhook outbox", "err", err)
		}
		if c == nil {
			select {
			case <-ctx.Done():
			case <-n.wake:
			case <-tick.C:
			}
			continue
		}
		// One event has a row per target, and one Wake rouses one worker:
		// pass the wake on so an idle sibling claims the next row now
		// instead of at its next poll.
		n.Wake()
		n.deliverClaimed(ctx, c)
	}
}

// deliverClaimed makes one attempt at a claimed row and records the
// outcome: delivered, failed for good, or due again after a backoff.
func (n *Notifier) deliverClaimed(ctx context.Context, c *claimed) {
	var target Target
	found := false
	for _, t := range n.cfg.Targets {
		if t.Name == c.target {
			target, found = t, true
		}
	}
	record := func(status, lastErr string) {
		// A stop during the attempt must not leave the row's outcome
		// unwritten longer than the lease: write it even if ctx ended.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outboxWriteTimeout)
		defer cancel()
		var err error
		switch status {
		case "retry":
			err = n.out.retry(wctx, c.id, lastErr, n.cfg.Now().Add(n.retryWait(c.attempts)))
		default:
			err = n.out.finish(wctx, c.id, status, lastErr, n.cfg.Now())
		}
		if err != nil {
			n.cfg.Logger.Warn("webhook outbox", "err", err)
		}
	}
	if !found {
		n.deliveries.WithLabelValues(c.target, "failed").Inc()
		record("failed", "target no longer configured")
		return
	}
	j := job{ev: c.ev, target: target, id: c.id}
	body, err := Payload(target.Format, c.ev)
	if err != nil {
		n.deliveries.WithLabelValues(target.Name, "failed").Inc()
		record("failed", "payload: "+err.Error())
		return
	}
	n.attempts.WithLabelValues(target.Name).Inc()
	err = n.post(ctx, j, body)
	switch {
	case err == nil:
		n.deliveries.WithLabelValues(target.Name, "delivered").Inc()
		record("delivered", "")
	case errors.Is(err, errPermanent) || c.attempts >= n.cfg.MaxAttempts:
		n.deliveries.WithLabelValues(target.Name, "failed").Inc()
		n.cfg.Logger.Warn("webhook delivery failed", "target", target.Name, "type", c.ev.Type, "approval_id", c.ev.ApprovalID, "attempts", c.attempts, "err", err)
		record("failed", err.Error())
	default:
		record("retry", err.Error())
	}
}

// errPermanent marks a refusal retrying cannot fix (a 4xx other than 408
// and 429).
var errPermanent = errors.New("permanent failure")

func (n *Notifier) deliver(ctx context.Context, j job) {
	body, err := Payload(j.target.Format, j.ev)
	if err != nil {
		n.deliveries.WithLabelValues(j.target.Name, "failed").Inc()
		n.cfg.Logger.Error("webhook payload", "target", j.target.Name, "err", err)
		return
	}
	for attempt := 1; ; attempt++ {
		n.attempts.WithLabelValues(j.target.Name).Inc()
		err = n.post(ctx, j, body)
		if err == nil {
			n.deliveries.WithLabelValues(j.target.Name, "delivered").Inc()
			return
		}
		if errors.Is(err, errPermanent) || attempt >= n.cfg.MaxAttempts || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(n.retryWait(attempt)):
		}
	}
	n.deliveries.WithLabelValues(j.target.Name, "failed").Inc()
	n.cfg.Logger.Warn("webhook delivery failed", "target", j.target.Name, "type", j.ev.Type, "approval_id", j.ev.ApprovalID, "err", err)
}

// retryWait is how long to wait after failed attempt number attempt (from
// 1): BaseDelay doubled per earlier failure, at most MaxDelay, with full
// jitter so that many control planes do not retry in step.
func (n *Notifier) retryWait(attempt int) time.Duration {
	delay := n.cfg.BaseDelay << min(attempt-1, 30)
	if delay <= 0 || delay > n.cfg.MaxDelay {
		delay = n.cfg.MaxDelay
	}
	if j, err := rand.Int(rand.Reader, big.NewInt(int64(delay)+1)); err == nil {
		delay = time.Duration(j.Int64())
	}
	return delay
}

func (n *Notifier) post(ctx context.Context, j job, body []byte) error {
	ts := strconv.FormatInt(n.cfg.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.target.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "aegis-controlplane-webhook")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(j.target.Secret, ts, body))
	req.Header.Set(HeaderEvent, j.ev.Type)
	req.Header.Set(HeaderDelivery, j.id)
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	default:
		return fmt.Errorf("%w: receiver answered %d", errPermanent, resp.StatusCode)
	}
}

// Sign returns the signature header value for body sent at timestamp ts:
// "sha256=" and the hex HMAC-SHA256 of ts + "." + body under secret.
// Signing the timestamp lets receivers refuse replays of old deliveries.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery as a receiver should: the signature matches
// (constant time) and the timestamp is within tolerance of now.
func Verify(secret []byte, ts, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook: bad timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook: timestamp outside tolerance")
	}
	if !strings.HasPrefix(signature, "sha256=") || !hmac.Equal([]byte(signature), []byte(Sign(secret, ts, body))) {
		return errors.New("webhook: signature does not match")
	}
	return nil
}
