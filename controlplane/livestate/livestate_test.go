package livestate

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/signing"
	"github.com/aegis-mesh/aegis/state"
)

// sources stands in for the tokens service and the audit store, which
// live in other packages; the values are set by each test step.
type sources struct {
	mu      sync.Mutex
	revoked []string
	kill    bool
	spent   map[string]float64
	budgets map[string]float64
}

func (s *sources) LiveRevocations(context.Context, string) ([]string, []string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.revoked...), []string{"jti-1"}, s.kill, nil
}

func (s *sources) SpentToday(context.Context, string, time.Time) (map[string]float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent, nil
}

func (s *sources) Budgets(context.Context, string) (map[string]float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.budgets, nil
}

func newBuilder(t *testing.T, d *db.DB, ring *signing.Ring, src *sources, now func() time.Time) *Builder {
	t.Helper()
	b, err := New(context.Background(), Config{DB: d, Ring: ring, Revocations: src, Spend: src, Budgets: src,
		Interval: 5 * time.Second, Validity: time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRefresh(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		k, _, err := signing.LoadOrCreate(filepath.Join(t.TempDir(), "state.key"))
		if err != nil {
			t.Fatal(err)
		}
		ring := signing.NewRing(signing.PurposeState, k)
		src := &sources{budgets: map[string]float64{"billing-agent": 20}, spent: map[string]float64{"billing-agent": 7.5}}
		clock := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
		now := func() time.Time { return clock }
		b := newBuilder(t, d, ring, src, now)

		s1, changed, err := b.Refresh(ctx, "acme")
		if err != nil || !changed || s1.Doc.Seq != 1 {
			t.Fatalf("first refresh: seq %d changed %v err %v", s1.Doc.Seq, changed, err)
		}
		doc, err := state.Open(s1.Envelope, k.Public)
		if err != nil {
			t.Fatalf("signed state does not verify: %v", err)
		}
		if doc.Budgets["billing-agent"] != 12.5 || doc.Tenant != "acme" || len(doc.RevokedJTIs) != 1 || !doc.ExpiresAt.Equal(clock.Add(time.Minute)) {
			t.Fatalf("document %+v", doc)
		}
		if s, changed, _ := b.Refresh(ctx, "acme"); changed || s.Doc.Seq != 1 {
			t.Fatalf("unchanged facts re-signed: seq %d", s.Doc.Seq)
		}
		clock = clock.Add(6 * time.Second)
		if s, changed, _ := b.Refresh(ctx, "acme"); changed || s.Doc.Seq != 1 {
			t.Fatalf("unchanged facts re-signed after one interval: seq %d", s.Doc.Seq)
		}
		clock = clock.Add(30 * time.Second)
		if s, changed, _ := b.Refresh(ctx, "acme"); !changed || s.Doc.Seq != 2 {
			t.Fatalf("aged document not re-signed: seq %d", s.Doc.Seq)
		}
		src.mu.Lock()
		src.revoked, src.kill, src.spent = []string{"rogue-agent"}, true, map[string]float64{"billing-agent": 25}
		src.mu.Unlock()
		s3, changed, err := b.Refresh(ctx, "acme")
		if err != nil || !changed || s3.Doc.Seq != 3 || !s3.Doc.KillSwitch || s3.Doc.Budgets["billing-agent"] != 0 || len(s3.Doc.RevokedAgents) != 1 {
			t.Fatalf("changed facts: %+v changed %v err %v", s3.Doc, changed, err)
		}

		// A restarted control plane continues from the stored seq.
		b2 := newBuilder(t, d, ring, src, now)
		cur, err := b2.Current(ctx, "acme")
		if err != nil || cur.Doc.Seq != 3 {
			t.Fatalf("after restart: seq %d err %v", cur.Doc.Seq, err)
		}
		src.mu.Lock()
		src.kill = false
		src.mu.Unlock()
		if s, _, err := b2.Refresh(ctx, "acme"); err != nil || s.Doc.Seq != 4 {
			t.Fatalf("after restart refresh: seq %d err %v", s.Doc.Seq, err)
		}
	})
}

// Two replicas refreshing one tenant at once never sign two different
// documents with the same seq.
func TestConcurrentReplicas(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		k, _, err := signing.LoadOrCreate(filepath.Join(t.TempDir(), "state.key"))
		if err != nil {
			t.Fatal(err)
		}
		ring := signing.NewRing(signing.PurposeState, k)
		var flips atomic.Int64
		src := &sources{budgets: map[string]float64{}}
		builders := []*Builder{newBuilder(t, d, ring, src, time.Now), newBuilder(t, d, ring, src, time.Now)}
		var mu sync.Mutex
		bySeq := map[int64]string{}
		var wg sync.WaitGroup
		for _, b := range builders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 15; i++ {
					src.mu.Lock()
					src.revoked = []string{"agent-" + string(rune('a'+flips.Add(1)%26))}
					src.mu.Unlock()
					s, _, err := b.Refresh(ctx, "acme")
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if prev, ok := bySeq[s.Doc.Seq]; ok && prev != string(s.Envelope) {
						t.Errorf("two documents with seq %d", s.Doc.Seq)
					}
					bySeq[s.Doc.Seq] = string(s.Envelope)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(bySeq) < 2 {
			t.Fatalf("only %d distinct documents", len(bySeq))
		}
	})
}

func TestRemaining(t *testing.T) {
	for _, tc := range []struct{ limit, spent, want float64 }{
		{20, 0, 20}, {20, 7.5, 12.5}, {20, 25, 0}, {20, -3, 20}, {0.3, 0.1, 0.2}, {10, 1.0000004, 8.999999},
	} {
		if got := Remaining(tc.limit, tc.spent); got != tc.want {
			t.Errorf("Remaining(%v, %v) = %v, want %v", tc.limit, tc.spent, got, tc.want)
		}
	}
}
