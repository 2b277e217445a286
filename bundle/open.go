package bundle

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// Errors returned by Open. Every rejection wraps one of them; the message
// names the entry and the problem.
var (
	// ErrInvalid: the archive or its manifest is malformed or inconsistent.
	ErrInvalid = errors.New("invalid bundle")
	// ErrTooLarge: a size or count limit was exceeded.
	ErrTooLarge = errors.New("bundle too large")
)

// Limits bound what Open accepts. Zero fields take the DefaultLimits value.
type Limits struct {
	MaxArchiveBytes int64 // compressed input
	MaxTotalBytes   int64 // sum of all entry sizes after decompression
	MaxFileBytes    int64 // any one entry
	MaxEntries      int   // entries, manifest and signature included
}

// DefaultLimits fit an archive bundle with an OPA wasm module; a filter may
// pass tighter ones for runtime bundles.
var DefaultLimits = Limits{
	MaxArchiveBytes: 16 << 20,
	MaxTotalBytes:   64 << 20,
	MaxFileBytes:    32 << 20,
	MaxEntries:      1024,
}

func (l Limits) withDefaults() Limits {
	if l.MaxArchiveBytes <= 0 {
		l.MaxArchiveBytes = DefaultLimits.MaxArchiveBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultLimits.MaxTotalBytes
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultLimits.MaxFileBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultLimits.MaxEntries
	}
	return l
}

// Bundle is an opened bundle whose files match its manifest. Opening does
// not check the signature or the validity window: call Verify.
type Bundle struct {
	Manifest Manifest
	// ManifestBytes are the exact bytes of manifest.json, the signed payload.
	ManifestBytes []byte
	// Signature is the raw Ed25519 signature, nil for an unsigned bundle.
	Signature []byte
	// Files maps each manifest path to its content.
	Files map[string][]byte
}

// Paths returns the file paths in sorted order.
func (b *Bundle) Paths() []string {
	ps := make([]string, 0, len(b.Files))
	for p := range b.Files {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// tarBlock is the tar record unit; headers and padding are counted in it
// when bounding the decompressed stream.
const tarBlock = 512

// Open reads a bundle strictly. It rejects: input that is not one gzip
// member holding one tar stream, anything after either; entries other than
// regular files (directories, links, devices, PAX global headers); unsafe
// or duplicate paths; manifest.json not first, manifest.sig not last;
// entries the manifest does not list, listed files that are missing, and
// SHA-256 mismatches; and anything over the limits, counting decompressed
// bytes as they are produced so that a gzip bomb stops at the limit.
func Open(data []byte, lim Limits) (*Bundle, error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxArchiveBytes {
		return nil, errs.Errorf("%w: archive is %d bytes, limit %d", ErrTooLarge, len(data), lim.MaxArchiveBytes)
	}
	src := bytes.NewReader(data)
	zr, err := gzip.NewReader(src)
	if err != nil {
		return nil, errs.Errorf("%w: not gzip: %v", ErrInvalid, err)
	}
	zr.Multistream(false)
	// Every entry costs at most one header block, one block of padding and
	// possibly a PAX header pair; the end marker is two blocks.
	budget := lim.MaxTotalBytes + int64(lim.MaxEntries+1)*4*tarBlock + 2*tarBlock
	lr := &limitedReader{r: zr, n: budget}
	tr := &ustarReader{r: lr}

	b := &Bundle{Files: map[string][]byte{}}
	var total int64
	entries := 0
	sawSig := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, wrapRead("read tar header", err)
		}
		entries++
		if entries > lim.MaxEntries {
			return nil, errs.Errorf("%w: more than %d entries", ErrTooLarge, lim.MaxEntries)
		}
		name := hdr.Name
		if hdr.Typeflag != ustarTypeReg && hdr.Typeflag != ustarTypeRegA {
			return nil, errs.Errorf("%w: entry %q: type %q is not a regular file", ErrInvalid, name, hdr.Typeflag)
		}
		if sawSig {
			return nil, errs.Errorf("%w: entry %q after %s (the signature must be last)", ErrInvalid, name, SignaturePath)
		}
		switch {
		case entries == 1 && name != ManifestPath:
			return nil, errs.Errorf("%w: first entry is %q, want %s", ErrInvalid, name, ManifestPath)
		case entries > 1 && name == ManifestPath:
			return nil, errs.Errorf("%w: duplicate entry %q", ErrInvalid, name)
		case name == SignaturePath:
			sawSig = true
		case name != ManifestPath:
			if err := CheckPath(name); err != nil {
				return nil, errs.Errorf("%w: entry: %v", ErrInvalid, err)
			}
			if _, dup := b.Files[name]; dup {
				return nil, errs.Errorf("%w: duplicate entry %q", ErrInvalid, name)
			}
		}
		if hdr.Size < 0 || hdr.Size > lim.MaxFileBytes {
			return nil, errs.Errorf("%w: entry %q is %d bytes, limit %d", ErrTooLarge, name, hdr.Size, lim.MaxFileBytes)
		}
		if total += hdr.Size; total > lim.MaxTotalBytes {
			return nil, errs.Errorf("%w: entries exceed %d bytes in total", ErrTooLarge, lim.MaxTotalBytes)
		}
		content := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, content); err != nil {
			return nil, wrapRead(fmt.Sprintf("read entry %q", name), err)
		}
		switch name {
		case ManifestPath:
			b.ManifestBytes = content
		case SignaturePath:
			sig, err := DecodeSignature(content)
			if err != nil {
				return nil, err
			}
			b.Signature = sig
		default:
			b.Files[name] = content
		}
	}
	if entries == 0 {
		return nil, errs.Errorf("%w: empty archive, want %s", ErrInvalid, ManifestPath)
	}
	// tar stops at the first zero block; whatever follows must be the rest
	// of the end marker, or data is hiding after the archive.
	rest, err := io.ReadAll(lr)
	if err != nil {
		return nil, wrapRead("read after tar end", err)
	}
	if len(bytes.Trim(rest, "\x00")) != 0 {
		return nil, errs.Errorf("%w: data after the tar end marker", ErrInvalid)
	}
	if src.Len() != 0 {
		return nil, errs.Errorf("%w: %d bytes after the gzip stream", ErrInvalid, src.Len())
	}

	m, err := ParseManifest(b.ManifestBytes)
	if err != nil {
		return nil, err
	}
	b.Manifest = *m
	for _, p := range b.Paths() {
		want, listed := m.Files[p]
		if !listed {
			return nil, errs.Errorf("%w: entry %q is not listed in the manifest", ErrInvalid, p)
		}
		sum := sha256.Sum256(b.Files[p])
		if got := hex.EncodeToString(sum[:]); got != want {
			return nil, errs.Errorf("%w: %q has sha256 %s, manifest says %s", ErrInvalid, p, got, want)
		}
	}
	if len(b.Files) != len(m.Files) {
		for _, p := range sortedKeys(m.Files) {
			if _, ok := b.Files[p]; !ok {
				return nil, errs.Errorf("%w: manifest lists %q, which is not in the archive", ErrInvalid, p)
			}
		}
	}
	return b, nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func wrapRead(what string, err error) error {
	if errors.Is(err, ErrTooLarge) {
		return errs.Errorf("%w: decompressed data exceeds the limit (%s)", ErrTooLarge, what)
	}
	return errs.Errorf("%w: %s: %v", ErrInvalid, what, err)
}

// limitedReader fails with ErrTooLarge, instead of io.LimitReader's silent
// EOF, so that a truncated read cannot pass for a short archive.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// Allow a zero-length probe for EOF without failing.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
