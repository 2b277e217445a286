package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/livestate"
	"github.com/aegis-mesh/aegis/controlplane/notify"
	"github.com/aegis-mesh/aegis/controlplane/xds"
)

// maxActiveReleases bounds how many recent releases of a tenant are
// re-sent to the xDS server on a sync; older ones are covered by newer
// releases in any realistic rollout.
const maxActiveReleases = 20

// DefaultPluginConfig is the filter plugin configuration for one tenant:
// its signed runtime bundle, its signed live state and the JWKS of its
// agent tokens, inline. Trust-root keys never travel here
// (docs/filter-config.md).
func DefaultPluginConfig(_ context.Context, tenant string, bundle, stateEnvelope, jwks []byte) ([]byte, error) {
	if !json.Valid(jwks) {
		return nil, errors.New("jwks: not JSON")
	}
	cfg := map[string]any{"bundles": map[string]string{tenant: base64.StdEncoding.EncodeToString(bundle)}, "jwks": json.RawMessage(jwks)}
	if len(stateEnvelope) > 0 {
		cfg["state"] = map[string]any{"inline": map[string]json.RawMessage{tenant: stateEnvelope}}
	}
	return json.Marshal(cfg)
}

func (s *Server) startLoops(ctx context.Context) {
	events := s.Notifier.Subscribe(ctx)
	stateEvents := make(chan notify.Event, 64)
	loop := &livestate.Loop{Builder: s.State, Tenants: s.Policy.TenantsWithReleases, Events: stateEvents, Notifier: s.Notifier, Logger: s.log,
		OnChange: func(tenant string, st livestate.Signed) {
			if s.XDS != nil {
				s.syncTenant(ctx, tenant)
			}
		}}
	s.goBG(func() { loop.Run(ctx) })
	s.goBG(func() {
		defer close(stateEvents)
		tick := time.NewTicker(s.settings.ReconcileInterval)
		defer tick.Stop()
		s.syncAll(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				s.syncAll(ctx)
			case e, ok := <-events:
				if !ok {
					return
				}
				// Releases go to xDS directly; state changes go through
				// the live-state loop, which pushes via OnChange.
				switch e.Kind {
				case notify.KindRelease, notify.KindKeys:
					if s.XDS != nil {
						s.syncTenant(ctx, e.Tenant)
					}
				case notify.KindResync:
					s.syncAll(ctx)
				}
				select {
				case stateEvents <- e:
				default:
				}
			}
		}
	})
}

func (s *Server) syncAll(ctx context.Context) {
	if s.XDS == nil {
		return
	}
	ts, err := s.Policy.TenantsWithReleases(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reconcile: listing tenants failed", "error", err.Error())
		}
		return
	}
	for _, t := range ts {
		s.syncTenant(ctx, t)
	}
}

// SyncTenant pushes tenant's recent releases, each with the current live
// state, to the xDS server. The xDS revision is the release seq, which
// only grows (a rollback re-releases a lower bundle revision under a new
// seq); the version label names the bundle revision.
func (s *Server) syncTenant(ctx context.Context, tenant string) {
	if err := s.SyncTenant(ctx, tenant); err != nil && ctx.Err() == nil {
		s.log.Warn("xDS sync failed", "tenant", tenant, "error", err.Error())
	}
}

// SyncTenant is syncTenant returning its error, for callers and tests.
func (s *Server) SyncTenant(ctx context.Context, tenant string) error {
	if s.XDS == nil {
		return errors.New("xDS is not enabled")
	}
	rs, err := s.Policy.Releases(ctx, tenant)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		return nil
	}
	st, err := s.State.Current(ctx, tenant)
	if err != nil {
		return err
	}
	if s.cfg.JWKS == nil {
		return errors.New("no JWKS source configured (server.Config.JWKS): nodes could not verify agent tokens")
	}
	jwks, err := s.cfg.JWKS(ctx, tenant)
	if err != nil {
		return fmt.Errorf("JWKS of %s: %w", tenant, err)
	}
	if len(rs) > maxActiveReleases {
		rs = rs[:maxActiveReleases]
	}
	slices.Reverse(rs) // oldest first: later releases cover earlier ones
	build := s.cfg.PluginConfig
	if build == nil {
		build = DefaultPluginConfig
	}
	for _, r := range rs {
		full, err := s.Policy.Release(ctx, tenant, r.Seq)
		if err != nil {
			return err
		}
		pc, err := build(ctx, tenant, full.Bundle, st.Envelope, jwks)
		if err != nil {
			return fmt.Errorf("plugin config for %s release %d: %w", tenant, r.Seq, err)
		}
		roles := make([]xds.Role, len(r.Selector.Roles))
		for i, ro := range r.Selector.Roles {
			roles[i] = xds.Role(ro)
		}
		tc := xds.TenantConfig{PluginConfigJSON: pc, Revision: r.Seq, Regions: r.Selector.Regions, Roles: roles,
			Version: fmt.Sprintf("revision %d state %d sha256:%s", r.Revision, st.Doc.Seq, r.Digest[:16])}
		if err := s.XDS.SetTenant(ctx, tenant, tc); err != nil {
			return err
		}
	}
	return nil
}
