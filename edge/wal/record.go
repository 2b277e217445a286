package wal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
)

// On disk a segment is the 8-byte magic followed by frames. A frame is a
// big-endian uint32 payload length, a big-endian uint32 CRC-32C of the
// payload, and the payload: one JSON record
//
//	{"event":<JCS event>,"hash":"<hex>","prev_hash":"<hex>","seq":<n>}
//
// The CRC finds torn writes; the hash chain finds edits. Records are JSON
// so that an operator can read a WAL with ordinary tools.
const (
	magic         = "AEGWAL01"
	frameHeader   = 8
	minPayload    = 2       // "{}": a zero length is a hole, never a record
	MaxEventBytes = 1 << 20 // one event, canonical form
	maxPayload    = MaxEventBytes + 256
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Record is one event in the node's chain.
type Record struct {
	Seq      int64
	PrevHash [32]byte
	Hash     [32]byte
	// Event is the event in canonical (JCS) form, with seq and node_id
	// set by the WAL.
	Event json.RawMessage
}

// chainHash is event_hash = sha256(prev_hash || JCS(event)) (API.md).
func chainHash(prev [32]byte, canon []byte) [32]byte { return ChainHash(prev[:], canon) }

// appendFrame appends r as a frame to b.
func appendFrame(b []byte, r *Record) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeader)...)
	b = append(b, `{"event":`...)
	b = append(b, r.Event...)
	b = append(b, `,"hash":"`...)
	b = hex.AppendEncode(b, r.Hash[:])
	b = append(b, `","prev_hash":"`...)
	b = hex.AppendEncode(b, r.PrevHash[:])
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, '}')
	payload := b[start+frameHeader:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b
}

// errTorn marks a frame that ends the readable data: too short for its
// header or its length, or failing its CRC. Whether that is a torn write
// (the last frame of the last segment) or damage depends on where it is.
var errTorn = errors.New("incomplete or damaged frame")

// readFrame splits the frame at the start of data: its payload and its
// total length.
func readFrame(data []byte) (payload []byte, n int, err error) {
	if len(data) < frameHeader {
		return nil, 0, fmt.Errorf("%w: %d header bytes", errTorn, len(data))
	}
	size := int(binary.BigEndian.Uint32(data))
	if size < minPayload || size > maxPayload {
		return nil, 0, fmt.Errorf("%w: payload length %d", errTorn, size)
	}
	if len(data) < frameHeader+size {
		return nil, 0, fmt.Errorf("%w: payload of %d bytes, %d present", errTorn, size, len(data)-frameHeader)
	}
	payload = data[frameHeader : frameHeader+size]
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(data[4:]) {
		return nil, 0, fmt.Errorf("%w: CRC mismatch", errTorn)
	}
	return payload, frameHeader + size, nil
}

// parseRecord reads a payload strictly and checks that its event is in
// canonical form and carries the record's seq; it does not check the
// chain (the caller knows the previous hash).
func parseRecord(payload []byte) (Record, error) {
	var raw struct {
		Event    json.RawMessage `json:"event"`
		Hash     string          `json:"hash"`
		PrevHash string          `json:"prev_hash"`
		Seq      *int64          `json:"seq"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Record{}, fmt.Errorf("record: %w", err)
	}
	if dec.More() {
		return Record{}, errors.New("record: data after the object")
	}
	if raw.Seq == nil || *raw.Seq < 1 || raw.Event == nil {
		return Record{}, errors.New("record: missing seq or event")
	}
	r := Record{Seq: *raw.Seq, Event: raw.Event}
	if err := decodeHash(raw.Hash, &r.Hash); err != nil {
		return Record{}, fmt.Errorf("record %d: hash: %w", r.Seq, err)
	}
	if err := decodeHash(raw.PrevHash, &r.PrevHash); err != nil {
		return Record{}, fmt.Errorf("record %d: prev_hash: %w", r.Seq, err)
	}
	obj, err := decodeEvent(raw.Event)
	if err != nil {
		return Record{}, fmt.Errorf("record %d: %w", r.Seq, err)
	}
	if !bytes.Equal(appendJCS(nil, obj), raw.Event) {
		return Record{}, fmt.Errorf("record %d: event is not in canonical form", r.Seq)
	}
	if s, ok := obj["seq"].(int64); !ok || s != r.Seq {
		return Record{}, fmt.Errorf("record %d: event seq %v differs", r.Seq, obj["seq"])
	}
	return r, nil
}

func decodeHash(s string, out *[32]byte) error {
	if len(s) != 64 {
		return fmt.Errorf("%d characters, want 64", len(s))
	}
	if _, err := hex.Decode(out[:], []byte(s)); err != nil {
		return err
	}
	if hex.EncodeToString(out[:]) != s {
		return errors.New("not lower-case hex")
	}
	return nil
}

// ChainHash is event_hash = sha256(prev || canon) for callers that check
// the filter's per-VM chains with the same encoding.
func ChainHash(prev []byte, canon []byte) [32]byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canon)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
