package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// segmentSuffix names segment files: <first seq, 20 digits>.wal, so that
// lexical order is seq order.
const segmentSuffix = ".wal"

func segmentName(first int64) string { return fmt.Sprintf("%020d%s", first, segmentSuffix) }

type segment struct {
	first int64 // seq of its first record (by name)
	path  string
}

// listSegments returns the directory's segments in seq order. Files that
// are not segments are ignored (the cursor, temporary files).
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading WAL directory: %w", err)
	}
	var segs []segment
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segmentSuffix) || !e.Type().IsRegular() {
			continue
		}
		digits := strings.TrimSuffix(name, segmentSuffix)
		first, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || len(digits) != 20 || first < 1 {
			return nil, fmt.Errorf("WAL directory: %s is not a segment name", name)
		}
		segs = append(segs, segment{first: first, path: filepath.Join(dir, name)})
	}
	slices.SortFunc(segs, func(a, b segment) int { return int(min(max(a.first-b.first, -1), 1)) })
	return segs, nil
}

// LinkError names the first place a WAL stops being a valid chain.
type LinkError struct {
	Segment string // file name
	Offset  int64  // byte offset of the frame in the segment
	Seq     int64  // seq of the record expected there
	Problem string
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s at offset %d (seq %d): %s", e.Segment, e.Offset, e.Seq, e.Problem)
}

// chainState is where a scan stands: the last record seen.
type chainState struct {
	seq  int64
	head [32]byte
	// anchored: seq/head come from a record (or from genesis); false until
	// the first record when earlier segments were removed after shipping.
	anchored bool
}

// scanResult describes one scanned segment.
type scanResult struct {
	records  int
	validEnd int64 // offset after the last good frame
	size     int64
	torn     error // set when the data ends in an incomplete or damaged frame
}

// scanSegment reads seg from the start and checks every frame against the
// chain in st, advancing it. A frame that cannot be read ends the scan
// with res.torn set: whether that is tolerable depends on whether it is
// the newest segment. A frame that reads but breaks the chain is a
// *LinkError. visit, when set, sees each good record.
func scanSegment(seg segment, st *chainState, visit func(Record)) (scanResult, error) {
	name := filepath.Base(seg.path)
	data, err := os.ReadFile(seg.path)
	if err != nil {
		return scanResult{}, fmt.Errorf("reading %s: %w", name, err)
	}
	res := scanResult{size: int64(len(data))}
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		if len(data) < len(magic) && strings.HasPrefix(magic, string(data)) {
			res.torn = fmt.Errorf("%w: segment header cut short", errTorn)
			return res, nil
		}
		return res, &LinkError{Segment: name, Seq: st.seq + 1, Problem: "not a WAL segment (bad magic)"}
	}
	off := int64(len(magic))
	res.validEnd = off
	if st.anchored && seg.first != st.seq+1 {
		return res, &LinkError{Segment: name, Offset: off, Seq: st.seq + 1,
			Problem: fmt.Sprintf("segment starts at seq %d: records %d..%d are missing", seg.first, st.seq+1, seg.first-1)}
	}
	for off < int64(len(data)) {
		payload, n, err := readFrame(data[off:])
		if err != nil {
			if completeFrameAfter(data[off+1:]) {
				// A crash cuts only the end of the file. A bad frame with
				// a complete one after it is damage, and cutting it off
				// would destroy the records that follow.
				return res, &LinkError{Segment: name, Offset: off, Seq: st.seq + 1,
					Problem: err.Error() + ", and complete records follow it (damage, not a torn write)"}
			}
			res.torn = err
			return res, nil
		}
		want := st.seq + 1
		if !st.anchored {
			want = seg.first
		}
		link := func(problem string) error {
			return &LinkError{Segment: name, Offset: off, Seq: want, Problem: problem}
		}
		r, err := parseRecord(payload)
		if err != nil {
			return res, link(err.Error())
		}
		switch {
		case r.Seq != want:
			return res, link(fmt.Sprintf("record has seq %d: records are missing, reordered or duplicated", r.Seq))
		case st.anchored && r.PrevHash != st.head:
			return res, link("prev_hash does not match the previous record's hash (a record before it was edited or removed)")
		case chainHash(r.PrevHash, r.Event) != r.Hash:
			return res, link("hash does not match sha256(prev_hash || event): the event was edited")
		}
		st.seq, st.head, st.anchored = r.Seq, r.Hash, true
		if visit != nil {
			visit(r)
		}
		off += int64(n)
		res.validEnd = off
		res.records++
	}
	return res, nil
}

// completeFrameAfter reports whether data holds a readable frame at any
// offset. Only offsets where a record payload starts are tried, so the
// search is cheap even over a long remainder.
func completeFrameAfter(data []byte) bool {
	const start = `{"event":`
	for i := 0; i+frameHeader+len(start) <= len(data); i++ {
		j := bytes.Index(data[i+frameHeader:], []byte(start))
		if j < 0 {
			return false
		}
		i += j
		if _, _, err := readFrame(data[i:]); err == nil {
			return true
		}
	}
	return false
}

// Summary describes a verified WAL.
type Summary struct {
	Segments int
	Records  int
	FirstSeq int64 // 0 when empty
	LastSeq  int64
	Head     [32]byte
	// TornBytes counts bytes after the last complete record of the newest
	// segment: a write cut short by a crash, removed at the next start.
	TornBytes int64
}

// ErrEmpty is returned by VerifyDir for a directory without segments.
var ErrEmpty = errors.New("no WAL segments")

// VerifyDir checks a WAL offline, without changing it: framing, canonical
// events, seq continuity across segments, and every hash link. It returns
// a *LinkError for the first broken link. A torn final frame in the newest
// segment is reported in the summary, not as an error; anywhere else it is
// damage.
func VerifyDir(dir string) (Summary, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return Summary{}, err
	}
	if len(segs) == 0 {
		return Summary{}, fmt.Errorf("%s: %w", dir, ErrEmpty)
	}
	cur, err := readCursor(dir)
	if err != nil {
		return Summary{}, err
	}
	st := anchor(segs, cur)
	var sum Summary
	for i, seg := range segs {
		res, err := scanSegment(seg, &st, nil)
		if err != nil {
			return sum, err
		}
		if res.torn != nil {
			if i != len(segs)-1 {
				return sum, &LinkError{Segment: filepath.Base(seg.path), Offset: res.validEnd, Seq: st.seq + 1, Problem: res.torn.Error()}
			}
			sum.TornBytes = res.size - res.validEnd
		}
		sum.Segments++
		sum.Records += res.records
	}
	if sum.Records > 0 {
		sum.FirstSeq = st.seq - int64(sum.Records) + 1
	}
	sum.LastSeq, sum.Head = st.seq, st.head
	return sum, nil
}
