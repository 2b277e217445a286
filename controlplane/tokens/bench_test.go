package tokens

import (
	"context"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/token"
)

// BenchmarkMint measures one agent token: read the active key, unseal it,
// sign. The database round trip dominates.
func BenchmarkMint(b *testing.B) {
	for _, dialect := range []db.Dialect{db.Postgres, db.SQLite} {
		b.Run(string(dialect), func(b *testing.B) {
			e := newEnv(b, dbtest.New(b, dialect), nil)
			now := e.clock.Now()
			c := token.Claims{Issuer: issuer, Subject: "a", Tenant: "acme", IssuedAt: now.Unix(), ExpiresAt: now.Unix() + 600}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := e.svc.mint(ctx, c, "agent"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
