package policy

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/signing"
	"github.com/aegis-mesh/aegis/policies"
)

func payments(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile("../../policies/examples/payments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"payments.yaml": string(src)}
}

// submitter compiles the example once per test and stores it as often as
// asked, each time as a new version.
func submitter(t *testing.T, s *Store) func(by string) Version {
	t.Helper()
	files := payments(t)
	ps, errs := policies.Load("payments.yaml", []byte(files["payments.yaml"]))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := policies.Compile(context.Background(), ps, policies.Options{SkipWasm: true})
	if err != nil {
		t.Fatal(err)
	}
	obs := *ps
	obs.Defaults.Mode = "observe"
	oc, err := policies.Compile(context.Background(), &obs, policies.Options{SkipWasm: true})
	if err != nil {
		t.Fatal(err)
	}
	return func(by string) Version {
		t.Helper()
		now := time.Now()
		v, err := s.Submit(context.Background(), Submission{Tenant: "acme", Name: c.Name, Files: files, Budgets: map[string]float64{"billing-agent": 20}, Owners: map[string]string{"billing-agent": "finance"},
			Delegates: map[string][]string{"billing-agent": {"support-agent"}}, By: by, At: now,
			Build: func(version int64) ([]byte, []byte, []byte, error) {
				opts := policies.BundleOptions{Revision: version, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				a, r, err := policies.BuildBundles(c, opts)
				if err != nil {
					return nil, nil, nil, err
				}
				_, o, err := policies.BuildBundles(oc, opts)
				return r, o, a, err
			}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ring(t *testing.T, path string, earlier ...*signing.Ring) *signing.Ring {
	t.Helper()
	k, _, err := signing.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	var pubs []ed25519.PublicKey
	for _, e := range earlier {
		pubs = append(pubs, e.PublicKeys()...)
	}
	return signing.NewRing(signing.PurposeBundle, k, pubs...)
}

func TestLifecycle(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s, err := NewStore(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		submit := submitter(t, s)
		keyA := ring(t, filepath.Join(t.TempDir(), "a.key"))
		twoPerson := ApprovalRule{TwoPerson: true, Required: 2}
		pub := func(req PublishRequest) (Release, error) {
			req.Tenant, req.Publisher, req.Rule, req.Validity, req.Now = "acme", "pat", twoPerson, time.Hour, time.Now()
			if req.Key == nil {
				req.Key, req.Ring = keyA.Current(), keyA
			}
			if req.Stage == "" {
				req.Stage = StageEnforce
			}
			return s.Publish(ctx, req)
		}

		v1 := submit("alice")
		if v1.Version != 1 {
			t.Fatalf("first version %d", v1.Version)
		}
		if _, err := pub(PublishRequest{Version: 1}); !errors.Is(err, ErrNotApproved) {
			t.Fatalf("publish without approval: %v", err)
		}
		if _, err := s.Approve(ctx, "acme", 1, "alice", twoPerson, time.Now()); !errors.Is(err, ErrSelfApproval) {
			t.Fatalf("self approval under two-person rule: %v", err)
		}
		if _, err := s.Approve(ctx, "acme", 1, "bob", twoPerson, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Approve(ctx, "acme", 1, "bob", twoPerson, time.Now()); !errors.Is(err, ErrAlreadyApproved) {
			t.Fatalf("same approver twice: %v", err)
		}
		if _, err := pub(PublishRequest{Version: 1}); !errors.Is(err, ErrNotApproved) {
			t.Fatalf("publish with 1 of 2 approvals: %v", err)
		}
		v, err := s.Approve(ctx, "acme", 1, "carol", twoPerson, time.Now())
		if err != nil || !v.Approved {
			t.Fatalf("second approval: %v approved=%v", err, v.Approved)
		}
		if _, err := s.Approve(ctx, "acme", 9, "carol", twoPerson, time.Now()); !errors.Is(err, ErrUnknownVersion) {
			t.Fatalf("approve unknown version: %v", err)
		}
		r1, err := pub(PublishRequest{Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		m1 := verified(t, r1.Bundle, keyA.Current().Public)
		if m1.Revision != 1 || m1.Release == nil || m1.Release.Publisher != "pat" || m1.Release.Stage != StageEnforce ||
			len(m1.Release.Approvers) != 2 || m1.Tenant != "acme" {
			t.Fatalf("release manifest %+v release %+v", m1, m1.Release)
		}
		if _, err := pub(PublishRequest{Version: 1, Revision: 1}); !errors.Is(err, ErrRevisionDowngrade) {
			t.Fatalf("revision downgrade: %v", err)
		}
		if _, err := pub(PublishRequest{Version: 1, Revision: 7}); !errors.Is(err, ErrRevisionConflict) {
			t.Fatalf("revision skip: %v", err)
		}

		// Key rotation: revision 2 is signed with key B; revision 1 still
		// verifies with A, which B's ring keeps trusting.
		keyB := ring(t, filepath.Join(t.TempDir(), "b.key"), keyA)
		submit("alice")
		for _, a := range []string{"bob", "carol"} {
			if _, err := s.Approve(ctx, "acme", 2, a, twoPerson, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		r2, err := pub(PublishRequest{Version: 2, Stage: StageObserve, Selector: Selector{Regions: []string{"eu"}}, Key: keyB.Current(), Ring: keyB})
		if err != nil {
			t.Fatal(err)
		}
		m2 := verified(t, r2.Bundle, keyB.Current().Public)
		if r2.KeyID == r1.KeyID || m2.Revision != 2 || m2.Release.Stage != StageObserve {
			t.Fatalf("rotated release: key %s vs %s, manifest %+v", r2.KeyID, r1.KeyID, m2.Release)
		}
		for _, r := range []Release{r1, r2} {
			sig, err := base64.StdEncoding.DecodeString(r.RecordSignature)
			if err != nil {
				t.Fatal(err)
			}
			if err := keyB.Verify(r.KeyID, []byte(r.Record), sig); err != nil {
				t.Fatalf("release record signature: %v", err)
			}
			var rec RecordFields
			if err := json.Unmarshal([]byte(r.Record), &rec); err != nil || rec.Digest != r.Digest || rec.Revision != r.Revision || rec.Publisher != "pat" {
				t.Fatalf("release record %s: %v", r.Record, err)
			}
		}
		if got := settingsMode(t, r1.Bundle); got != "enforce" {
			t.Fatalf("enforce release runs mode %q", got)
		}
		if got := settingsMode(t, r2.Bundle); got != "observe" {
			t.Fatalf("observe release runs mode %q", got)
		}
		old, err := s.Release(ctx, "acme", 1)
		if err != nil {
			t.Fatal(err)
		}
		oldPub, ok := keyB.Lookup(old.KeyID)
		if !ok {
			t.Fatal("rotated ring lost the old key")
		}
		verified(t, old.Bundle, oldPub)

		// Staged rollout: only eu nodes get revision 2.
		for _, tc := range []struct {
			region, role string
			want         int64
		}{{"eu", "gateway", 2}, {"us", "gateway", 1}} {
			cur, err := s.Current(ctx, "acme", tc.region, tc.role)
			if err != nil || cur.Revision != tc.want {
				t.Fatalf("current for %s: %d %v, want %d", tc.region, cur.Revision, err, tc.want)
			}
		}
		if _, err := s.Current(ctx, "other", "eu", "gateway"); !errors.Is(err, ErrNoRelease) {
			t.Fatalf("tenant without releases: %v", err)
		}

		// Rollbacks: only to an earlier revision whose version is approved.
		if _, err := pub(PublishRequest{Rollback: true, ToRevision: 99}); !errors.Is(err, ErrRollbackTarget) {
			t.Fatalf("rollback to an unknown revision: %v", err)
		}
		if _, err := pub(PublishRequest{Rollback: true, ToRevision: 2}); !errors.Is(err, ErrRollbackTarget) {
			t.Fatalf("rollback to the running revision: %v", err)
		}
		strict := PublishRequest{Rollback: true, ToRevision: 1}
		strict.Tenant, strict.Publisher, strict.Validity, strict.Now, strict.Stage = "acme", "pat", time.Hour, time.Now(), StageEnforce
		strict.Key, strict.Ring, strict.Rule = keyA.Current(), keyA, ApprovalRule{TwoPerson: true, Required: 3}
		if _, err := s.Publish(ctx, strict); !errors.Is(err, ErrRollbackTarget) {
			t.Fatalf("rollback to a revision not approved under the current rule: %v", err)
		}
		r3, err := pub(PublishRequest{Rollback: true, ToRevision: 1})
		if err != nil {
			t.Fatal(err)
		}
		m3 := verified(t, r3.Bundle, keyA.Current().Public)
		if r3.Seq != 3 || r3.Revision != 1 || r3.Version != 1 || m3.Revision != 1 || m3.Release.Replaces != 2 || !r3.Rollback {
			t.Fatalf("rollback release %+v manifest release %+v", r3, m3.Release)
		}
		if err := bundle.CheckUpgrade(m2, m3); err != nil {
			t.Fatalf("a node on revision 2 refuses the rollback: %v", err)
		}
		r4, err := pub(PublishRequest{Version: 2})
		if err != nil {
			t.Fatal(err)
		}
		m4 := verified(t, r4.Bundle, keyA.Current().Public)
		if r4.Revision != 3 || bundle.CheckUpgrade(m3, m4) != nil {
			t.Fatalf("publish after rollback: revision %d, want 3", r4.Revision)
		}

		// History is append-only and survives a restart.
		if _, err := d.ExecContext(ctx, `UPDATE releases SET stage = 'enforce' WHERE tenant = 'acme'`); err == nil {
			t.Fatal("a release row was updated")
		}
		if _, err := d.ExecContext(ctx, `DELETE FROM policy_approvals`); err == nil {
			t.Fatal("approval rows were deleted")
		}
		s2, err := NewStore(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := s2.Releases(ctx, "acme")
		if err != nil || len(rs) != 4 || rs[0].Seq != 4 || rs[0].Revision != 3 {
			t.Fatalf("releases after restart: %v %+v", err, rs)
		}
		es, err := s2.Events(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, e := range es {
			kinds = append(kinds, e.Kind)
		}
		want := []string{"submitted", "approved", "approved", "published", "submitted", "approved", "approved", "published", "rolled_back", "published"}
		if len(kinds) != len(want) {
			t.Fatalf("events %v, want %v", kinds, want)
		}
		for i := range want {
			if kinds[i] != want[i] {
				t.Fatalf("events %v, want %v", kinds, want)
			}
		}
		b, err := s2.Budgets(ctx, "acme")
		if err != nil || b["billing-agent"] != 20 {
			t.Fatalf("budgets %v %v", b, err)
		}
		owner, forbid, err := s2.AgentOwner(ctx, "acme", "billing-agent")
		if err != nil || owner != "finance" || !forbid {
			t.Fatalf("owner %q forbid %v err %v", owner, forbid, err)
		}
		if owner, _, err := s2.AgentOwner(ctx, "acme", "nobody"); err != nil || owner != "" {
			t.Fatalf("owner of an unknown agent %q %v", owner, err)
		}
		for _, tc := range []struct {
			from, to string
			want     bool
		}{{"billing-agent", "support-agent", true}, {"support-agent", "billing-agent", false}, {"nobody", "billing-agent", false}} {
			if got, err := s2.DelegationAllowed(ctx, "acme", tc.from, tc.to); err != nil || got != tc.want {
				t.Fatalf("DelegationAllowed(%s, %s) = %v, %v", tc.from, tc.to, got, err)
			}
		}
		if got, err := s2.DelegationAllowed(ctx, "other", "billing-agent", "support-agent"); err != nil || got {
			t.Fatalf("delegation without a release: %v %v", got, err)
		}
		active, err := s2.BundlesActive(ctx, "acme", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil || len(active) != 4 {
			t.Fatalf("active bundles: %d %v", len(active), err)
		}
		for i, a := range active {
			if a.Name != fmt.Sprintf("release-%d", i+1) {
				t.Fatalf("active bundle %d named %s", i, a.Name)
			}
			verified(t, a.Files["bundle.tar.gz"], mustLookup(t, keyB, rs[len(rs)-1-i].KeyID))
		}
		if none, err := s2.BundlesActive(ctx, "acme", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)); err != nil || len(none) != 0 {
			t.Fatalf("bundles before any release: %d %v", len(none), err)
		}
	})
}

func verified(t *testing.T, data []byte, pub []byte) *bundle.Manifest {
	t.Helper()
	b, err := bundle.Open(data, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(pub, time.Now()); err != nil {
		t.Fatalf("release bundle does not verify: %v", err)
	}
	return &b.Manifest
}

func TestCheckRevision(t *testing.T) {
	for _, tc := range []struct {
		latest, req, want int64
		err               error
	}{
		{0, 0, 1, nil}, {4, 0, 5, nil}, {4, 5, 5, nil}, {4, 4, 0, ErrRevisionDowngrade}, {4, 1, 0, ErrRevisionDowngrade}, {4, 6, 0, ErrRevisionConflict},
	} {
		got, err := CheckRevision(tc.latest, tc.req)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("CheckRevision(%d, %d) = %d, %v; want %d, %v", tc.latest, tc.req, got, err, tc.want, tc.err)
		}
	}
}

func TestApprovalRules(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rule      ApprovalRule
		submitter string
		approvers []string
		want      bool
	}{
		{"one approval suffices", ApprovalRule{Required: 1}, "a", []string{"a"}, true},
		{"none", ApprovalRule{Required: 1}, "a", nil, false},
		{"two-person ignores submitter", ApprovalRule{TwoPerson: true, Required: 1}, "a", []string{"a"}, false},
		{"two-person other approver", ApprovalRule{TwoPerson: true, Required: 1}, "a", []string{"b"}, true},
		{"needs two distinct", ApprovalRule{TwoPerson: true, Required: 2}, "a", []string{"a", "b"}, false},
		{"two distinct", ApprovalRule{TwoPerson: true, Required: 2}, "a", []string{"b", "c"}, true},
	} {
		if got := Approved(tc.rule, tc.submitter, tc.approvers); got != tc.want {
			t.Errorf("%s: Approved = %v", tc.name, got)
		}
	}
}

func TestSelector(t *testing.T) {
	for _, tc := range []struct {
		s            Selector
		region, role string
		want         bool
	}{
		{Selector{}, "eu", "edge", true},
		{Selector{Regions: []string{"eu"}}, "eu", "edge", true},
		{Selector{Regions: []string{"eu"}}, "us", "edge", false},
		{Selector{Roles: []string{"gateway"}}, "us", "edge", false},
		{Selector{Regions: []string{"us"}, Roles: []string{"edge"}}, "us", "edge", true},
	} {
		if got := tc.s.Matches(tc.region, tc.role); got != tc.want {
			t.Errorf("%+v.Matches(%s, %s) = %v", tc.s, tc.region, tc.role, got)
		}
	}
}

func mustLookup(t *testing.T, r *signing.Ring, kid string) ed25519.PublicKey {
	t.Helper()
	pub, ok := r.Lookup(kid)
	if !ok {
		t.Fatalf("key %s not trusted", kid)
	}
	return pub
}

// settingsMode digs defaults.mode out of a bundle's data.json.
func settingsMode(t *testing.T, data []byte) string {
	t.Helper()
	b, err := bundle.Open(data, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b.Files[policies.DataPath], &doc); err != nil {
		t.Fatal(err)
	}
	var find func(v any) (string, bool)
	find = func(v any) (string, bool) {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if st, ok := m["settings"].(map[string]any); ok {
			mode, ok := st["mode"].(string)
			return mode, ok
		}
		for _, c := range m {
			if mode, ok := find(c); ok {
				return mode, true
			}
		}
		return "", false
	}
	mode, ok := find(doc)
	if !ok {
		t.Fatal("data.json has no settings.mode")
	}
	return mode
}
