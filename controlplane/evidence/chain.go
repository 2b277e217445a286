// Package evidence holds what makes audit records provable after the fact:
// the event hash chain (API.md, "Audit"), checkpoints signed with the
// control plane's evidence key, and evidence packs — signed tar.gz archives
// of events, chain proofs, checkpoints, policy bundles and approvals that an
// auditor verifies offline.
//
// Everything is Ed25519 over bytes that carry a domain prefix, so a
// checkpoint signature can never be replayed as a pack signature or the
// other way round.
package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	"github.com/aegis-mesh/aegis/jcs"
)

// ZeroHash is the previous hash of the first event of every chain.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// EventHash returns sha256(prev || JCS(event)) and the canonical form of
// the event. raw is the event as received; its canonical form is what the
// producer hashed, so fields this version does not know still count.
func EventHash(prev [32]byte, raw []byte) ([32]byte, []byte, error) {
	// The canonical form is never longer than the input by more than a few
	// escapes; sizing the buffer once avoids regrowing it per member.
	canon, err := jcs.AppendCanonical(make([]byte, 0, len(raw)+64), raw)
	if err != nil {
		return [32]byte{}, nil, fmt.Errorf("canonical event: %w", err)
	}
	return NewChainer().Next(prev, canon), canon, nil
}

// Chainer computes successive event hashes, sha256(prev || canon) of
// events already in canonical form, with one SHA-256 state and buffer: a
// batch hashes its events without allocating per event.
type Chainer struct {
	h   hash.Hash
	buf []byte
}

// NewChainer returns a Chainer.
func NewChainer() *Chainer {
	return &Chainer{h: sha256.New(), buf: make([]byte, 0, sha256.Size)}
}

// Next returns the hash of the event whose canonical form is canon after
// the event hashed prev.
func (c *Chainer) Next(prev [32]byte, canon []byte) [32]byte {
	// prev goes through the buffer: a slice of the argument handed to the
	// hash interface would move it to the heap on every call.
	c.buf = append(c.buf[:0], prev[:]...)
	c.h.Reset()
	c.h.Write(c.buf)
	c.h.Write(canon)
	c.buf = c.h.Sum(c.buf[:0])
	return [32]byte(c.buf)
}

// ParseHash decodes a lower-case hex sha256.
func ParseHash(s string) ([32]byte, error) {
	var out [32]byte
	if len(s) != 64 {
		return out, errors.New("not 64 hex digits")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return out, errors.New("not lower-case hex")
		}
	}
	if _, err := hex.Decode(out[:], []byte(s)); err != nil {
		return out, err
	}
	return out, nil
}
