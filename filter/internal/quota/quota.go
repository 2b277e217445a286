// Package quota keeps per-node counters (daily spend, per-minute request
// rates) in a key-value store with compare-and-swap, the shape of
// proxy-wasm shared data: every worker VM of an Envoy node sees the same
// store, and CAS makes concurrent increments from different VMs serialise
// instead of overwriting each other.
//
// A counter lives under one key and carries its own window ("2026-11-24"
// for a day, the Unix minute for a rate), so a new window resets the count
// in place and the store does not grow with time: proxy-wasm has no delete.
package quota

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// Errors a Store returns; the plugin maps the host's status codes to them.
var (
	ErrNotFound    = errors.New("quota: key not found")
	ErrCasMismatch = errors.New("quota: compare-and-swap mismatch")
	// ErrContention is returned when the CAS loop gave up; callers fail
	// closed on it.
	ErrContention = errors.New("quota: too much contention on a counter")
)

// MaxRetries bounds the CAS loop: each retry means another VM wrote in
// between, which on one node happens a handful of times at most.
const MaxRetries = 32

// Store is a key-value store with compare-and-swap. Get returns the value
// and its version; Set stores value if the key's version is still cas.
type Store interface {
	Get(key string) (value []byte, cas uint32, err error)
	Set(key string, value []byte, cas uint32) error
}

// SpendKey names the daily spend counter of an acting agent.
func SpendKey(tenant, agent string) string { return "aegis/spend/" + tenant + "/" + agent }

// RateKey names the per-minute counter of a rate key from the policy.
func RateKey(tenant, key string) string { return "aegis/rate/" + tenant + "/" + key }

// Day is the window of a daily counter: the UTC date.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// Minute is the window of a per-minute counter.
func Minute(t time.Time) string { return strconv.FormatInt(t.Unix()/60, 10) }

// Read returns the counter's value in window (0 when absent or from an
// older window).
func Read(s Store, key, window string) (int64, error) {
	v, _, err := s.Get(key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, errs.Errorf("reading %s: %w", key, err)
	}
	w, n, err := decode(v)
	if err != nil {
		return 0, errs.Errorf("reading %s: %w", key, err)
	}
	if w != window {
		return 0, nil
	}
	return n, nil
}

// Add adds delta to the counter in window unless that would take it above
// limit (limit <= 0: no limit). It returns the new value and whether delta
// was added; when refused, the stored value is unchanged and returned.
func Add(s Store, key, window string, delta, limit int64) (int64, bool, error) {
	if delta < 0 {
		return 0, false, errs.Errorf("adding to %s: negative delta %d", key, delta)
	}
	for range MaxRetries {
		v, cas, err := s.Get(key)
		var cur int64
		switch {
		case errors.Is(err, ErrNotFound):
			// cas 0 would write unconditionally and could overwrite a
			// counter another VM created meanwhile; a version no write
			// of this key can have creates the key but fails on it.
			if cas, err = createCas(s); err != nil {
				return 0, false, errs.Errorf("creating %s: %w", key, err)
			}
		case err != nil:
			return 0, false, errs.Errorf("reading %s: %w", key, err)
		default:
			w, n, err := decode(v)
			if err != nil {
				return 0, false, errs.Errorf("reading %s: %w", key, err)
			}
			if w == window {
				cur = n
			}
		}
		next := cur + delta
		if next < cur {
			return cur, false, errs.Errorf("adding to %s: overflow", key)
		}
		if limit > 0 && next > limit {
			return cur, false, nil
		}
		err = s.Set(key, encode(window, next), cas)
		if errors.Is(err, ErrCasMismatch) {
			continue
		}
		if err != nil {
			return 0, false, errs.Errorf("writing %s: %w", key, err)
		}
		return next, true, nil
	}
	return 0, false, errs.Errorf("adding to %s: %w", key, ErrContention)
}

// AnchorKey is written only for its version, which createCas hands out.
const AnchorKey = "aegis/quota/anchor"

// createCas returns a cas for creating a missing key without the risk of
// overwriting it. The host creates a missing key whatever cas says
// (Envoy's rule) and refuses an existing key whose version differs.
// Versions come from one counter for all keys, so a version just given to
// a write of AnchorKey belongs to no write of any other key: a Set with it
// creates the key when it is still missing and fails with a CAS mismatch
// when another VM created it first, and the caller then re-reads. (Only
// 2^32 writes between the anchor write and the Set could reuse it.)
func createCas(s Store) (uint32, error) {
	// Any anchor value will do; a mismatch means the host refuses cas 0
	// over an existing key (the SDK emulator), which is fine as well.
	if err := s.Set(AnchorKey, []byte("anchor"), 0); err != nil && !errors.Is(err, ErrCasMismatch) {
		return 0, errs.Errorf("writing %s: %w", AnchorKey, err)
	}
	_, cas, err := s.Get(AnchorKey)
	if err != nil {
		return 0, errs.Errorf("reading %s: %w", AnchorKey, err)
	}
	if cas == 0 {
		return 0, errs.Errorf("reading %s: version 0", AnchorKey)
	}
	return cas, nil
}

func encode(window string, n int64) []byte {
	b := make([]byte, 0, len(window)+21)
	b = append(b, window...)
	b = append(b, ' ')
	return strconv.AppendInt(b, n, 10)
}

func decode(v []byte) (string, int64, error) {
	w, num, ok := strings.Cut(string(v), " ")
	if !ok || w == "" {
		return "", 0, errs.Errorf("malformed counter %q", v)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return "", 0, errs.Errorf("malformed counter %q", v)
	}
	return w, n, nil
}
