package livestate

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
	"github.com/aegis-mesh/aegis/controlplane/notify"
	"github.com/aegis-mesh/aegis/keys"
)

// Notifier announces a new state document to every replica.
type Notifier interface {
	Notify(ctx context.Context, e notify.Event) error
}

// Loop keeps every tenant's state fresh: a refresh every interval, and an
// immediate one when an event for the tenant arrives. onChange is called
// with each document this replica has not handed on before (its own or
// another replica's), so the xDS layer pushes it.
type Loop struct {
	Builder  *Builder
	Tenants  func(ctx context.Context) ([]string, error)
	Events   <-chan notify.Event
	Notifier Notifier
	OnChange func(tenant string, s Signed)
	Logger   *slog.Logger

	seen map[string]int64
}

// Run refreshes until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	l.seen = map[string]int64{}
	tick := time.NewTicker(l.Builder.cfg.Interval)
	defer tick.Stop()
	l.all(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			l.all(ctx)
		case e, ok := <-l.Events:
			if !ok {
				l.Events = nil
				continue
			}
			if e.Kind == notify.KindResync || e.Tenant == "" {
				l.all(ctx)
			} else {
				l.one(ctx, e.Tenant)
			}
		}
	}
}

func (l *Loop) all(ctx context.Context) {
	ts, err := l.Tenants(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.Logger.Warn("live state: listing tenants failed", "error", err.Error())
		}
		return
	}
	for _, t := range ts {
		l.one(ctx, t)
	}
}

func (l *Loop) one(ctx context.Context, tenant string) {
	s, changed, err := l.Builder.Refresh(ctx, tenant)
	if err != nil {
		if ctx.Err() == nil {
			l.Logger.Warn("live state refresh failed", "tenant", tenant, "error", err.Error())
		}
		return
	}
	if changed && l.Notifier != nil {
		if err := l.Notifier.Notify(ctx, notify.Event{Tenant: tenant, Kind: notify.KindState}); err != nil {
			l.Logger.Warn("live state notification failed", "tenant", tenant, "error", err.Error())
		}
	}
	if l.seen[tenant] != s.Doc.Seq {
		l.seen[tenant] = s.Doc.Seq
		if l.OnChange != nil {
			l.OnChange(tenant, s)
		}
	}
}

// Tenants checks that a tenant exists.
type Tenants interface {
	Tenant(ctx context.Context, name string) (auth.Tenant, error)
}

// Service serves GET /v1/tenants/{tenant}/state.
type Service struct {
	Builder *Builder
	Tenants Tenants
	Logger  *slog.Logger
}

// Register adds the route.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/tenants/{tenant}/state", s.get)
	mux.HandleFunc("GET /v1/keys/state", s.keys)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	// A shared gateway fetches the state of every tenant it serves.
	if _, ok := auth.RequireServing(w, r, tenant, auth.RoleNode, auth.RoleAdmin, auth.RoleAuditor); !ok {
		return
	}
	if _, err := s.Tenants.Tenant(r.Context(), tenant); errors.Is(err, auth.ErrUnknownTenant) {
		auth.WriteUnknownTenant(w, tenant)
		return
	} else if err != nil {
		s.Logger.Error("request failed", "path", r.URL.Path, "error", err.Error())
		httpapi.Error(w, http.StatusInternalServerError, "internal", "internal error", nil)
		return
	}
	st, err := s.Builder.Current(r.Context(), tenant)
	if err != nil {
		s.Logger.Error("live state failed", "tenant", tenant, "error", err.Error())
		httpapi.Error(w, http.StatusServiceUnavailable, "state_unavailable", "live state could not be built", nil)
		return
	}
	etag := `"` + strconv.FormatInt(st.Doc.Seq, 10) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(st.Envelope)
}

func (s *Service) keys(w http.ResponseWriter, _ *http.Request) {
	type key struct {
		KeyID string `json:"kid"`
		PEM   string `json:"public_key_pem"`
	}
	out := []key{}
	for _, pub := range s.Builder.cfg.Ring.PublicKeys() {
		p, err := keys.MarshalPublicPEM(pub)
		if err != nil {
			httpapi.Error(w, http.StatusInternalServerError, "internal", "internal error", nil)
			return
		}
		out = append(out, key{KeyID: keys.KeyID(pub), PEM: string(p)})
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"current": s.Builder.cfg.Ring.Current().ID, "keys": out})
}
