package evidence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

// sharedPack is a pack for "platform" of one chain owned by "acme" (a
// shared gateway): seqs in redact are hash-only lines, and the chain's
// checkpoint at cpSeq is signed for cpTenant.
func sharedPack(t testing.TB, key ed25519.PrivateKey, redact map[int64]bool, chainTenant, cpTenant string, cpSeq int64) []byte {
	t.Helper()
	b, err := NewBuilder(t.TempDir(), Meta{Tenant: "acme", From: t0, To: t0.Add(time.Hour), CreatedAt: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	evs, hashes := chainEvents(t, "gw", 5)
	b.AddChain(ChainProof{NodeID: "gw", ChainID: "vm0", PrevHash: ZeroHash, FirstSeq: 1, LastSeq: 5, Tenant: chainTenant})
	for i, ev := range evs {
		seq := int64(i + 1)
		l := EventLine{NodeID: "gw", ChainID: "vm0", Seq: seq, Hash: hashes[i], Event: ev}
		if redact[seq] {
			l.Event, l.Redacted = nil, true
		}
		if err := b.AddEvent(l); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := SignCheckpoint(key, Checkpoint{Tenant: cpTenant, NodeID: "gw", ChainID: "vm0", Seq: cpSeq, Hash: hashes[cpSeq-1], Count: cpSeq, Time: t0.Add(30 * time.Minute).Format(time.RFC3339Nano)})
	if err != nil {
		t.Fatal(err)
	}
	b.AddCheckpoint(cp)
	var out bytes.Buffer
	if err := b.Finish(&out, key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestRedactedLinks(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	redact := map[int64]bool{2: true, 3: true}
	good := sharedPack(t, key, redact, "", "acme", 3)
	rep, err := Verify(bytes.NewReader(good), VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 5 || rep.Redacted != 2 || rep.CheckpointsMatched != 1 {
		t.Fatalf("report %+v", rep)
	}
	if bytes.Contains(good, []byte("d-gw-2")) {
		t.Fatal("a redacted event's content is in the pack")
	}
	// The checkpoint of a chain owned by another tenant verifies when the
	// chain proof names that tenant, and only then.
	if _, err := Verify(bytes.NewReader(sharedPack(t, key, redact, "platform", "platform", 3)), VerifyOptions{Key: pub}); err != nil {
		t.Fatalf("checkpoint of the chain's owner: %v", err)
	}

	_, hashes := chainEvents(t, "gw", 5)
	for _, tc := range []struct {
		name string
		pack []byte
		link string
		why  string
	}{
		{"checkpoint of another tenant", sharedPack(t, key, redact, "", "platform", 3), "checkpoint gw/vm0 seq 3", "the chain belongs to"},
		// Without a checkpoint on it, a changed redacted hash is found at
		// the next event of the pack's tenant, which no longer follows it.
		{"redacted hash changed before an event", repack(t, edit(unpack(t, sharedPack(t, key, redact, "", "acme", 5)), EventsFile, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"hash":"`+hashes[2]), []byte(`"hash":"`+hashes[0]), 1)
		}), key), "chain gw/vm0 seq 4", "event hash does not match"},
		{"redacted hash changed at the checkpoint", repack(t, edit(unpack(t, good), EventsFile, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"hash":"`+hashes[2]), []byte(`"hash":"`+hashes[0]), 1)
		}), key), "chain gw/vm0 seq 3", "differs from the signed checkpoint"},
		{"redacted line with an event", repack(t, edit(unpack(t, good), EventsFile, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"hash":"`+hashes[1]), []byte(`"event":{},"hash":"`+hashes[1]), 1)
		}), key), "chain gw/vm0 seq 2", "carries an event"},
		{"redacted hash not hex", repack(t, edit(unpack(t, good), EventsFile, func(b []byte) []byte {
			return bytes.Replace(b, []byte(hashes[1]), []byte(strings.Repeat("z", 64)), 1)
		}), key), "chain gw/vm0 seq 2", "hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(tc.pack), VerifyOptions{Key: pub})
			var be *BrokenError
			if !errors.As(err, &be) || be.Link != tc.link || !strings.Contains(be.Reason, tc.why) {
				t.Fatalf("err = %v, want %s: …%s", err, tc.link, tc.why)
			}
		})
	}
}
