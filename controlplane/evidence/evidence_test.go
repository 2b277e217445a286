package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/keys"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// chainEvents makes n canonical events of one chain and their hashes.
func chainEvents(t testing.TB, node string, n int) ([][]byte, []string) {
	t.Helper()
	var prev [32]byte
	var evs [][]byte
	var hashes []string
	for i := 1; i <= n; i++ {
		raw := fmt.Sprintf(`{"id":"d-%s-%d","seq":%d,"node_id":%q,"tenant":"acme","agent":"a1","tool":"pay","action":"allow","policy_revision":3,"time":%q}`,
			node, i, i, node, t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano))
		sum, canon, err := EventHash(prev, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, canon)
		hashes = append(hashes, hex.EncodeToString(sum[:]))
		prev = sum
	}
	return evs, hashes
}

type packOpts struct {
	dropSeq  int64 // leave this event out (a row deleted before export)
	editSeq  int64 // change this event's agent but keep its stored hash
	cpSeq    int64 // checkpoint at this seq
	cpHash   string
	signWith ed25519.PrivateKey
}

func buildPack(t testing.TB, key ed25519.PrivateKey, o packOpts) []byte {
	t.Helper()
	b, err := NewBuilder(t.TempDir(), Meta{Tenant: "acme", From: t0, To: t0.Add(time.Hour), CreatedAt: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, node := range []string{"n1", "n2"} {
		evs, hashes := chainEvents(t, node, 5)
		b.AddChain(ChainProof{NodeID: node, ChainID: "vm0", PrevHash: ZeroHash, FirstSeq: 1, LastSeq: 5})
		for i, ev := range evs {
			seq := int64(i + 1)
			if node == "n1" && seq == o.dropSeq {
				continue
			}
			if node == "n1" && seq == o.editSeq {
				ev = bytes.Replace(ev, []byte(`"agent":"a1"`), []byte(`"agent":"a2"`), 1)
			}
			if err := b.AddEvent(EventLine{NodeID: node, ChainID: "vm0", Seq: seq, Hash: hashes[i], Event: ev}); err != nil {
				t.Fatal(err)
			}
		}
		cpSeq, cpHash := int64(5), hashes[4]
		if node == "n1" && o.cpSeq != 0 {
			cpSeq, cpHash = o.cpSeq, o.cpHash
		}
		cp, err := SignCheckpoint(key, Checkpoint{Tenant: "acme", NodeID: node, ChainID: "vm0", Seq: cpSeq, Hash: cpHash, Count: cpSeq, Time: t0.Add(30 * time.Minute).Format(time.RFC3339Nano)})
		if err != nil {
			t.Fatal(err)
		}
		b.AddCheckpoint(cp)
	}
	if err := b.AddBundle(Bundle{Revision: 3, Name: "payments", Files: map[string][]byte{"manifest.json": []byte(`{"revision":3}`), "plan.json": []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	b.AddApproval(json.RawMessage(`{"approval_id":"ap1","approver":"bob"}`))
	var out bytes.Buffer
	sk := key
	if o.signWith != nil {
		sk = o.signWith
	}
	if err := b.Finish(&out, sk); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

type entry struct {
	name string
	data []byte
}

func unpack(t *testing.T, pack []byte) []entry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(pack))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out = append(out, entry{h.Name, data})
	}
}

// repack writes entries back; with key set it re-pins every digest and
// re-signs the manifest, as someone holding that key would.
func repack(t *testing.T, es []entry, key ed25519.PrivateKey) []byte {
	t.Helper()
	es = append([]entry(nil), es...)
	if key != nil {
		var m Manifest
		if err := json.Unmarshal(es[0].data, &m); err != nil {
			t.Fatal(err)
		}
		pub := key.Public().(ed25519.PublicKey)
		for _, e := range es[2:] {
			sum := sha256.Sum256(e.data)
			m.Files[e.name] = hex.EncodeToString(sum[:])
		}
		m.PublicKey = hex.EncodeToString(pub)
		m.KeyID = keysID(pub)
		data, _ := json.MarshalIndent(m, "", " ")
		es[0].data = append(data, '\n')
		es[1].data = []byte(hex.EncodeToString(ed25519.Sign(key, append([]byte(packDomain), es[0].data...))) + "\n")
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range es {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func edit(es []entry, name string, fn func([]byte) []byte) []entry {
	out := append([]entry(nil), es...)
	for i := range out {
		if out[i].name == name {
			out[i].data = fn(append([]byte(nil), out[i].data...))
		}
	}
	return out
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	key := newKey(t)
	pack := buildPack(t, key, packOpts{})
	rep, err := Verify(bytes.NewReader(pack), VerifyOptions{Key: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 10 || rep.Chains != 2 || rep.Checkpoints != 2 || rep.CheckpointsMatched != 2 || rep.Approvals != 1 || rep.Bundles != 1 || !rep.KeyPinned ||
		len(rep.RevisionsWithoutBundle) != 0 {
		t.Fatalf("report %+v", rep)
	}
	// Deterministic: the same content gives the same bytes.
	if again := buildPack(t, key, packOpts{}); !bytes.Equal(again, pack) {
		t.Error("two builds of the same pack differ")
	}
}

func TestTampering(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	other := newKey(t)
	good := unpack(t, buildPack(t, key, packOpts{}))
	_, hashes := chainEvents(t, "n1", 5)
	for _, tc := range []struct {
		name     string
		pack     []byte
		key      ed25519.PublicKey
		wantLink string
		wantWhy  string
	}{
		{"event edited in the pack", repack(t, edit(good, EventsFile, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"agent":"a1"`), []byte(`"agent":"zz"`), 1)
		}), nil), pub, EventsFile, "does not match the manifest"},
		{"event edited, digests re-pinned without the key", repack(t, edit(good, EventsFile, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"agent":"a1"`), []byte(`"agent":"zz"`), 1)
		}), other), pub, SignatureFile, "not the pinned key"},
		{"event line deleted in the pack", repack(t, edit(good, EventsFile, func(b []byte) []byte {
			i := bytes.IndexByte(b, '\n')
			return b[i+1:]
		}), nil), pub, EventsFile, "does not match the manifest"},
		{"bundle file changed", repack(t, edit(good, "bundles/3/payments/plan.json", func(b []byte) []byte {
			return []byte(`{"x":1}`)
		}), nil), pub, "bundles/3/payments/plan.json", "does not match the manifest"},
		{"re-signed with another key", repack(t, good, other), pub, SignatureFile, "not the pinned key"},
		{"signature bytes changed", repack(t, edit(good, SignatureFile, func(b []byte) []byte {
			if b[0] == '0' {
				b[0] = '1'
			} else {
				b[0] = '0'
			}
			return b
		}), nil), pub, SignatureFile, "does not verify"},
		{"file added", repack(t, append(append([]entry(nil), good...), entry{"extra.txt", []byte("x")}), nil), pub, "extra.txt", "not pinned"},
		{"file removed", repack(t, func() []entry {
			var out []entry
			for _, e := range good {
				if e.name != ApprovalsFile {
					out = append(out, e)
				}
			}
			return out
		}(), nil), pub, ApprovalsFile, "missing"},
		{"row deleted before export", buildPack(t, key, packOpts{dropSeq: 3}), pub, "chain n1/vm0 seq 3", "event missing"},
		{"last row deleted before export", buildPack(t, key, packOpts{dropSeq: 5}), pub, "chain n1/vm0 seq 5", "event missing"},
		{"row edited before export", buildPack(t, key, packOpts{editSeq: 2}), pub, "chain n1/vm0 seq 2", "event hash does not match"},
		{"checkpoint disagrees", buildPack(t, key, packOpts{cpSeq: 4, cpHash: hashes[2]}), pub, "chain n1/vm0 seq 4", "checkpoint"},
		{"checkpoint past the export inside the window", buildPack(t, key, packOpts{cpSeq: 7, cpHash: hashes[2]}), pub, "checkpoint n1/vm0 seq 7", "events missing"},
		{"checkpoint signed by another key", buildPack(t, key, packOpts{}), nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(tc.pack), VerifyOptions{Key: tc.key})
			if tc.wantLink == "" {
				if err != nil {
					t.Fatalf("unpinned verify of a good pack: %v", err)
				}
				return
			}
			var b *BrokenError
			if !errors.As(err, &b) {
				t.Fatalf("err = %v, want a broken link", err)
			}
			if b.Link != tc.wantLink || !strings.Contains(b.Reason, tc.wantWhy) {
				t.Fatalf("broken link %q: %q; want %q containing %q", b.Link, b.Reason, tc.wantLink, tc.wantWhy)
			}
		})
	}
}

func TestCheckpointSignature(t *testing.T) {
	key := newKey(t)
	cp, err := SignCheckpoint(key, Checkpoint{Tenant: "acme", NodeID: "n", ChainID: "c", Seq: 2, Count: 2, Hash: ZeroHash, Time: t0.Format(time.RFC3339)})
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	if err := VerifyCheckpoint(pub, cp); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Checkpoint){
		func(c *Checkpoint) { c.Seq = 1 },
		func(c *Checkpoint) { c.Count = 1 },
		func(c *Checkpoint) { c.Hash = strings.Repeat("1", 64) },
		func(c *Checkpoint) { c.Tenant = "other" },
		func(c *Checkpoint) { c.Time = t0.Add(time.Second).Format(time.RFC3339) },
	} {
		c := cp
		mut(&c)
		if VerifyCheckpoint(pub, c) == nil {
			t.Errorf("altered checkpoint %+v verifies", c)
		}
	}
	if VerifyCheckpoint(newKey(t).Public().(ed25519.PublicKey), cp) == nil {
		t.Error("checkpoint verifies with another key")
	}
}

func TestMalformedPacks(t *testing.T) {
	key := newKey(t)
	good := unpack(t, buildPack(t, key, packOpts{}))
	for _, tc := range []struct {
		name string
		pack []byte
	}{
		{"not gzip", []byte("hello")},
		{"empty tar", repack(t, nil, nil)},
		{"signature first", repack(t, []entry{good[1], good[0]}, nil)},
		{"manifest unknown field", repack(t, edit(good, ManifestFile, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"format"`), []byte(`"x":1,"format"`), 1)
		}), nil)},
		{"duplicate file", repack(t, append(append([]entry(nil), good...), good[2]), nil)},
		{"events before chains", repack(t, []entry{good[0], good[1], good[len(good)-1]}, nil)},
	} {
		if _, err := Verify(bytes.NewReader(tc.pack), VerifyOptions{}); err == nil {
			t.Errorf("%s: verified", tc.name)
		}
	}
}

func FuzzVerify(f *testing.F) {
	key := make([]byte, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(key)
	f.Add([]byte("not a pack"))
	f.Add(buildPack(f, priv, packOpts{}))
	f.Add(buildPack(f, priv, packOpts{dropSeq: 2}))
	f.Add(sharedPack(f, priv, map[int64]bool{2: true, 3: true}, "platform", "platform", 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(bytes.NewReader(data), VerifyOptions{Key: priv.Public().(ed25519.PublicKey)})
		if err == nil && rep == nil {
			t.Fatal("no error and no report")
		}
	})
}

func keysID(pub ed25519.PublicKey) string { return keys.KeyID(pub) }

func TestZeroHash(t *testing.T) {
	if ZeroHash != hex.EncodeToString(make([]byte, sha256.Size)) {
		t.Fatal("ZeroHash is not 32 zero bytes in hex")
	}
}
