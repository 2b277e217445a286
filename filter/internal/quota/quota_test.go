package quota

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// memStore is shared data as Envoy keeps it: one version counter for all
// keys (never 0), bumped on every write; cas 0 writes unconditionally and
// a missing key is created whatever cas says.
type memStore struct {
	data map[string][]byte
	ver  map[string]uint32
	next uint32
	// beforeSet runs before the next Set of a key other than AnchorKey:
	// between a caller's Get and its Set, the window in which another VM
	// can write.
	beforeSet func()
}

func newMem() *memStore {
	return &memStore{data: map[string][]byte{}, ver: map[string]uint32{}, next: 1}
}

func (m *memStore) Get(key string) ([]byte, uint32, error) {
	v, ok := m.data[key]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return v, m.ver[key], nil
}

func (m *memStore) Set(key string, value []byte, cas uint32) error {
	if f := m.beforeSet; f != nil && key != AnchorKey {
		m.beforeSet = nil
		f()
	}
	if _, ok := m.data[key]; ok && cas != 0 && m.ver[key] != cas {
		return ErrCasMismatch
	}
	m.data[key] = append([]byte(nil), value...)
	m.ver[key] = m.next
	m.next++
	return nil
}

func TestAddWindowsAndLimits(t *testing.T) {
	s := newMem()
	k := RateKey("acme", "billing-agent")
	steps := []struct {
		window       string
		delta, limit int64
		want         int64
		ok           bool
	}{
		{"100", 1, 3, 1, true},
		{"100", 1, 3, 2, true},
		{"100", 1, 3, 3, true},
		{"100", 1, 3, 3, false}, // over the limit: refused, unchanged
		{"101", 1, 3, 1, true},  // a new minute resets in place
		{"101", 5, 0, 6, true},  // no limit
		{"101", 0, 6, 6, true},
	}
	for i, st := range steps {
		got, ok, err := Add(s, k, st.window, st.delta, st.limit)
		if err != nil || got != st.want || ok != st.ok {
			t.Fatalf("step %d: Add = %d, %v, %v; want %d, %v", i, got, ok, err, st.want, st.ok)
		}
	}
	if n, err := Read(s, k, "101"); n != 6 || err != nil {
		t.Errorf("Read = %d, %v", n, err)
	}
	if n, err := Read(s, k, "100"); n != 0 || err != nil {
		t.Errorf("Read of an old window = %d, %v", n, err)
	}
	if n, err := Read(s, "absent", "100"); n != 0 || err != nil {
		t.Errorf("Read absent = %d, %v", n, err)
	}
}

// TestAddInterleaved: another VM increments between this VM's read and its
// write. The CAS mismatch makes this VM re-read, so neither increment is
// lost and the limit holds across both.
func TestAddInterleaved(t *testing.T) {
	s := newMem()
	k := SpendKey("acme", "billing-agent")
	if _, _, err := Add(s, k, "d", 10, 0); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		s.beforeSet = func() {
			if _, _, err := Add(s, k, "d", 7, 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok, err := Add(s, k, "d", 3, 0); !ok || err != nil {
			t.Fatalf("round %d: ok=%v err=%v", i, ok, err)
		}
	}
	if n, _ := Read(s, k, "d"); n != 10+20*10 {
		t.Errorf("total %d, want %d (an update was lost)", n, 10+20*10)
	}

	// The interleaved write uses up the limit: the retry must see it.
	s2 := newMem()
	Add(s2, k, "d", 8, 10)
	s2.beforeSet = func() { Add(s2, k, "d", 2, 10) }
	got, ok, err := Add(s2, k, "d", 1, 10)
	if ok || err != nil || got != 10 {
		t.Errorf("Add after a concurrent fill = %d, %v, %v; want 10, false, nil", got, ok, err)
	}
}

// TestAddCreateRace: two VMs find the counter missing at once and both
// create it. The second creation must not overwrite the first: with cas 0
// it would (one increment lost); with createCas it fails, re-reads and
// adds on top.
func TestAddCreateRace(t *testing.T) {
	for _, delta := range []int64{1, 5} {
		s := newMem()
		k := SpendKey("acme", "billing-agent")
		s.beforeSet = func() {
			// The other VM read "missing" too and its create lands first.
			if _, ok, err := Add(s, k, "d", 7, 0); !ok || err != nil {
				t.Fatalf("concurrent create: %v, %v", ok, err)
			}
		}
		got, ok, err := Add(s, k, "d", delta, 0)
		if !ok || err != nil || got != 7+delta {
			t.Errorf("Add = %d, %v, %v; want %d, true, nil", got, ok, err, 7+delta)
		}
		if n, _ := Read(s, k, "d"); n != 7+delta {
			t.Errorf("counter %d, want %d (a creation was lost)", n, 7+delta)
		}
	}
	// The race against a limit: the other VM's creation fills it.
	s := newMem()
	k := RateKey("acme", "x")
	s.beforeSet = func() { Add(s, k, "m", 3, 3) }
	if got, ok, err := Add(s, k, "m", 1, 3); ok || err != nil || got != 3 {
		t.Errorf("Add after a concurrent create at the limit = %d, %v, %v; want 3, false, nil", got, ok, err)
	}
}

// TestCreateCasFailsClosed: without an anchor version no key is created.
func TestCreateCasFailsClosed(t *testing.T) {
	boom := errors.New("host error")
	for name, s := range map[string]Store{
		"anchor write fails": missingStore{set: boom},
		"anchor read fails":  missingStore{},
	} {
		t.Run(name, func(t *testing.T) {
			if _, ok, err := Add(s, "k", "d", 1, 0); ok || err == nil {
				t.Errorf("Add = %v, %v; want an error", ok, err)
			}
		})
	}
}

// missingStore finds no key and fails or ignores writes.
type missingStore struct{ set error }

func (missingStore) Get(string) ([]byte, uint32, error) { return nil, 0, ErrNotFound }
func (m missingStore) Set(string, []byte, uint32) error { return m.set }

type brokenStore struct {
	value []byte
	get   error
	set   error
}

func (b brokenStore) Get(string) ([]byte, uint32, error) { return b.value, 1, b.get }
func (b brokenStore) Set(string, []byte, uint32) error   { return b.set }

func TestAddFailsClosed(t *testing.T) {
	boom := errors.New("host error")
	tests := []struct {
		name  string
		store Store
		want  error
	}{
		{"get error", brokenStore{get: boom}, boom},
		{"set error", brokenStore{value: []byte("d 1"), set: boom}, boom},
		{"endless contention", brokenStore{value: []byte("d 1"), set: ErrCasMismatch}, ErrContention},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ok, err := Add(tt.store, "k", "d", 1, 0)
			if ok || !errors.Is(err, tt.want) {
				t.Errorf("Add = %v, %v; want false, %v", ok, err, tt.want)
			}
		})
	}
	for _, v := range []string{"", "d", "d x", "d -1", " 1", "d 99999999999999999999"} {
		t.Run(fmt.Sprintf("malformed %q", v), func(t *testing.T) {
			if _, ok, err := Add(brokenStore{value: []byte(v)}, "k", "d", 1, 0); ok || err == nil {
				t.Errorf("Add over %q = %v, %v", v, ok, err)
			}
			if _, err := Read(brokenStore{value: []byte(v)}, "k", "d"); err == nil {
				t.Errorf("Read over %q succeeded", v)
			}
		})
	}
	if _, _, err := Add(newMem(), "k", "d", -1, 0); err == nil {
		t.Error("negative delta accepted")
	}
}

func TestWindows(t *testing.T) {
	at := time.Date(2026, 11, 24, 23, 59, 59, 0, time.FixedZone("x", 3600))
	if Day(at) != "2026-11-24" {
		t.Errorf("Day = %s", Day(at))
	}
	if Minute(at) == Minute(at.Add(time.Second)) {
		t.Error("Minute did not change at the boundary")
	}
}
