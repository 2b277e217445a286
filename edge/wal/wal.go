// Package wal is the edge's local audit write-ahead log: one append-only,
// hash-chained sequence of audit events per node (chain_id = node id),
// kept in segment files until the shipper has delivered them to the
// control plane.
//
// Every event gets the next seq and event_hash = sha256(prev_hash ||
// JCS(event)) (API.md, "Audit"); the first event of a chain has an
// all-zero prev_hash. Append returns only after the events are written
// and, under SyncAlways, fsynced: an event the edge acknowledged to the
// filter survives a crash of the process (SyncNone) or of the machine
// (SyncAlways).
//
// At Open, the newest segment is scanned: a frame cut short by a crash is
// truncated away, and nothing before it is touched. A complete frame that
// breaks the chain is not repaired: Open fails and names it, so evidence
// is never rewritten by the node that produced it.
package wal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// SyncPolicy says when appended records reach stable storage.
type SyncPolicy string

const (
	// SyncAlways fsyncs each Append (one fsync per audit batch from a
	// VM, not per event) before it returns.
	SyncAlways SyncPolicy = "always"
	// SyncNone leaves flushing to the OS: acknowledged events survive
	// a process crash but not a power loss. For tests and benchmarks.
	SyncNone SyncPolicy = "none"
)

// Options configure a WAL. NodeID is required.
type Options struct {
	// NodeID is stamped into every event's node_id.
	NodeID string
	// SegmentBytes is the size after which a new segment starts
	// (default 64 MiB).
	SegmentBytes int64
	// Sync is the fsync policy (default SyncAlways).
	Sync SyncPolicy
	// KeepShipped keeps segments the control plane already has; by
	// default they are removed once every record in them is shipped.
	KeepShipped bool
}

// DefaultSegmentBytes is the default segment size.
const DefaultSegmentBytes = 64 << 20

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.NodeID == "" {
		errs = append(errs, errors.New("node id is empty"))
	}
	if o.SegmentBytes < 0 {
		errs = append(errs, fmt.Errorf("segment bytes %d is negative", o.SegmentBytes))
	}
	switch o.Sync {
	case "", SyncAlways, SyncNone:
	default:
		errs = append(errs, fmt.Errorf("sync policy %q: want %q or %q", o.Sync, SyncAlways, SyncNone))
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by calls on a closed WAL.
var ErrClosed = errors.New("WAL is closed")

// WAL is one node's audit chain on disk. It is safe for concurrent use.
type WAL struct {
	dir  string
	opts Options

	mu      sync.Mutex
	segs    []segment
	f       *os.File // newest segment, open for append
	size    int64    // of f
	seq     int64    // last appended
	head    [32]byte // hash of the last appended record
	shipped int64    // last seq the control plane acknowledged (persisted)
	failed  error    // a write that could not be undone: no more appends
	closed  bool
	notify  chan struct{} // closed and replaced on every append
	buf     []byte

	rmu sync.Mutex // the shipper's read position
	rd  reader
}

// Open opens (or creates) the WAL in dir, recovering from a torn final
// write.
func Open(dir string, opts Options) (*WAL, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("WAL options: %w", err)
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.Sync == "" {
		opts.Sync = SyncAlways
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating WAL directory: %w", err)
	}
	w := &WAL{dir: dir, opts: opts, notify: make(chan struct{})}
	cur, err := readCursor(dir)
	if err != nil {
		return nil, err
	}
	w.shipped = cur.Seq
	if err := w.recover(cur); err != nil {
		return nil, err
	}
	if w.shipped > w.seq {
		return nil, fmt.Errorf("WAL cursor says seq %d was shipped, but the WAL ends at %d", w.shipped, w.seq)
	}
	return w, nil
}

// recover scans every segment (checking the whole chain that is still on
// disk), truncates a torn tail of the newest one and opens it for append.
func (w *WAL) recover(cur cursor) error {
	segs, err := listSegments(w.dir)
	if err != nil {
		return err
	}
	st := anchor(segs, cur)
	for i, seg := range segs {
		res, err := scanSegment(seg, &st, nil)
		if err != nil {
			return fmt.Errorf("WAL %s: %w", w.dir, err)
		}
		if res.torn == nil {
			continue
		}
		if i != len(segs)-1 {
			return fmt.Errorf("WAL %s: %w", w.dir, &LinkError{Segment: filepath.Base(seg.path), Offset: res.validEnd, Seq: st.seq + 1, Problem: res.torn.Error()})
		}
		if res.validEnd < int64(len(magic)) {
			// The segment's header itself was cut short: it holds no
			// record, so it is rewritten from scratch.
			if err := os.Remove(seg.path); err != nil {
				return fmt.Errorf("removing a torn segment: %w", err)
			}
			segs = segs[:i]
			break
		}
		if err := os.Truncate(seg.path, res.validEnd); err != nil {
			return fmt.Errorf("truncating the torn tail of %s: %w", filepath.Base(seg.path), err)
		}
	}
	w.segs = segs
	w.seq, w.head = st.seq, st.head
	if !st.anchored {
		return fmt.Errorf("WAL %s: segments start at seq %d after the shipped cursor %d and hold no record to continue from", w.dir, segs[0].first, cur.Seq)
	}
	if len(segs) == 0 {
		return w.startSegment(w.seq + 1)
	}
	last := segs[len(segs)-1]
	f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("opening WAL segment: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening WAL segment: %w", err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// startSegment creates the segment whose first record will be first.
func (w *WAL) startSegment(first int64) error {
	path := filepath.Join(w.dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating WAL segment: %w", err)
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		return fmt.Errorf("writing WAL segment header: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing WAL segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return err
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.size = f, int64(len(magic))
	w.segs = append(w.segs, segment{first: first, path: path})
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing WAL directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing WAL directory: %w", err)
	}
	return nil
}

// Event is an audit event decoded strictly (see Canonical), ready to be
// appended.
type Event struct{ obj object }

// ParseEvent decodes one event object strictly.
func ParseEvent(raw []byte) (Event, error) {
	obj, err := decodeEvent(raw)
	if err != nil {
		return Event{}, err
	}
	return Event{obj: obj}, nil
}

// Int returns an integer member of the event.
func (e Event) Int(name string) (int64, bool) {
	v, ok := e.obj[name].(int64)
	return v, ok
}

// Canonical returns the event's JCS form as it stands.
func (e Event) Canonical() []byte { return appendJCS(nil, e.obj) }

// Append adds events (JSON objects, as the filter sends them) to the
// chain, stamping seq and node_id, and returns the seqs they got. Either
// all events are appended or none: a malformed one refuses the call.
func (w *WAL) Append(ctx context.Context, events []json.RawMessage) (first, last int64, err error) {
	evs := make([]Event, len(events))
	for i, raw := range events {
		if evs[i], err = ParseEvent(raw); err != nil {
			return 0, 0, fmt.Errorf("events[%d]: %w", i, err)
		}
	}
	return w.AppendEvents(ctx, evs)
}

// AppendEvents is Append for events already parsed. It sets their seq and
// node_id.
func (w *WAL) AppendEvents(ctx context.Context, evs []Event) (first, last int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	objs := make([]object, len(evs))
	for i, e := range evs {
		if e.obj == nil {
			return 0, 0, fmt.Errorf("events[%d]: empty event", i)
		}
		objs[i] = e.obj
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, 0, ErrClosed
	}
	if w.failed != nil {
		return 0, 0, w.failed
	}
	if len(objs) == 0 {
		return w.seq + 1, w.seq, nil
	}
	buf := w.buf[:0]
	seq, head := w.seq, w.head
	for i, obj := range objs {
		seq++
		obj["seq"] = seq
		obj["node_id"] = w.opts.NodeID
		canon := appendJCS(nil, obj)
		if len(canon) > MaxEventBytes {
			return 0, 0, fmt.Errorf("events[%d]: %d bytes, limit %d", i, len(canon), MaxEventBytes)
		}
		r := Record{Seq: seq, PrevHash: head, Event: canon}
		r.Hash = chainHash(head, canon)
		buf = appendFrame(buf, &r)
		head = r.Hash
	}
	w.buf = buf
	if w.size > int64(len(magic)) && w.size+int64(len(buf)) > w.opts.SegmentBytes {
		if err := w.f.Sync(); err != nil {
			w.failed = fmt.Errorf("WAL: syncing a full segment: %w", err)
			return 0, 0, w.failed
		}
		if err := w.startSegment(w.seq + 1); err != nil {
			return 0, 0, err
		}
	}
	if _, err := w.f.Write(buf); err != nil {
		w.undo(err)
		return 0, 0, fmt.Errorf("WAL: appending: %w", err)
	}
	if w.opts.Sync == SyncAlways {
		if err := w.f.Sync(); err != nil {
			// After a failed fsync the kernel may have dropped the dirty
			// pages: nothing written since the last good sync can be
			// trusted, so the WAL stops taking events.
			w.failed = fmt.Errorf("WAL: fsync failed, refusing further appends: %w", err)
			return 0, 0, w.failed
		}
	}
	first = w.seq + 1
	w.size += int64(len(buf))
	w.seq, w.head = seq, head
	close(w.notify)
	w.notify = make(chan struct{})
	return first, seq, nil
}

// undo removes a partial write so that the segment ends on a frame.
func (w *WAL) undo(cause error) {
	if err := w.f.Truncate(w.size); err != nil {
		w.failed = fmt.Errorf("WAL: a failed write (%v) could not be undone: %w", cause, err)
	}
}

// Err returns why the WAL stopped taking events (a write or fsync that
// failed), or nil.
func (w *WAL) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// Head returns the last seq and its hash.
func (w *WAL) Head() (int64, [32]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq, w.head
}

// Shipped returns the last seq the control plane acknowledged.
func (w *WAL) Shipped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.shipped
}

// Depth is how many records wait to be shipped.
func (w *WAL) Depth() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq - w.shipped
}

// Changed returns a channel closed at the next append.
func (w *WAL) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.notify
}

// Close closes the WAL. Appended records are already on disk.
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.rmu.Lock()
	w.rd.close()
	w.rmu.Unlock()
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return fmt.Errorf("WAL: syncing at close: %w", err)
	}
	return w.f.Close()
}
