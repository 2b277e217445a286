package wal

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/aegis-mesh/aegis/jcs"
)

// FuzzCanonical: whatever Canonical accepts, it accepts again and maps to
// itself (one canonical form per event), and the shared jcs package (used
// by the control plane and the filter for other documents) gives the same
// bytes: the WAL's encoder is narrower (integers only), never different.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `{"b":[1,2,{"c":null}],"a":"\u00e9"}`, `{"😀":1,"":2}`, `{"a":1.0}`, `{"a":1,"a":2}`, `[]`, `{"s":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Canonical(in)
		if err != nil {
			return
		}
		c2, err := Canonical(c)
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("Canonical(%q) = %q, not a fixed point: %q, %v", in, c, c2, err)
		}
		ref, err := jcs.Canonicalize(in)
		if err != nil || !bytes.Equal(c, ref) {
			t.Fatalf("Canonical(%q) = %q, jcs.Canonicalize = %q, %v", in, c, ref, err)
		}
	})
}

// FuzzSegment: any bytes as the only segment. VerifyDir and Open never
// panic; when Open recovers a WAL, the recovered WAL verifies, has no torn
// bytes, and keeps every record VerifyDir counted.
func FuzzSegment(f *testing.F) {
	dir := f.TempDir()
	w, err := Open(dir, Options{NodeID: "edge-1"})
	if err != nil {
		f.Fatal(err)
	}
	if _, _, err := w.Append(context.Background(), events(0, 3)); err != nil {
		f.Fatal(err)
	}
	w.Close()
	good, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte(magic))
	f.Add([]byte(magic[:3]))
	f.Add(append(append([]byte{}, good...), make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		sum, verr := VerifyDir(dir)
		w, err := Open(dir, Options{NodeID: "edge-1"})
		if err != nil {
			if verr == nil && sum.Records > 0 {
				t.Fatalf("VerifyDir accepted %d records, Open refused: %v", sum.Records, err)
			}
			return
		}
		defer w.Close()
		if verr != nil {
			t.Fatalf("Open accepted what VerifyDir refused: %v", verr)
		}
		if s, _ := w.Head(); s != sum.LastSeq {
			t.Fatalf("Open head %d, VerifyDir last %d", s, sum.LastSeq)
		}
		after, err := VerifyDir(dir)
		if err != nil || after.TornBytes != 0 || after.LastSeq != sum.LastSeq {
			t.Fatalf("after recovery: %+v, %v", after, err)
		}
	})
}

func FuzzCursor(f *testing.F) {
	f.Add([]byte(`{"hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":0}`))
	f.Add([]byte(`{"seq":1}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := parseCursor(in)
		if err != nil {
			return
		}
		dir := t.TempDir()
		if err := writeCursor(dir, c); err != nil {
			t.Fatal(err)
		}
		c2, err := readCursor(dir)
		if err != nil || c2 != c {
			t.Fatalf("round trip %+v -> %+v, %v", c, c2, err)
		}
	})
}
