package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// tarOf writes entries with archive/tar in the given format.
func tarOf(t *testing.T, format tar.Format, hdrs ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, h := range hdrs {
		h.Format = format
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := w.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestUstarReader(t *testing.T) {
	long := strings.Repeat("d/", 60) + "file.json" // needs the prefix field
	data := tarOf(t, tar.FormatUSTAR,
		&tar.Header{Name: "a.json", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644},
		&tar.Header{Name: long, Typeflag: tar.TypeReg, Size: 600, Mode: 0o644})
	r := &ustarReader{r: bytes.NewReader(data)}
	h, err := r.Next()
	if err != nil || h.Name != "a.json" || h.Size != 3 || h.Typeflag != '0' {
		t.Fatalf("first: %+v %v", h, err)
	}
	// Skipping unread content must land on the next header.
	h, err = r.Next()
	if err != nil || h.Name != long || h.Size != 600 {
		t.Fatalf("second: %+v %v", h, err)
	}
	content, err := io.ReadAll(r)
	if err != nil || len(content) != 600 {
		t.Fatalf("content: %d %v", len(content), err)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}

	bad := []struct {
		name string
		data []byte
		want string
	}{
		{"gnu format", tarOf(t, tar.FormatGNU, &tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1}), "not a USTAR header"},
		{"bad checksum", func() []byte { d := append([]byte(nil), data...); d[0] = 'b'; return d }(), "checksum mismatch"},
		{"truncated header", data[:100], io.ErrUnexpectedEOF.Error()},
		{"bad size", func() []byte {
			d := append([]byte(nil), data...)
			copy(d[124:136], "9999999999 \x00")
			rechecksum(d[:tarBlock])
			return d
		}(), "size field"},
	}
	// A PAX extended header is read as an entry of type 'x', which Open
	// refuses as "not a regular file": its records are never interpreted.
	pax := tarOf(t, tar.FormatPAX, &tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1, PAXRecords: map[string]string{"comment": "x"}})
	if h, err := (&ustarReader{r: bytes.NewReader(pax)}).Next(); err != nil || h.Typeflag != tar.TypeXHeader {
		t.Errorf("pax: %+v %v", h, err)
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&ustarReader{r: bytes.NewReader(tc.data)}).Next()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// rechecksum recomputes a header's checksum after a test edited it.
func rechecksum(h []byte) {
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:156], []byte(fmt.Sprintf("%06o\x00 ", sum)))
}
