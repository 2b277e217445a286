package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"
)

// BootstrapTTL is the lifetime of the first admin token; operators are
// expected to issue their own admin tokens and revoke it.
const BootstrapTTL = 365 * 24 * time.Hour

// Bootstrap issues the first admin credential exactly once per database
// and writes it to path (mode 0600, never overwriting a file). It returns
// whether it wrote one. The token is never logged; callers log the path.
// A failure leaves neither a file nor a recorded token behind.
func Bootstrap(ctx context.Context, s *Store, iss *TokenIssuer, path string, now time.Time) (bool, error) {
	wrote := false
	claimed, err := s.ClaimBootstrap(ctx, "admin_token", now, func(tx *sql.Tx) error {
		it, err := iss.Issue(Principal{Subject: "bootstrap-admin", Roles: []Role{RoleAdmin}}, now, BootstrapTTL)
		if err != nil {
			return err
		}
		if err := RecordTokenTx(ctx, tx, it, "bootstrap"); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists but this database has no bootstrap admin: remove the stale file or use a fresh data dir", path)
		}
		if err != nil {
			return fmt.Errorf("write admin token: %w", err)
		}
		_, werr := f.WriteString(it.Token + "\n")
		cerr := f.Close()
		if werr != nil || cerr != nil {
			os.Remove(path)
			return fmt.Errorf("write admin token %s: %w", path, errors.Join(werr, cerr))
		}
		wrote = true
		return nil
	})
	if err != nil && wrote {
		// The transaction did not commit: the token in the file would
		// never authenticate, and its presence would block the retry.
		os.Remove(path)
	}
	return claimed, err
}
