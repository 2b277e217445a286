package plugin

import (
	"testing"

	"github.com/aegis-mesh/aegis/filter/internal/config"
)

// TestSchedule: one tick period (the shortest interval) drives every
// periodic job at its own multiple of it.
func TestSchedule(t *testing.T) {
	tests := []struct {
		name                string
		cfg                 config.Config
		tick                int
		audit, state, fetch uint64
	}{
		{"audit only", config.Config{Audit: config.Audit{FlushIntervalMs: 1000}}, 1000, 1, 0, 0},
		{"state faster", config.Config{Audit: config.Audit{FlushIntervalMs: 1000}, State: config.State{RefreshMs: 250}}, 250, 4, 1, 0},
		{"fetch slower", config.Config{Audit: config.Audit{FlushIntervalMs: 1000}, Fetch: config.Fetch{JWKS: true, RefreshMs: 30000}}, 1000, 1, 0, 30},
		{"hold caps the tick", config.Config{Audit: config.Audit{FlushIntervalMs: 5000}, Limits: config.Limits{ApprovalHoldMs: 10}}, 1000, 5, 0, 0},
		{"rounded", config.Config{Audit: config.Audit{FlushIntervalMs: 1000}, State: config.State{RefreshMs: 300}}, 300, 3, 1, 0},
	}
	for _, tt := range tests {
		p := &pluginContext{cfg: tt.cfg}
		p.schedule()
		if p.tickMs != tt.tick || p.auditEvery != tt.audit || p.stateEvery != tt.state || p.fetchEvery != tt.fetch {
			t.Errorf("%s: tick %d audit %d state %d fetch %d, want %d %d %d %d", tt.name,
				p.tickMs, p.auditEvery, p.stateEvery, p.fetchEvery, tt.tick, tt.audit, tt.state, tt.fetch)
		}
	}
}
