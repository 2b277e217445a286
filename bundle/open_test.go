package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// entry is one raw tar entry for hand-made archives that Build refuses to
// produce.
type entry struct {
	name     string
	data     []byte
	typeflag byte
	linkname string
}

func rawTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typeflag
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.data))
		if typ != tar.TypeReg {
			size = 0
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.linkname, Size: size, Mode: 0o644}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if size > 0 {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manifestFor returns signed-style manifest bytes listing files.
func manifestFor(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	m := testManifest()
	m.Format = Format
	m.Files = map[string]string{}
	for p, d := range files {
		sum := sha256.Sum256(d)
		m.Files[p] = hex.EncodeToString(sum[:])
	}
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenRejects(t *testing.T) {
	plan := []byte(`{"static":{}}`)
	man := manifestFor(t, map[string][]byte{"plan.json": plan})
	manTwo := manifestFor(t, map[string][]byte{"plan.json": plan, "data.json": []byte("{}")})
	manDotDot := bytes.Replace(man, []byte(`"plan.json"`), []byte(`"../plan.json"`), 1)
	good := []entry{{name: ManifestPath, data: man}, {name: "plan.json", data: plan}}
	with := func(extra ...entry) []entry { return append(append([]entry(nil), good...), extra...) }
	sig := EncodeSignature(make([]byte, 64))
	goodTar := rawTar(t, good)
	big := make([]byte, 2000)
	bigTar := rawTar(t, []entry{{name: ManifestPath, data: manifestFor(t, map[string][]byte{"plan.json": big})}, {name: "plan.json", data: big}})
	bomb := rawTar(t, []entry{{name: ManifestPath, data: man}, {name: "plan.json", data: make([]byte, 4<<20)}})

	tests := []struct {
		name string
		data []byte
		lim  Limits
		want error
		msg  string
	}{
		{"empty input", nil, Limits{}, ErrInvalid, "not gzip"},
		{"not gzip", []byte("PK\x03\x04 zip file"), Limits{}, ErrInvalid, "not gzip"},
		{"gzip of garbage", gz(t, []byte("hello, this is not a tar archive at all, just text")), Limits{}, ErrInvalid, ""},
		{"empty tar", gz(t, rawTar(t, nil)), Limits{}, ErrInvalid, "empty archive"},
		{"trailing bytes after gzip", append(gz(t, goodTar), "junk"...), Limits{}, ErrInvalid, "after the gzip stream"},
		{"second gzip member", append(gz(t, goodTar), gz(t, goodTar)...), Limits{}, ErrInvalid, "after the gzip stream"},
		{"data after tar end", gz(t, append(bytes.Clone(goodTar), "hidden"...)), Limits{}, ErrInvalid, "after the tar end"},
		{"truncated gzip", gz(t, goodTar)[:40], Limits{}, ErrInvalid, ""},
		{"archive over limit", gz(t, goodTar), Limits{MaxArchiveBytes: 10}, ErrTooLarge, "archive is"},
		{"entry over limit", gz(t, bigTar), Limits{MaxFileBytes: 1000}, ErrTooLarge, `"plan.json" is 2000 bytes`},
		{"total over limit", gz(t, goodTar), Limits{MaxTotalBytes: len64(man) + 5}, ErrTooLarge, "in total"},
		{"too many entries", gz(t, goodTar), Limits{MaxEntries: 1}, ErrTooLarge, "entries"},
		{"gzip bomb", gz(t, bomb), Limits{MaxTotalBytes: 1 << 20, MaxFileBytes: 8 << 20}, ErrTooLarge, ""},
		{"zero bomb after tar end", gz(t, append(bytes.Clone(goodTar), make([]byte, 8<<20)...)), Limits{MaxTotalBytes: 1 << 20}, ErrTooLarge, "decompressed data exceeds"},
		{"manifest missing", gz(t, rawTar(t, good[1:])), Limits{}, ErrInvalid, "first entry"},
		{"manifest not first", gz(t, rawTar(t, []entry{good[1], good[0]})), Limits{}, ErrInvalid, "first entry"},
		{"manifest twice", gz(t, rawTar(t, with(entry{name: ManifestPath, data: man}))), Limits{}, ErrInvalid, "duplicate"},
		{"duplicate file", gz(t, rawTar(t, with(entry{name: "plan.json", data: plan}))), Limits{}, ErrInvalid, "duplicate"},
		{"unlisted file", gz(t, rawTar(t, with(entry{name: "extra.rego", data: []byte("x")}))), Limits{}, ErrInvalid, "not listed"},
		{"listed file missing", gz(t, rawTar(t, []entry{{name: ManifestPath, data: manTwo}, {name: "plan.json", data: plan}})), Limits{}, ErrInvalid, "not in the archive"},
		{"hash mismatch", gz(t, rawTar(t, []entry{{name: ManifestPath, data: man}, {name: "plan.json", data: []byte(`{"static":{},"x":1}`)}})), Limits{}, ErrInvalid, "sha256"},
		{"dotdot path", gz(t, rawTar(t, []entry{{name: ManifestPath, data: manDotDot}, {name: "../plan.json", data: plan}})), Limits{}, ErrInvalid, `".."`},
		{"absolute path", gz(t, rawTar(t, with(entry{name: "/etc/passwd", data: []byte("x")}))), Limits{}, ErrInvalid, "absolute"},
		{"backslash path", gz(t, rawTar(t, with(entry{name: `a\b`, data: []byte("x")}))), Limits{}, ErrInvalid, "contains byte"},
		{"dot segment", gz(t, rawTar(t, with(entry{name: "./plan.json", data: plan}))), Limits{}, ErrInvalid, `"."`},
		{"symlink", gz(t, rawTar(t, with(entry{name: "link", typeflag: tar.TypeSymlink, linkname: "/etc/passwd"}))), Limits{}, ErrInvalid, "not a regular file"},
		{"hard link", gz(t, rawTar(t, with(entry{name: "hard", typeflag: tar.TypeLink, linkname: "plan.json"}))), Limits{}, ErrInvalid, "not a regular file"},
		{"directory", gz(t, rawTar(t, with(entry{name: "dir/", typeflag: tar.TypeDir}))), Limits{}, ErrInvalid, "not a regular file"},
		{"fifo", gz(t, rawTar(t, with(entry{name: "fifo", typeflag: tar.TypeFifo}))), Limits{}, ErrInvalid, "not a regular file"},
		{"signature not last", gz(t, rawTar(t, []entry{good[0], {name: SignaturePath, data: sig}, good[1]})), Limits{}, ErrInvalid, "must be last"},
		{"signature not base64", gz(t, rawTar(t, with(entry{name: SignaturePath, data: []byte("!!!!\n")}))), Limits{}, ErrInvalid, SignaturePath},
		{"signature wrong length", gz(t, rawTar(t, with(entry{name: SignaturePath, data: EncodeSignature(make([]byte, 63))}))), Limits{}, ErrInvalid, "63 bytes"},
		{"signature with inner newline", gz(t, rawTar(t, with(entry{name: SignaturePath, data: append(append(bytes.Clone(sig[:40]), '\n'), sig[40:]...)}))), Limits{}, ErrInvalid, "canonical"},
		{"manifest invalid", gz(t, rawTar(t, []entry{{name: ManifestPath, data: bytes.Replace(man, []byte(`"runtime"`), []byte(`"other"`), 1)}, good[1]})), Limits{}, ErrInvalid, "kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Open(tt.data, tt.lim)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, %v; want %v", b, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.msg)
			}
		})
	}
}

func len64(b []byte) int64 { return int64(len(b)) }

func TestOpenAcceptsHandMadeArchive(t *testing.T) {
	// A bundle from another tar writer (no USTAR fixing, default gzip
	// level, files out of order) opens as long as its content is right.
	plan := []byte(`{"static":{}}`)
	data := []byte(`{}`)
	man := manifestFor(t, map[string][]byte{"plan.json": plan, "data.json": data})
	raw := rawTar(t, []entry{{name: ManifestPath, data: man}, {name: "plan.json", data: plan}, {name: "data.json", data: data}})
	// GNU tar pads archives to 10 KiB records with zeros: still fine.
	raw = append(raw, make([]byte, 10240-len(raw)%10240)...)
	b, err := Open(gz(t, raw), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Files) != 2 || b.Signature != nil {
		t.Fatalf("bundle = %+v", b)
	}
}

func FuzzOpen(f *testing.F) {
	key := testKey(f)
	signed, err := Build(testManifest(), testFiles(), BuildOptions{SigningKey: key})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	unsigned, err := Build(testManifest(), testFiles(), BuildOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(unsigned)
	f.Add(gz(f, []byte("not tar")))
	f.Add([]byte{0x1f, 0x8b})
	f.Add(signed[:len(signed)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Open(data, Limits{MaxTotalBytes: 1 << 20, MaxFileBytes: 1 << 20, MaxEntries: 64})
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		// Whatever opened must be internally consistent.
		if len(b.Files) != len(b.Manifest.Files) {
			t.Fatalf("%d files, manifest lists %d", len(b.Files), len(b.Manifest.Files))
		}
		for p, d := range b.Files {
			if err := CheckPath(p); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(d)
			if hex.EncodeToString(sum[:]) != b.Manifest.Files[p] {
				t.Fatalf("%s: hash mismatch accepted", p)
			}
		}
		if _, err := ParseManifest(b.ManifestBytes); err != nil {
			t.Fatalf("accepted manifest fails to parse: %v", err)
		}
		if b.Signature != nil && len(b.Signature) != 64 {
			t.Fatalf("signature of %d bytes", len(b.Signature))
		}
	})
}
