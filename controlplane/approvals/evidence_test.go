package approvals

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/audit"
	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
)

// An evidence pack exported after approvals were decided carries exactly
// the tenant's approvals created or decided in the window, with approvers,
// decision times and the override's jti (never the token), verifies, and a
// changed approvals file is named by the verifier.
func TestApprovalsInEvidencePack(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		e := newEnv(t, d, nil)

		// Created before the window, denied inside it.
		early, _, err := e.svc.Create(ctx, "acme", "node-1", request("billing-agent", "payments.create", "early"))
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Add(10 * time.Minute)
		from := e.clock.Now()
		if _, err := e.svc.Decide(ctx, "acme", early.ID, auth.Principal{Subject: "lead-1", Groups: []string{"payments-leads"}}, StatusDenied, "duplicate"); err != nil {
			t.Fatal(err)
		}
		// Created, approved, delivered and redeemed inside the window.
		e.clock.Add(time.Minute)
		inside, _, err := e.svc.Create(ctx, "acme", "node-1", request("billing-agent", "payments.create", "inside"))
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Add(time.Minute)
		if _, err := e.svc.Decide(ctx, "acme", inside.ID, auth.Principal{Subject: "lead-1", Groups: []string{"payments-leads"}}, StatusApproved, "ok"); err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.Get(ctx, "acme", inside.ID)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := e.svc.DeliverOverride(ctx, got)
		if err != nil || tok == "" {
			t.Fatalf("override: %q %v", tok, err)
		}
		claims, err := e.svc.Redeem(ctx, "node-2", RedeemRequest{Token: tok, Tenant: "acme", Agent: "billing-agent", Tool: "payments.create", ParamsDigest: digest("inside")})
		if err != nil {
			t.Fatal(err)
		}
		// Another tenant's approval in the window stays out of acme's pack.
		if _, _, err := e.svc.Create(ctx, "globex", "node-9", request("billing-agent", "payments.create", "globex")); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(time.Minute)
		to := e.clock.Now()
		// Created after the window.
		e.clock.Add(time.Hour)
		if _, _, err := e.svc.Create(ctx, "acme", "node-1", request("billing-agent", "payments.create", "late")); err != nil {
			t.Fatal(err)
		}

		store, err := audit.OpenStore(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var pack bytes.Buffer
		if err := store.Export(ctx, &pack, "acme", from, to, audit.ExportOptions{Key: key, Approvals: e.svc, TempDir: t.TempDir(), Now: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		rep, err := evidence.Verify(bytes.NewReader(pack.Bytes()), evidence.VerifyOptions{Key: pub})
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if rep.Approvals != 2 {
			t.Fatalf("pack holds %d approvals, want 2", rep.Approvals)
		}
		files := unpackTar(t, pack.Bytes())
		raw := files[evidence.ApprovalsFile]
		if bytes.Contains(raw, []byte(tok)) {
			t.Fatal("the override token itself is in the pack")
		}
		var recs []EvidenceRecord
		if err := json.Unmarshal(raw, &recs); err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 || recs[0].ID != early.ID || recs[1].ID != inside.ID {
			t.Fatalf("approvals in pack: %+v", recs)
		}
		den, app := recs[0], recs[1]
		if den.Status != StatusDenied || den.DecidedBy != "lead-1" || den.DecidedAt == nil || !den.DecidedAt.Equal(from) || den.OverrideJTI != "" {
			t.Errorf("denied approval: %+v", den)
		}
		if app.Status != StatusApproved || app.DecidedBy != "lead-1" || app.Note != "ok" || app.DecidedAt == nil ||
			!app.DecidedAt.Equal(from.Add(2*time.Minute)) || len(app.Approvers) != 1 || app.Approvers[0] != "payments-leads" {
			t.Errorf("approved approval: %+v", app)
		}
		if app.OverrideJTI != claims.ID || app.OverrideIssuedAt == nil || app.RedeemedAt == nil || app.RedeemedBy != "node-2" {
			t.Errorf("override of approved approval: jti %q (redeemed %q) issued %v redeemed %v by %q",
				app.OverrideJTI, claims.ID, app.OverrideIssuedAt, app.RedeemedAt, app.RedeemedBy)
		}

		for _, tc := range []struct {
			name string
			edit func([]byte) []byte
		}{
			{"decider changed", func(b []byte) []byte { return bytes.Replace(b, []byte(`"lead-1"`), []byte(`"mallory"`), 1) }},
			{"approval removed", func(b []byte) []byte {
				var list []json.RawMessage
				if err := json.Unmarshal(b, &list); err != nil {
					t.Fatal(err)
				}
				out, _ := json.Marshal(list[1:])
				return out
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				changed := map[string][]byte{}
				for name, data := range files {
					changed[name] = data
				}
				changed[evidence.ApprovalsFile] = tc.edit(bytes.Clone(raw))
				if bytes.Equal(changed[evidence.ApprovalsFile], raw) {
					t.Fatal("edit changed nothing")
				}
				_, err := evidence.Verify(bytes.NewReader(repackTar(t, pack.Bytes(), changed)), evidence.VerifyOptions{Key: pub})
				var b *evidence.BrokenError
				if !errors.As(err, &b) || b.Link != evidence.ApprovalsFile {
					t.Fatalf("verify of a tampered approvals file: %v, want a broken link at %s", err, evidence.ApprovalsFile)
				}
			})
		}
	})
}

// An empty window gives an empty list, not nil: the pack then says "no
// approvals" explicitly.
func TestApprovalsBetweenEmpty(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		e := newEnv(t, d, nil)
		now := e.clock.Now()
		got, err := e.svc.ApprovalsBetween(context.Background(), "acme", now.Add(-time.Hour), now)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("empty window: %v %v", got, err)
		}
	})
}

func unpackTar(t *testing.T, pack []byte) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(pack))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = data
	}
}

// repackTar rewrites pack in its original entry order with files' contents.
func repackTar(t *testing.T, pack []byte, files map[string][]byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(pack))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, ok := files[h.Name]
		if !ok {
			t.Fatalf("no content for %s", h.Name)
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
