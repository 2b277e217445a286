package wal

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func events(from, n int) []json.RawMessage {
	out := make([]json.RawMessage, n)
	for i := range n {
		out[i] = json.RawMessage(fmt.Sprintf(
			`{"id":"d%d","tenant":"acme","agent":"billing-agent","chain":["billing-agent"],"action":"allow","reasons":[],"decision_ns":%d,"seq":7,"node_id":"vm"}`,
			from+i, 1000+i))
	}
	return out
}

func open(t *testing.T, dir string, opts Options) *WAL {
	t.Helper()
	if opts.NodeID == "" {
		opts.NodeID = "edge-1"
	}
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func appendN(t *testing.T, w *WAL, from, n int) {
	t.Helper()
	if _, _, err := w.Append(context.Background(), events(from, n)); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func readAll(t *testing.T, w *WAL, from int64) []Record {
	t.Helper()
	var out []Record
	for {
		rs, err := w.Read(from, 7, 1<<20)
		if err != nil {
			t.Fatalf("Read(%d): %v", from, err)
		}
		if len(rs) == 0 {
			return out
		}
		out = append(out, rs...)
		from = rs[len(rs)-1].Seq + 1
	}
}

func TestAppendChainsAndStamps(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{})
	first, last, err := w.Append(context.Background(), events(0, 3))
	if err != nil || first != 1 || last != 3 {
		t.Fatalf("Append = %d, %d, %v", first, last, err)
	}
	appendN(t, w, 3, 2)
	rs := readAll(t, w, 1)
	if len(rs) != 5 {
		t.Fatalf("read %d records, want 5", len(rs))
	}
	var prev [32]byte
	for i, r := range rs {
		var ev map[string]any
		if err := json.Unmarshal(r.Event, &ev); err != nil {
			t.Fatal(err)
		}
		if r.Seq != int64(i+1) || ev["seq"] != float64(i+1) || ev["node_id"] != "edge-1" || ev["id"] != fmt.Sprintf("d%d", i) {
			t.Errorf("record %d: seq %d event %s", i, r.Seq, r.Event)
		}
		if r.PrevHash != prev {
			t.Errorf("record %d: prev_hash does not chain", i)
		}
		want := sha256.Sum256(append(prev[:], r.Event...))
		if r.Hash != want {
			t.Errorf("record %d: hash is not sha256(prev || event)", i)
		}
		prev = r.Hash
	}
	sum, err := VerifyDir(dir)
	if err != nil || sum.Records != 5 || sum.FirstSeq != 1 || sum.LastSeq != 5 || sum.Head != prev {
		t.Fatalf("VerifyDir = %+v, %v", sum, err)
	}
}

func TestAppendRefusesBadEvents(t *testing.T) {
	w := open(t, t.TempDir(), Options{})
	for _, tc := range []struct{ name, event string }{
		{"duplicate key", `{"id":"a","id":"b"}`},
		{"float", `{"id":"a","decision_ns":1.5}`},
		{"unsafe integer", `{"id":"a","decision_ns":9007199254740993}`},
		{"not an object", `["a"]`},
		{"trailing data", `{"id":"a"} {}`},
		{"invalid utf-8", "{\"id\":\"\xff\"}"},
		{"lone surrogate", `{"id":"\ud800"}`},
		{"truncated", `{"id":"a"`},
		{"too deep", strings.Repeat(`{"a":`, 20) + "1" + strings.Repeat("}", 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := w.Append(context.Background(), append(events(0, 1), json.RawMessage(tc.event)))
			if err == nil {
				t.Fatal("accepted")
			}
			if s, _ := w.Head(); s != 0 {
				t.Fatalf("a refused call appended %d records", s)
			}
		})
	}
}

func TestReopenContinuesChain(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{SegmentBytes: 1024})
	appendN(t, w, 0, 10)
	appendN(t, w, 10, 10)
	seq, head := w.Head()
	w.Close()
	segs, _ := listSegments(dir)
	if len(segs) < 2 {
		t.Fatalf("%d segments: rotation did not happen", len(segs))
	}
	w2 := open(t, dir, Options{SegmentBytes: 1024})
	if s, h := w2.Head(); s != seq || h != head {
		t.Fatalf("reopened head %d, want %d", s, seq)
	}
	appendN(t, w2, 20, 5)
	if rs := readAll(t, w2, 1); len(rs) != 25 {
		t.Fatalf("read %d records, want 25", len(rs))
	}
	if _, err := VerifyDir(dir); err != nil {
		t.Fatal(err)
	}
}

func TestAckRemovesShippedSegmentsAndAnchors(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir, Options{SegmentBytes: 1024})
	for i := range 6 {
		appendN(t, w, i*5, 5)
	}
	rs := readAll(t, w, 1)
	if len(rs) != 30 {
		t.Fatalf("read %d", len(rs))
	}
	if err := w.Ack(20, rs[19].Hash); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	if segs[0].first > 21 || segs[0].first == 1 {
		t.Fatalf("after ack of 20 the first segment starts at %d", segs[0].first)
	}
	if got := w.Depth(); got != 10 {
		t.Errorf("depth %d, want 10", got)
	}
	if rest := readAll(t, w, 21); len(rest) != 10 || rest[0].Seq != 21 {
		t.Fatalf("resume read %d records", len(rest))
	}
	w.Close()
	w2 := open(t, dir, Options{SegmentBytes: 1024})
	if w2.Shipped() != 20 {
		t.Fatalf("shipped cursor %d after reopen", w2.Shipped())
	}
	sum, err := VerifyDir(dir)
	if err != nil || sum.LastSeq != 30 {
		t.Fatalf("VerifyDir %+v %v", sum, err)
	}
	// Everything shipped and removed except the open segment: the
	// cursor alone anchors the chain.
	if err := w2.Ack(30, rs[29].Hash); err != nil {
		t.Fatal(err)
	}
	appendN(t, w2, 30, 1)
	w2.Close()
	w3 := open(t, dir, Options{SegmentBytes: 1024})
	if s, _ := w3.Head(); s != 31 {
		t.Fatalf("head %d, want 31", s)
	}
}

// TestTornTailRecovery cuts the newest segment at every byte of its last
// frame: Open keeps every complete record and drops only the partial one.
func TestTornTailRecovery(t *testing.T) {
	base := t.TempDir()
	w := open(t, base, Options{})
	appendN(t, w, 0, 3)
	_, headBefore := w.Head()
	appendN(t, w, 3, 1)
	w.Close()
	segs, _ := listSegments(base)
	data, err := os.ReadFile(segs[0].path)
	if err != nil {
		t.Fatal(err)
	}
	full := len(data)
	// Start of the last frame: walk the frames.
	off := len(magic)
	var starts []int
	for off < full {
		_, n, err := readFrame(data[off:])
		if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, off)
		off += n
	}
	lastStart := starts[len(starts)-1]
	for cut := lastStart; cut < full; cut++ {
		dir := t.TempDir()
		p := filepath.Join(dir, filepath.Base(segs[0].path))
		if err := os.WriteFile(p, data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyDir(dir); err != nil {
			t.Fatalf("cut at %d: VerifyDir: %v", cut, err)
		}
		w, err := Open(dir, Options{NodeID: "edge-1"})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if s, h := w.Head(); s != 3 || h != headBefore {
			t.Fatalf("cut at %d: head %d, want 3", cut, s)
		}
		appendN(t, w, 3, 1)
		w.Close()
		if sum, err := VerifyDir(dir); err != nil || sum.LastSeq != 4 || sum.TornBytes != 0 {
			t.Fatalf("cut at %d: after recovery %+v %v", cut, sum, err)
		}
	}
}

// frames returns the byte ranges of the frames of a segment.
func frames(t *testing.T, data []byte) [][2]int {
	t.Helper()
	var out [][2]int
	off := len(magic)
	for off < len(data) {
		_, n, err := readFrame(data[off:])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]int{off, off + n})
		off += n
	}
	return out
}

// reframe rewrites the CRC of the frame at off, as a tamperer would.
func reframe(data []byte, off int) {
	size := int(binary.BigEndian.Uint32(data[off:]))
	binary.BigEndian.PutUint32(data[off+4:], crc32.Checksum(data[off+8:off+8+size], crcTable))
}

func TestVerifyFindsTampering(t *testing.T) {
	src := t.TempDir()
	w := open(t, src, Options{})
	appendN(t, w, 0, 5)
	w.Close()
	segs, _ := listSegments(src)
	orig, _ := os.ReadFile(segs[0].path)
	fr := frames(t, orig)
	name := filepath.Base(segs[0].path)

	for _, tc := range []struct {
		name    string
		edit    func([]byte) []byte
		wantSeq int64
		want    string
	}{
		{"edited event, CRC fixed", func(d []byte) []byte {
			i := strings.Index(string(d[fr[2][0]:fr[2][1]]), "billing-agent") + fr[2][0]
			d[i] = 'B'
			reframe(d, fr[2][0])
			return d
		}, 3, "event was edited"},
		{"deleted record", func(d []byte) []byte {
			return append(d[:fr[1][0]:fr[1][0]], d[fr[1][1]:]...)
		}, 2, "seq 3"},
		{"edited event, CRC not fixed", func(d []byte) []byte {
			d[fr[1][0]+20] ^= 1
			return d
		}, 2, "CRC mismatch"},
		{"swapped records", func(d []byte) []byte {
			out := append([]byte{}, d[:fr[1][0]]...)
			out = append(out, d[fr[2][0]:fr[2][1]]...)
			out = append(out, d[fr[1][0]:fr[1][1]]...)
			return append(out, d[fr[2][1]:]...)
		}, 2, "seq 3"},
		{"rehashed record", func(d []byte) []byte {
			// Edit record 2 and recompute its hash: record 3's prev_hash
			// no longer matches.
			rec, _ := parseRecord(d[fr[1][0]+8 : fr[1][1]])
			ev := strings.Replace(string(rec.Event), "billing-agent", "billing-agenT", 1)
			rec.Event = json.RawMessage(ev)
			rec.Hash = chainHash(rec.PrevHash, rec.Event)
			out := append([]byte{}, d[:fr[1][0]]...)
			out = appendFrame(out, &rec)
			return append(out, d[fr[1][1]:]...)
		}, 3, "prev_hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := tc.edit(append([]byte{}, orig...))
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := VerifyDir(dir)
			var le *LinkError
			if !errors.As(err, &le) {
				t.Fatalf("VerifyDir: %v, want a *LinkError", err)
			}
			if le.Seq != tc.wantSeq || !strings.Contains(le.Error(), tc.want) {
				t.Fatalf("LinkError %v, want seq %d and %q", le, tc.wantSeq, tc.want)
			}
			if _, err := Open(dir, Options{NodeID: "edge-1"}); err == nil {
				t.Fatal("Open accepted a tampered WAL")
			}
		})
	}
}

func TestCursorParse(t *testing.T) {
	good := `{"hash":"` + strings.Repeat("ab", 32) + `","seq":4}`
	if c, err := parseCursor([]byte(good)); err != nil || c.Seq != 4 {
		t.Fatalf("parseCursor(good) = %+v, %v", c, err)
	}
	for _, bad := range []string{
		``, `{}`, `{"seq":-1,"hash":"` + strings.Repeat("ab", 32) + `"}`,
		`{"seq":1,"hash":"` + strings.Repeat("AB", 32) + `"}`,
		`{"seq":1,"hash":"ab"}`, good + `{}`, `{"seq":1,"hash":"` + strings.Repeat("ab", 32) + `","x":1}`,
	} {
		if _, err := parseCursor([]byte(bad)); err == nil {
			t.Errorf("parseCursor(%q) accepted", bad)
		}
	}
}

func TestCanonicalVectors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"b":1,"a":[true,null,"x"]}`, `{"a":[true,null,"x"],"b":1}`},
		{`{"s":"\u00e9\n\u001f\"/"}`, `{"s":"é\n\u001f\"/"}`},
		// UTF-16 order: U+E000 sorts before U+1F600 (a surrogate pair).
		{`{"😀":1,"":2}`, `{"":2,"😀":1}`},
		{` { "n" : -5 } `, `{"n":-5}`},
	} {
		got, err := Canonical([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
