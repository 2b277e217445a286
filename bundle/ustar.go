package bundle

import (
	"bytes"
	"errors"
	"io"

	"github.com/aegis-mesh/aegis/internal/errs"
)

// ustarReader reads the one tar dialect Build writes: USTAR headers for
// regular files, nothing else. It replaces archive/tar on the reading side
// because archive/tar's reader keeps os.File's methods reachable, which
// makes a wasm filter import WASI calls Envoy does not provide
// (fd_filestat_get). Being narrower than archive/tar is also the point:
// PAX, GNU and sparse extensions are refused instead of interpreted.
type ustarReader struct {
	r         io.Reader
	remaining int64 // content bytes of the current entry not yet read
	pad       int64 // padding after the current entry's content
	blk       [tarBlock]byte
}

// ustarHeader is what Open needs from a header.
type ustarHeader struct {
	Name     string
	Typeflag byte
	Size     int64
}

const (
	ustarTypeReg  = '0'
	ustarTypeRegA = '\x00' // pre-POSIX spelling of a regular file
)

var errUstar = errors.New("tar")

// Next skips what is left of the current entry and reads the next header.
// It returns io.EOF at the first all-zero block (the end marker).
func (u *ustarReader) Next() (*ustarHeader, error) {
	if skip := u.remaining + u.pad; skip > 0 {
		if _, err := io.CopyN(io.Discard, u.r, skip); err != nil {
			return nil, unexpected(err)
		}
		u.remaining, u.pad = 0, 0
	}
	if _, err := io.ReadFull(u.r, u.blk[:]); err != nil {
		return nil, unexpected(err)
	}
	b := u.blk[:]
	if bytes.Count(b, []byte{0}) == len(b) {
		return nil, io.EOF
	}
	want, err := parseOctal(b[148:156])
	if err != nil {
		return nil, errs.Errorf("%w: header checksum field: %v", errUstar, err)
	}
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	if sum != want {
		return nil, errs.Errorf("%w: header checksum mismatch", errUstar)
	}
	if string(b[257:263]) != "ustar\x00" || string(b[263:265]) != "00" {
		return nil, errs.Errorf("%w: not a USTAR header", errUstar)
	}
	size, err := parseOctal(b[124:136])
	if err != nil {
		return nil, errs.Errorf("%w: size field: %v", errUstar, err)
	}
	name := cString(b[0:100])
	if prefix := cString(b[345:500]); prefix != "" {
		name = prefix + "/" + name
	}
	u.remaining = size
	u.pad = (tarBlock - size%tarBlock) % tarBlock
	return &ustarHeader{Name: name, Typeflag: b[156], Size: size}, nil
}

// Read reads the current entry's content.
func (u *ustarReader) Read(p []byte) (int, error) {
	if u.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > u.remaining {
		p = p[:u.remaining]
	}
	n, err := u.r.Read(p)
	u.remaining -= int64(n)
	if errors.Is(err, io.EOF) && u.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseOctal reads a NUL- or space-terminated octal number, as USTAR
// numeric fields are written (leading spaces allowed, digits required).
func parseOctal(f []byte) (int64, error) {
	i := 0
	for i < len(f) && f[i] == ' ' {
		i++
	}
	start := i
	var n int64
	for i < len(f) && f[i] >= '0' && f[i] <= '7' {
		if n > (1<<62)/8 {
			return 0, errors.New("number out of range")
		}
		n = n*8 + int64(f[i]-'0')
		i++
	}
	if i == start {
		return 0, errors.New("no digits")
	}
	for ; i < len(f); i++ {
		if f[i] != 0 && f[i] != ' ' {
			return 0, errs.Errorf("unexpected byte %q", f[i])
		}
	}
	return n, nil
}

func cString(f []byte) string {
	if i := bytes.IndexByte(f, 0); i >= 0 {
		return string(f[:i])
	}
	return string(f)
}
