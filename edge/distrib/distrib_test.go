package distrib

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/edge/cplink"
	"github.com/aegis-mesh/aegis/edge/internal/cptest"
	"github.com/aegis-mesh/aegis/edge/internal/testbundle"
)

func build(t *testing.T, rev int64, key ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := testbundle.Build(testbundle.Example("payments.yaml"), rev, key, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOfferVerifiesAndCaches(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	s, errs := NewStore(pub, dir, nil, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rev2 := build(t, 2, key)
	tampered := append([]byte(nil), rev2...)
	tampered[len(tampered)/2] ^= 0x40

	for _, tc := range []struct {
		name    string
		data    []byte
		tenant  string
		wantErr error
		changed bool
	}{
		{"tampered", tampered, "", nil, false},
		{"other key", build(t, 2, other), "", bundle.ErrBadSignature, false},
		{"unsigned", build(t, 2, nil), "", bundle.ErrUnsigned, false},
		{"other tenant", rev2, "platform", bundle.ErrTenant, false},
		{"good", rev2, "acme", nil, true},
		{"same again", rev2, "acme", nil, false},
		{"lower revision", build(t, 1, key), "acme", bundle.ErrDowngrade, false},
		{"higher revision", build(t, 3, key), "", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed, err := s.Offer(tc.data, tc.tenant)
			if tc.name == "tampered" {
				if err == nil {
					t.Fatal("tampered bundle accepted")
				}
				return
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || changed != tc.changed {
				t.Fatalf("changed %v err %v", changed, err)
			}
		})
	}
	e, ok := s.Get("acme")
	if !ok || e.Manifest.Revision != 3 {
		t.Fatalf("current acme bundle: %+v", e)
	}
	if !slices.Contains(e.ToolHosts, "payments.acme.internal") || !s.IsToolHost("payments.acme.internal") || s.IsToolHost("example.com") {
		t.Errorf("tool hosts %v", e.ToolHosts)
	}

	// Restart: the cache is verified again.
	s2, errs := NewStore(pub, dir, nil, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if e, ok := s2.Get("acme"); !ok || e.Manifest.Revision != 3 {
		t.Fatal("cached bundle not loaded")
	}
	// Edited on disk: refused at the next start, the tenant has none.
	p := filepath.Join(dir, "acme.bundle")
	data, _ := os.ReadFile(p)
	data[len(data)-10] ^= 1
	os.WriteFile(p, data, 0o600)
	s3, errs := NewStore(pub, dir, nil, nil)
	if len(errs) != 1 {
		t.Fatalf("tampered cache: errors %v", errs)
	}
	if _, ok := s3.Get("acme"); ok {
		t.Fatal("tampered cached bundle loaded")
	}
	// Another key at restart (operator rotated it): the cache is refused.
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	os.WriteFile(p, build(t, 3, key), 0o600)
	if _, errs := NewStore(pub2, dir, nil, nil); len(errs) != 1 {
		t.Fatalf("cache under a rotated key: %v", errs)
	}
}

func TestPollREST(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	cp := cptest.New(pub)
	defer cp.Close()
	remote, err := cplink.NewRemote(cp.URL, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewStore(pub, "", nil, nil)
	changes := 0
	s.OnChange(func() { changes++ })
	ctx := context.Background()
	s.pollOnce(ctx, REST{remote}, []string{"acme"})
	if changes != 0 {
		t.Fatal("change without a bundle")
	}
	cp.SetBundle("acme", build(t, 1, key))
	s.pollOnce(ctx, REST{remote}, []string{"acme"})
	s.pollOnce(ctx, REST{remote}, []string{"acme"}) // 304
	if changes != 1 {
		t.Fatalf("%d changes, want 1", changes)
	}
	// A tampered bundle from the control plane is refused; the good one stays.
	bad := build(t, 2, key)
	bad[len(bad)/3] ^= 1
	cp.SetBundle("acme", bad)
	s.pollOnce(ctx, REST{remote}, []string{"acme"})
	if e, _ := s.Get("acme"); e.Manifest.Revision != 1 || changes != 1 {
		t.Fatalf("after a tampered fetch: revision %d", e.Manifest.Revision)
	}
}

func TestRESTRefusals(t *testing.T) {
	big := make([]byte, RuntimeLimits.MaxArchiveBytes+1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("tenant") {
		case "broken":
			http.Error(w, `{"error":"internal"}`, 500)
		case "huge":
			w.Write(big)
		}
	}))
	mux := http.NewServeMux()
	mux.Handle("GET /v1/tenants/{tenant}/bundle", srv.Config.Handler)
	srv.Config.Handler = mux
	defer srv.Close()
	remote, err := cplink.NewRemote(srv.URL, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"broken", "huge"} {
		if _, changed, err := (REST{remote}).Fetch(context.Background(), tenant, ""); err == nil || changed {
			t.Errorf("%s: changed=%v err=%v, want an error", tenant, changed, err)
		}
	}
}
