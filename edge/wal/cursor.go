package wal

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// cursorFile holds the last seq the control plane acknowledged and its
// hash, so that shipping resumes there after a restart and segments
// removed after shipping still anchor the chain.
const cursorFile = "shipped.json"

type cursor struct {
	Seq  int64
	Hash [32]byte
}

func readCursor(dir string) (cursor, error) {
	data, err := os.ReadFile(filepath.Join(dir, cursorFile))
	if errors.Is(err, os.ErrNotExist) {
		return cursor{}, nil
	}
	if err != nil {
		return cursor{}, fmt.Errorf("reading the WAL cursor: %w", err)
	}
	return parseCursor(data)
}

func parseCursor(data []byte) (cursor, error) {
	var raw struct {
		Seq  *int64 `json:"seq"`
		Hash string `json:"hash"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return cursor{}, fmt.Errorf("WAL cursor: %w", err)
	}
	if dec.More() {
		return cursor{}, errors.New("WAL cursor: data after the object")
	}
	if raw.Seq == nil || *raw.Seq < 0 {
		return cursor{}, errors.New("WAL cursor: seq missing or negative")
	}
	c := cursor{Seq: *raw.Seq}
	if err := decodeHash(raw.Hash, &c.Hash); err != nil {
		return cursor{}, fmt.Errorf("WAL cursor: hash: %w", err)
	}
	return c, nil
}

// writeCursor replaces the cursor atomically: a crash leaves the old one
// or the new one, never a mix.
func writeCursor(dir string, c cursor) error {
	data := fmt.Appendf(nil, `{"hash":"%s","seq":%d}`+"\n", hex.EncodeToString(c.Hash[:]), c.Seq)
	tmp := filepath.Join(dir, cursorFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing the WAL cursor: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing the WAL cursor: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing the WAL cursor: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the WAL cursor: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, cursorFile)); err != nil {
		return fmt.Errorf("writing the WAL cursor: %w", err)
	}
	return syncDir(dir)
}

// anchor is where a scan of segs starts: genesis when the first segment
// starts at seq 1, the cursor when segments before it were removed after
// shipping, unanchored otherwise (the first record sets it).
func anchor(segs []segment, cur cursor) chainState {
	switch {
	case len(segs) == 0:
		return chainState{seq: cur.Seq, head: cur.Hash, anchored: true}
	case segs[0].first == 1:
		return chainState{anchored: true}
	case segs[0].first == cur.Seq+1:
		return chainState{seq: cur.Seq, head: cur.Hash, anchored: true}
	}
	return chainState{}
}

// Ack records that the control plane has every record up to seq, whose
// hash is hash, and removes segments that hold only shipped records
// (unless KeepShipped). Acks never move backwards.
func (w *WAL) Ack(seq int64, hash [32]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if seq <= w.shipped {
		return nil
	}
	if seq > w.seq {
		return fmt.Errorf("WAL: ack of seq %d beyond the last record %d", seq, w.seq)
	}
	if err := writeCursor(w.dir, cursor{Seq: seq, Hash: hash}); err != nil {
		return err
	}
	w.shipped = seq
	if w.opts.KeepShipped {
		return nil
	}
	// A segment is done when the next one starts at or before seq+1; the
	// newest one is never removed (it is open for append).
	n := 0
	for n+1 < len(w.segs) && w.segs[n+1].first <= seq+1 {
		if err := os.Remove(w.segs[n].path); err != nil {
			return fmt.Errorf("removing a shipped WAL segment: %w", err)
		}
		n++
	}
	w.segs = w.segs[n:]
	return nil
}

// Read returns up to max records starting at seq from, and no more than
// maxBytes of events (at least one record when any is there). It is meant
// for one reader (the shipper) and is cheap when each call continues
// where the previous one stopped.
func (w *WAL) Read(from int64, max int, maxBytes int) ([]Record, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, ErrClosed
	}
	last := w.seq
	segs := append([]segment(nil), w.segs...)
	w.mu.Unlock()
	if from > last || max < 1 {
		return nil, nil
	}
	i := len(segs) - 1
	for i >= 0 && segs[i].first > from {
		i--
	}
	if i < 0 {
		return nil, fmt.Errorf("WAL: seq %d is no longer on disk (first segment starts at %d)", from, segs[0].first)
	}
	w.rmu.Lock()
	defer w.rmu.Unlock()
	var out []Record
	bytesOut := 0
	for ; i < len(segs) && len(out) < max; i++ {
		rd := &w.rd
		if rd.path != segs[i].path || rd.pos() > from || rd.f == nil {
			if err := rd.open(segs[i]); err != nil {
				return nil, err
			}
		}
		for len(out) < max && rd.pos() <= last {
			r, err := rd.readOne()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rd.close()
				return nil, err
			}
			if r.Seq < from {
				continue
			}
			if len(out) > 0 && bytesOut+len(r.Event) > maxBytes {
				// Unread it: the next call starts here.
				rd.pending = &r
				return out, nil
			}
			out = append(out, r)
			bytesOut += len(r.Event)
			from = r.Seq + 1
		}
	}
	return out, nil
}

// reader is the shipper's position in one segment.
type reader struct {
	path    string
	f       *os.File
	br      *bufio.Reader
	next    int64   // seq of the next record readOne returns
	pending *Record // a record read but not returned
}

func (rd *reader) open(seg segment) error {
	rd.close()
	f, err := os.Open(seg.path)
	if err != nil {
		return fmt.Errorf("WAL: opening %s: %w", filepath.Base(seg.path), err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	head := make([]byte, len(magic))
	if _, err := io.ReadFull(br, head); err != nil || string(head) != magic {
		f.Close()
		return fmt.Errorf("WAL: %s: bad segment header", filepath.Base(seg.path))
	}
	rd.path, rd.f, rd.br, rd.next = seg.path, f, br, seg.first
	return nil
}

// pos is the seq of the next record readOne returns.
func (rd *reader) pos() int64 {
	if rd.pending != nil {
		return rd.pending.Seq
	}
	return rd.next
}

func (rd *reader) close() {
	if rd.f != nil {
		rd.f.Close()
	}
	*rd = reader{}
}

// readOne reads the next frame; io.EOF at the end of the segment. Only
// records up to the WAL's head are asked for, so a frame being written
// concurrently is never read.
func (rd *reader) readOne() (Record, error) {
	if rd.pending != nil {
		r := *rd.pending
		rd.pending = nil
		return r, nil
	}
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(rd.br, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Record{}, io.EOF
		}
		return Record{}, fmt.Errorf("WAL: reading %s: %w", filepath.Base(rd.path), err)
	}
	size := int(uint32(hdr[0])<<24 | uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3]))
	if size < minPayload || size > maxPayload {
		return Record{}, fmt.Errorf("WAL: %s: frame length %d", filepath.Base(rd.path), size)
	}
	frame := make([]byte, frameHeader+size)
	copy(frame, hdr[:])
	if _, err := io.ReadFull(rd.br, frame[frameHeader:]); err != nil {
		return Record{}, fmt.Errorf("WAL: reading %s: %w", filepath.Base(rd.path), err)
	}
	payload, _, err := readFrame(frame)
	if err != nil {
		return Record{}, fmt.Errorf("WAL: %s: %w", filepath.Base(rd.path), err)
	}
	r, err := parseRecord(payload)
	if err != nil {
		return Record{}, fmt.Errorf("WAL: %s: %w", filepath.Base(rd.path), err)
	}
	if r.Seq != rd.next {
		return Record{}, fmt.Errorf("WAL: %s: record seq %d, expected %d", filepath.Base(rd.path), r.Seq, rd.next)
	}
	rd.next++
	return r, nil
}
