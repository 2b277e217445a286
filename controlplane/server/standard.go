package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/approvals"
	"github.com/aegis-mesh/aegis/controlplane/audit"
	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/config"
	"github.com/aegis-mesh/aegis/controlplane/nodes"
	"github.com/aegis-mesh/aegis/controlplane/notify"
	"github.com/aegis-mesh/aegis/controlplane/oteltrace"
	"github.com/aegis-mesh/aegis/controlplane/signing"
	"github.com/aegis-mesh/aegis/controlplane/tokens"
	"github.com/aegis-mesh/aegis/controlplane/webhook"
	"github.com/aegis-mesh/aegis/token"
)

// StandardOptions configure the services Standard mounts.
type StandardOptions struct {
	// TokenKEKPath is the 32-byte key-encryption key sealing agent-token
	// signing keys (raw, hex or base64); default <data-dir>/keys/token.kek,
	// generated (0600) when missing. Keep it out of the database's backups.
	TokenKEKPath string
	// EvidenceKeyPath is the Ed25519 key signing audit checkpoints and
	// evidence packs; default <data-dir>/keys/evidence.key, generated.
	EvidenceKeyPath string
	// Issuer is the iss of agent tokens (default "aegis").
	Issuer string
	// DefaultRegion names the agent-token key used without a region
	// claim (default "global").
	DefaultRegion string
	// CheckpointEvery is the period of signed audit chain checkpoints
	// (default one minute).
	CheckpointEvery time.Duration
}

// Standard returns a Config.Extend that mounts the tokens, audit and
// approvals services on the control plane's store and connects them: agent
// tokens authenticate API calls, revocations and spend feed live state,
// the tenant's published policy answers delegation and agent ownership,
// node keys check audit batches, and a key rotation pushes the new JWKS.
func Standard(o StandardOptions) func(ctx context.Context, s *Server) (Extensions, error) {
	return func(ctx context.Context, s *Server) (Extensions, error) {
		dir := filepath.Join(s.settings.DataDir, "keys")
		if o.TokenKEKPath == "" {
			o.TokenKEKPath = filepath.Join(dir, "token.kek")
		}
		if o.EvidenceKeyPath == "" {
			o.EvidenceKeyPath = filepath.Join(dir, "evidence.key")
		}
		if o.Issuer == "" {
			o.Issuer = "aegis"
		}
		if o.DefaultRegion == "" {
			o.DefaultRegion = "global"
		}
		if o.CheckpointEvery <= 0 {
			o.CheckpointEvery = time.Minute
		}
		kek, err := loadOrCreateKEK(o.TokenKEKPath)
		if err != nil {
			return Extensions{}, err
		}
		evKey, _, err := signing.LoadOrCreate(o.EvidenceKeyPath)
		if err != nil {
			return Extensions{}, fmt.Errorf("evidence key: %w", err)
		}
		tok, err := tokens.New(ctx, tokens.Config{DB: s.DB, Issuer: o.Issuer, KeyEncryptionKey: kek, DefaultRegion: o.DefaultRegion,
			Delegation: s.Policy, Registerer: s.registry, Logger: s.log,
			OnKeysChanged:        func(ctx context.Context, tenant string) { s.announce(ctx, tenant, notify.KindKeys) },
			OnRevocationsChanged: func(ctx context.Context, tenant string) { s.announce(ctx, tenant, notify.KindState) },
		})
		if err != nil {
			return Extensions{}, fmt.Errorf("tokens service: %w", err)
		}
		store, err := audit.OpenStore(ctx, s.DB)
		if err != nil {
			return Extensions{}, fmt.Errorf("audit store: %w", err)
		}
		var background []func(ctx context.Context)
		apprCfg := approvals.Config{DB: s.DB, Overrides: tok, Owners: s.Policy, Registerer: s.registry, Logger: s.log}
		if len(s.settings.Webhooks) > 0 {
			wh, err := newWebhooks(ctx, s)
			if err != nil {
				return Extensions{}, err
			}
			apprCfg.Notifier = wh
			background = append(background, wh.Run)
		}
		appr, err := approvals.New(ctx, apprCfg)
		if err != nil {
			return Extensions{}, fmt.Errorf("approvals service: %w", err)
		}
		spans, stopSpans, err := newSpanExporter(ctx, s)
		if err != nil {
			return Extensions{}, err
		}
		aud, err := audit.New(audit.Config{Store: store, Nodes: s.Nodes, IsUnknownNode: func(err error) bool { return errors.Is(err, nodes.ErrUnknownNode) },
			EvidenceKey: evKey.Private(), Bundles: s.Policy, Approvals: appr, Spans: spans, Registerer: s.registry, Logger: s.log})
		if err != nil {
			stopSpans(context.Background())
			return Extensions{}, fmt.Errorf("audit service: %w", err)
		}
		if spans != nil {
			// Background work ends only after the API drained, so every
			// span of an accepted batch is recorded before the flush.
			background = append(background, func(ctx context.Context) {
				<-ctx.Done()
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.settings.ShutdownTimeout)
				defer cancel()
				stopSpans(fctx)
			})
		}
		return Extensions{
			Services:       []Service{tok, aud, appr},
			Authenticators: []auth.Authenticator{tok.AuthenticateAgent},
			Revocations:    tok,
			Spend:          store,
			JWKS: func(ctx context.Context, tenant string) ([]byte, error) {
				ks, err := tok.KeySet(ctx, tenant)
				if err != nil {
					return nil, err
				}
				var bound []token.BoundKey
				for _, kid := range ks.KeyIDs() {
					if pub, ok := ks.Lookup(kid); ok {
						bound = append(bound, token.BoundKey{Tenant: ks.Tenant(kid), Pub: pub})
					}
				}
				if len(bound) == 0 {
					return nil, fmt.Errorf("tenant %s has no agent-token keys yet", tenant)
				}
				return token.MarshalBoundJWKS(bound...)
			},
			Background: append(background,
				appr.Run,
				func(ctx context.Context) { _ = aud.RunCheckpoints(ctx, o.CheckpointEvery) },
			),
		}, nil
	}
}

// newSpanExporter starts the OTLP exporter of decision spans when the
// settings name a collector. stop flushes and ends it; without a collector
// the sink is nil and stop does nothing.
func newSpanExporter(ctx context.Context, s *Server) (audit.SpanSink, func(context.Context), error) {
	st := s.settings
	if st.OTelEndpoint == "" {
		return nil, func(context.Context) {}, nil
	}
	host, path, insecure, err := st.OTelTarget()
	if err != nil {
		return nil, nil, err
	}
	exp, err := oteltrace.New(ctx, oteltrace.Config{Protocol: st.OTelProtocol, Endpoint: host, URLPath: path, Insecure: insecure})
	if err != nil {
		return nil, nil, fmt.Errorf("opentelemetry: %w", err)
	}
	s.log.Info("decision spans exported", "protocol", st.OTelProtocol, "collector", host, "tls", !insecure)
	return exp, func(ctx context.Context) {
		if err := exp.Shutdown(ctx); err != nil {
			s.log.Warn("flushing decision spans failed", "error", err.Error())
		}
	}, nil
}

// newWebhooks builds the approval notifier from the configured webhooks,
// reading each signing secret from its file.
func newWebhooks(ctx context.Context, s *Server) (*webhook.Notifier, error) {
	formats := map[string]webhook.Format{config.WebhookSlack: webhook.FormatSlack, config.WebhookTeams: webhook.FormatTeams,
		config.WebhookGeneric: webhook.FormatJSON}
	var targets []webhook.Target
	for _, w := range s.settings.Webhooks {
		secret, err := readSecret(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: %w", w.Name, err)
		}
		targets = append(targets, webhook.Target{Name: w.Name, URL: w.URL, Format: formats[w.Format], Secret: secret})
	}
	n, err := webhook.New(ctx, webhook.Config{Targets: targets, Registerer: s.registry, Logger: s.log, DB: s.DB})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// readSecret reads a small secret file, trimming surrounding whitespace.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, err)
	}
	if len(data) > 4096 {
		return nil, fmt.Errorf("secret file %s: larger than 4 KiB", path)
	}
	return bytes.TrimSpace(data), nil
}

// loadOrCreateKEK reads a 32-byte key (raw, hex or base64) or creates one
// (hex, mode 0600).
func loadOrCreateKEK(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, tokens.KEKSize)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("token KEK: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return loadOrCreateKEK(path)
		}
		if err != nil {
			return nil, fmt.Errorf("token KEK: %w", err)
		}
		_, werr := f.WriteString(hex.EncodeToString(k) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("token KEK %s: %w", path, werr)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token KEK: %w", err)
	}
	if len(data) == tokens.KEKSize {
		return data, nil
	}
	s := strings.TrimSpace(string(data))
	if k, err := hex.DecodeString(s); err == nil && len(k) == tokens.KEKSize {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == tokens.KEKSize {
		return k, nil
	}
	return nil, fmt.Errorf("token KEK %s: want %d bytes, raw, hex or base64", path, tokens.KEKSize)
}

// announce tells every replica that something of tenant changed; a lost
// notification is repaired by reconciliation, so failures are logged only.
func (s *Server) announce(ctx context.Context, tenant, kind string) {
	if err := s.Notifier.Notify(context.WithoutCancel(ctx), notify.Event{Tenant: tenant, Kind: kind}); err != nil {
		s.log.Warn("change notification failed", "tenant", tenant, "kind", kind, "error", err.Error())
	}
}
