package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"sort"
	"time"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// File is one file to put in a bundle.
type File struct {
	Path string
	Data []byte
}

// BuildOptions control Build. The zero value builds an unsigned bundle.
type BuildOptions struct {
	// SigningKey, when set, signs the manifest and adds manifest.sig.
	SigningKey ed25519.PrivateKey
}

// fileMode is the one mode every entry gets, so that the umask of the
// machine that built a bundle does not change its bytes.
const fileMode = 0o644

// Build writes a bundle. It fills m.Format when empty, normalises the
// times to UTC whole seconds, and sets m.Files to the SHA-256 of the given
// files (any Files value passed in is replaced), then validates.
//
// The output depends only on its inputs: entries are manifest.json, the
// files sorted by path, then manifest.sig; every header has mode 0644, uid
// and gid 0, no user or group names and mtime = created_at, in USTAR
// format; the gzip header has no name and no timestamp, and the compression
// level is fixed. The same inputs give the same bytes with the same Go
// release (compress/flate output may change between releases).
func Build(m Manifest, files []File, opts BuildOptions) ([]byte, error) {
	if opts.SigningKey != nil && len(opts.SigningKey) != ed25519.PrivateKeySize {
		return nil, errs.Errorf("build bundle: signing key has %d bytes, want %d", len(opts.SigningKey), ed25519.PrivateKeySize)
	}
	if m.Format == "" {
		m.Format = Format
	}
	m.CreatedAt = m.CreatedAt.UTC().Truncate(time.Second)
	m.ExpiresAt = m.ExpiresAt.UTC().Truncate(time.Second)

	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	m.Files = make(map[string]string, len(sorted))
	for i, f := range sorted {
		if err := CheckPath(f.Path); err != nil {
			return nil, errs.Errorf("build bundle: %w", err)
		}
		if i > 0 && sorted[i-1].Path == f.Path {
			return nil, errs.Errorf("build bundle: file %q given twice", f.Path)
		}
		sum := sha256.Sum256(f.Data)
		m.Files[f.Path] = hex.EncodeToString(sum[:])
	}
	manifest, err := m.Marshal()
	if err != nil {
		return nil, errs.Errorf("build bundle: %w", err)
	}

	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, errs.Errorf("build bundle: %w", err)
	}
	// NewWriterLevel leaves Name empty, ModTime zero and OS "unknown"; say
	// so explicitly, as these bytes are part of what must not vary.
	zw.Header = gzip.Header{OS: 255}
	tw := tar.NewWriter(zw)
	write := func(name string, data []byte) error {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Size:     int64(len(data)),
			Mode:     fileMode,
			ModTime:  m.CreatedAt,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return errs.Errorf("build bundle: %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return errs.Errorf("build bundle: %s: %w", name, err)
		}
		return nil
	}
	if err := write(ManifestPath, manifest); err != nil {
		return nil, err
	}
	for _, f := range sorted {
		if err := write(f.Path, f.Data); err != nil {
			return nil, err
		}
	}
	if opts.SigningKey != nil {
		if err := write(SignaturePath, EncodeSignature(ed25519.Sign(opts.SigningKey, manifest))); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, errs.Errorf("build bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, errs.Errorf("build bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// EncodeSignature renders a raw 64-byte Ed25519 signature the way
// manifest.sig stores it: standard base64 with padding and a newline, the
// form cosign's --signature flag and `base64 -d` read.
func EncodeSignature(sig []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sig))+1)
	base64.StdEncoding.Encode(out, sig)
	out[len(out)-1] = '\n'
	return out
}

// DecodeSignature is the strict inverse of EncodeSignature: exactly one
// canonical base64 encoding of 64 bytes, optionally followed by one newline.
func DecodeSignature(data []byte) ([]byte, error) {
	data = bytes.TrimSuffix(data, []byte("\n"))
	sig, err := base64.StdEncoding.Strict().DecodeString(string(data))
	if err != nil {
		return nil, errs.Errorf("%w: %s: %v", ErrInvalid, SignaturePath, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, errs.Errorf("%w: %s: %d bytes, want %d", ErrInvalid, SignaturePath, len(sig), ed25519.SignatureSize)
	}
	// The decoder skips embedded newlines; only the canonical text is
	// accepted so that one signature has one encoding.
	if enc := EncodeSignature(sig); !bytes.Equal(enc[:len(enc)-1], data) {
		return nil, errs.Errorf("%w: %s: not canonical base64", ErrInvalid, SignaturePath)
	}
	return sig, nil
}
