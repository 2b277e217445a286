package nodes

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

// TestSharedNodeStore: a join token's serves (home added, sorted, without
// duplicates) reaches the enrolled node, its listing, its mTLS principal
// and Serves; an ordinary node serves nothing beyond home.
func TestSharedNodeStore(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		st, err := NewStore(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := LoadOrCreateCA(t.TempDir(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		enroll := func(serves []string) Node {
			t.Helper()
			jt, err := st.CreateSharedJoinToken(ctx, "acme", "eu", "gateway", serves, "root", now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			pub, _, _ := ed25519.GenerateKey(rand.Reader)
			n, err := st.Enroll(ctx, jt.Secret, "", pub, now, func(*sql.Tx, Node) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		for _, tc := range []struct {
			name   string
			serves []string
			want   []string
		}{
			{"ordinary", nil, nil},
			{"only home", []string{"acme"}, nil},
			{"home added", []string{"platform"}, []string{"acme", "platform"}},
			{"sorted, without duplicates", []string{"zeta", "platform", "acme", "platform"}, []string{"acme", "platform", "zeta"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n := enroll(tc.serves)
				if !slices.Equal(n.Serves, tc.want) {
					t.Fatalf("enrolled serves %v, want %v", n.Serves, tc.want)
				}
				got, err := st.Serves(ctx, n.ID, "acme")
				if err != nil || !slices.Equal(got, tc.want) {
					t.Fatalf("Serves %v %v, want %v", got, err, tc.want)
				}
				// A credential naming another home tenant gets nothing.
				if _, err := st.Serves(ctx, n.ID, "platform"); err == nil {
					t.Fatal("Serves answered for a credential of another tenant")
				}
				listed, err := st.List(ctx, "acme")
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(listed, func(l Node) bool { return l.ID == n.ID })
				if i < 0 || !slices.Equal(listed[i].Serves, tc.want) {
					t.Fatalf("listing %+v", listed)
				}
				pub := n.PublicKey
				certPEM, err := ca.IssueNode("acme", n.ID, pub, now, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				block, _ := pem.Decode(certPEM)
				cert, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				chains, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now})
				if err != nil {
					t.Fatal(err)
				}
				p, ok, err := st.Identity(ctx, &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: chains})
				if err != nil || !ok || !slices.Equal(p.Serves, tc.want) || !p.CanServe("acme") {
					t.Fatalf("mTLS principal %+v %v %v", p, ok, err)
				}
				if ok, err := st.Disable(ctx, "acme", n.ID, now); err != nil || !ok {
					t.Fatalf("disable: %v %v", ok, err)
				}
				if _, err := st.Serves(ctx, n.ID, "acme"); !errors.Is(err, ErrUnknownNode) {
					t.Fatalf("Serves of a disabled node: %v", err)
				}
			})
		}
	})
}
