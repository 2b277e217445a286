package evidence

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/keys"
)

// Limits on what Verify reads, so that a hostile pack cannot exhaust
// memory: small files are read whole, events one line at a time.
const (
	maxManifest  = 1 << 20
	maxSmallFile = 64 << 20
	maxLine      = 4 << 20
	maxEntries   = 100000
)

// BrokenError names the first link of a pack that does not hold: a file
// digest, the signature, an event hash at a seq, a checkpoint, a missing
// event.
type BrokenError struct {
	Link   string // where: "manifest.sig", "events.jsonl", "chain n1/vm0 seq 42"
	Reason string
}

func (e *BrokenError) Error() string { return "broken link: " + e.Link + ": " + e.Reason }

func broken(link, format string, args ...any) *BrokenError {
	return &BrokenError{Link: link, Reason: fmt.Sprintf(format, args...)}
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Key pins the evidence public key. Without it the pack is checked
	// against the key it names itself, which proves only that it is
	// internally consistent.
	Key ed25519.PublicKey
}

// Report summarises a pack that verified.
type Report struct {
	Manifest  Manifest `json:"manifest"`
	KeyPinned bool     `json:"key_pinned"`
	Chains    int      `json:"chains"`
	Events    int64    `json:"events"`
	// Redacted counts the lines that hold only the hash of another
	// tenant's event (EventLine.Redacted); they are included in Events.
	Redacted           int64 `json:"redacted,omitempty"`
	Checkpoints        int   `json:"checkpoints"`
	CheckpointsMatched int   `json:"checkpoints_matched"`
	Approvals          int   `json:"approvals"`
	Bundles            int   `json:"bundles"`
	// RevisionsWithoutBundle lists policy revisions events were decided
	// under that no bundle in the pack carries (the pack may hold no
	// bundles at all, or a node ran an older revision during a rollout).
	RevisionsWithoutBundle []int64 `json:"revisions_without_bundle,omitempty"`
}

type cpKey struct {
	chain string
	seq   int64
}

type verifier struct {
	opts        VerifyOptions
	pub         ed25519.PublicKey
	m           Manifest
	seen        map[string]bool
	chains      []ChainProof
	haveCh      bool
	cps         map[cpKey]Checkpoint
	haveCps     bool
	matched     map[cpKey]bool
	rep         Report
	windowTo    time.Time
	rawManifest []byte
	revisions   map[int64]bool
}

// Verify reads a pack from r and checks, in this order: the manifest's
// signature (with opts.Key when given), every file against its pinned
// digest, the checkpoints' signatures, each chain's events hash by hash from
// its anchor, the checkpoints against the recomputed hashes, and that no
// event the chain proofs or checkpoints account for is missing. The first
// failure is returned as a *BrokenError.
func Verify(r io.Reader, opts VerifyOptions) (*Report, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, broken("pack", "not gzip: %v", err)
	}
	tr := tar.NewReader(gz)
	v := &verifier{opts: opts, seen: map[string]bool{}, cps: map[cpKey]Checkpoint{}, matched: map[cpKey]bool{}}
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, broken("pack", "reading the archive: %v", err)
		}
		if i >= maxEntries {
			return nil, broken("pack", "more than %d files", maxEntries)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, broken(h.Name, "not a regular file")
		}
		if err := v.entry(i, h, tr); err != nil {
			return nil, err
		}
	}
	if len(v.seen) < 2 {
		return nil, broken(ManifestFile, "missing: not an evidence pack")
	}
	for name := range v.m.Files {
		if !v.seen[name] {
			return nil, broken(name, "pinned by the manifest but missing from the pack")
		}
	}
	if err := v.finishCheckpoints(); err != nil {
		return nil, err
	}
	v.rep.Manifest = v.m
	v.rep.KeyPinned = opts.Key != nil
	v.rep.Chains = len(v.chains)
	v.rep.Checkpoints = len(v.cps)
	v.rep.CheckpointsMatched = len(v.matched)
	v.rep.Bundles = len(v.m.Bundles)
	have := map[int64]bool{}
	for _, b := range v.m.Bundles {
		have[b.Revision] = true
	}
	for r := range v.revisions {
		if !have[r] {
			v.rep.RevisionsWithoutBundle = append(v.rep.RevisionsWithoutBundle, r)
		}
	}
	slices.Sort(v.rep.RevisionsWithoutBundle)
	if v.rep.Events != v.m.Events {
		return nil, broken(EventsFile, "manifest counts %d events, the pack holds %d", v.m.Events, v.rep.Events)
	}
	return &v.rep, nil
}

func (v *verifier) entry(i int, h *tar.Header, r io.Reader) error {
	name := h.Name
	switch {
	case i == 0:
		if name != ManifestFile {
			return broken(ManifestFile, "the pack must start with it, found %q", name)
		}
		return v.manifest(r, h.Size)
	case i == 1:
		if name != SignatureFile {
			return broken(SignatureFile, "must follow the manifest, found %q", name)
		}
		return v.signature(r, h.Size)
	}
	if v.seen[name] {
		return broken(name, "appears twice")
	}
	v.seen[name] = true
	want, ok := v.m.Files[name]
	if !ok {
		return broken(name, "not pinned by the manifest")
	}
	if name == EventsFile {
		return v.events(r, want)
	}
	if h.Size > maxSmallFile {
		return broken(name, "larger than %d bytes", maxSmallFile)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSmallFile+1))
	if err != nil {
		return broken(name, "reading: %v", err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != want {
		return broken(name, "sha256 %x does not match the manifest (%s)", sum, want)
	}
	switch name {
	case ChainsFile:
		if err := strictJSON(data, &v.chains); err != nil {
			return broken(name, "%v", err)
		}
		seen := map[string]bool{}
		for _, c := range v.chains {
			if seen[c.name()] {
				return broken(name, "chain %s listed twice", c.name())
			}
			seen[c.name()] = true
			if _, err := ParseHash(c.PrevHash); err != nil {
				return broken("chain "+c.name(), "prev_hash: %v", err)
			}
			if c.FirstSeq < 1 || c.LastSeq < c.FirstSeq-1 {
				return broken("chain "+c.name(), "seq range %d..%d", c.FirstSeq, c.LastSeq)
			}
		}
		v.haveCh = true
	case CheckpointsFile:
		var cps []Checkpoint
		if err := strictJSON(data, &cps); err != nil {
			return broken(name, "%v", err)
		}
		for _, c := range cps {
			link := fmt.Sprintf("checkpoint %s/%s seq %d", c.NodeID, c.ChainID, c.Seq)
			if err := VerifyCheckpoint(v.pub, c); err != nil {
				return broken(link, "%v", err)
			}
			owner := v.m.Tenant
			for _, ch := range v.chains {
				if ch.NodeID == c.NodeID && ch.ChainID == c.ChainID && ch.Tenant != "" {
					owner = ch.Tenant
				}
			}
			if c.Tenant != owner {
				return broken(link, "tenant %q, the chain belongs to %q", c.Tenant, owner)
			}
			if c.Count != c.Seq {
				return broken(link, "counts %d events up to seq %d: the chain does not start at 1 or lost events", c.Count, c.Seq)
			}
			v.cps[cpKey{c.NodeID + "/" + c.ChainID, c.Seq}] = c
		}
		v.haveCps = true
	case ApprovalsFile:
		var approvals []json.RawMessage
		if err := json.Unmarshal(data, &approvals); err != nil {
			return broken(name, "%v", err)
		}
		v.rep.Approvals = len(approvals)
	}
	return nil
}

func (v *verifier) manifest(r io.Reader, size int64) error {
	if size > maxManifest {
		return broken(ManifestFile, "larger than %d bytes", maxManifest)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return broken(ManifestFile, "reading: %v", err)
	}
	if err := strictJSON(data, &v.m); err != nil {
		return broken(ManifestFile, "%v", err)
	}
	if v.m.Format != Format {
		return broken(ManifestFile, "format %q, want %q", v.m.Format, Format)
	}
	if v.m.To != "" {
		if v.windowTo, err = time.Parse(time.RFC3339Nano, v.m.To); err != nil {
			return broken(ManifestFile, "to: %v", err)
		}
	}
	v.seen[ManifestFile] = true
	v.rep.Manifest = v.m
	// The manifest is kept verbatim for the signature check.
	v.m.Files = cloneFiles(v.m.Files)
	v.rawManifest = data
	return nil
}

func (v *verifier) signature(r io.Reader, size int64) error {
	if size > 1024 {
		return broken(SignatureFile, "larger than 1024 bytes")
	}
	data, err := io.ReadAll(io.LimitReader(r, 1025))
	if err != nil {
		return broken(SignatureFile, "reading: %v", err)
	}
	sig, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return broken(SignatureFile, "not a hex Ed25519 signature")
	}
	named, err := hex.DecodeString(v.m.PublicKey)
	if err != nil || len(named) != ed25519.PublicKeySize {
		return broken(ManifestFile, "public_key: not a hex Ed25519 key")
	}
	v.pub = ed25519.PublicKey(named)
	if v.opts.Key != nil {
		if !bytes.Equal(v.opts.Key, named) {
			return broken(SignatureFile, "the pack is signed by key %s, not the pinned key %s", keys.KeyID(named), keys.KeyID(v.opts.Key))
		}
		v.pub = v.opts.Key
	}
	if v.m.KeyID != keys.KeyID(v.pub) {
		return broken(ManifestFile, "key_id %q does not name its public key", v.m.KeyID)
	}
	if !ed25519.Verify(v.pub, append([]byte(packDomain), v.rawManifest...), sig) {
		return broken(SignatureFile, "signature over the manifest does not verify with key %s", keys.KeyID(v.pub))
	}
	v.seen[SignatureFile] = true
	return nil
}

// chainState follows one chain through events.jsonl.
type chainState struct {
	idx  int
	next int64
	prev [32]byte
}

func (v *verifier) events(r io.Reader, want string) error {
	if !v.haveCh || !v.haveCps {
		return broken(EventsFile, "comes before %s and %s", ChainsFile, CheckpointsFile)
	}
	sum := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(r, sum), 1<<16)
	var (
		first *BrokenError // the first chain failure; a digest failure wins over it
		st    = chainState{idx: -1}
		line  int
	)
	fail := func(b *BrokenError) {
		if first == nil {
			first = b
		}
	}
	for {
		data, err := readLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		line++
		if err != nil {
			return digestFirst(sum, br, want, broken(EventsFile, "line %d: %v", line, err))
		}
		if first != nil {
			continue
		}
		v.rep.Events++
		if b := v.event(&st, line, data); b != nil {
			fail(b)
		}
	}
	if first == nil {
		if b := v.endChains(&st, len(v.chains)); b != nil {
			fail(b)
		}
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return broken(EventsFile, "sha256 %s does not match the manifest (%s)", got, want)
	}
	if first != nil {
		return first
	}
	return nil
}

// digestFirst drains r so that a digest mismatch, the more basic failure,
// is reported before a parse error.
func digestFirst(sum hash.Hash, r io.Reader, want string, b *BrokenError) error {
	_, _ = io.Copy(io.Discard, r)
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return broken(EventsFile, "sha256 %s does not match the manifest (%s)", got, want)
	}
	return b
}

func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxLine {
			return nil, fmt.Errorf("longer than %d bytes", maxLine)
		}
		switch {
		case err == nil:
			return buf[:len(buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return nil, errors.New("no newline at the end of the file")
		default:
			return nil, err
		}
	}
}

// endChains checks that chains idx+1 .. upto-1 (all skipped) and the
// current one are complete.
func (v *verifier) endChains(st *chainState, upto int) *BrokenError {
	if st.idx >= 0 {
		c := v.chains[st.idx]
		if st.next <= c.LastSeq {
			return broken(fmt.Sprintf("chain %s seq %d", c.name(), st.next), "event missing (the chain proof runs to seq %d)", c.LastSeq)
		}
	}
	for i := st.idx + 1; i < upto; i++ {
		c := v.chains[i]
		if c.FirstSeq <= c.LastSeq {
			return broken(fmt.Sprintf("chain %s seq %d", c.name(), c.FirstSeq), "event missing (the chain proof runs to seq %d)", c.LastSeq)
		}
	}
	return nil
}

func (v *verifier) event(st *chainState, line int, data []byte) *BrokenError {
	var l EventLine
	if err := strictJSON(data, &l); err != nil {
		return broken(EventsFile, "line %d: %v", line, err)
	}
	name := l.NodeID + "/" + l.ChainID
	if st.idx < 0 || v.chains[st.idx].name() != name {
		// A new chain starts: the previous ones must be complete, and this
		// one must be the next in chains.json.
		j := -1
		for i := st.idx + 1; i < len(v.chains); i++ {
			if v.chains[i].name() == name {
				j = i
				break
			}
		}
		if j < 0 {
			return broken(EventsFile, "line %d: chain %s is not next in %s", line, name, ChainsFile)
		}
		if b := v.endChains(st, j); b != nil {
			return b
		}
		c := v.chains[j]
		prev, _ := ParseHash(c.PrevHash)
		*st = chainState{idx: j, next: c.FirstSeq, prev: prev}
		if cp, ok := v.cps[cpKey{name, c.FirstSeq - 1}]; ok {
			if cp.Hash != c.PrevHash {
				return broken(fmt.Sprintf("chain %s seq %d", name, c.FirstSeq-1), "the chain proof's prev_hash differs from the signed checkpoint")
			}
			v.matched[cpKey{name, c.FirstSeq - 1}] = true
		}
	}
	c := v.chains[st.idx]
	link := fmt.Sprintf("chain %s seq %d", name, st.next)
	switch {
	case l.Seq > c.LastSeq:
		return broken(fmt.Sprintf("chain %s seq %d", name, l.Seq), "beyond the chain proof's last seq %d", c.LastSeq)
	case l.Seq > st.next:
		return broken(link, "event missing (next in the pack is seq %d)", l.Seq)
	case l.Seq < st.next:
		return broken(fmt.Sprintf("chain %s seq %d", name, l.Seq), "out of order or repeated (expected seq %d)", st.next)
	}
	if l.Redacted {
		return v.redacted(st, link, name, l)
	}
	sum, canon, err := EventHash(st.prev, l.Event)
	if err != nil {
		return broken(link, "%v", err)
	}
	if !bytes.Equal(canon, l.Event) {
		return broken(link, "event is not in canonical form")
	}
	var ev struct {
		Seq            int64  `json:"seq"`
		NodeID         string `json:"node_id"`
		Tenant         string `json:"tenant"`
		PolicyRevision int64  `json:"policy_revision"`
	}
	if err := json.Unmarshal(l.Event, &ev); err != nil {
		return broken(link, "event: %v", err)
	}
	if ev.Seq != l.Seq || ev.NodeID != l.NodeID || ev.Tenant != v.m.Tenant {
		return broken(link, "event says node %q seq %d tenant %q", ev.NodeID, ev.Seq, ev.Tenant)
	}
	if hex.EncodeToString(sum[:]) != l.Hash {
		return broken(link, "event hash does not match: the event was altered, or it does not follow the previous one")
	}
	if cp, ok := v.cps[cpKey{name, l.Seq}]; ok {
		if cp.Hash != l.Hash {
			return broken(link, "differs from the signed checkpoint of this seq")
		}
		v.matched[cpKey{name, l.Seq}] = true
	}
	if v.revisions == nil {
		v.revisions = map[int64]bool{}
	}
	v.revisions[ev.PolicyRevision] = true
	st.prev = sum
	st.next++
	return nil
}

// redacted takes the stored hash of another tenant's event as the next
// link's previous hash. It cannot be recomputed without the event, so it
// is only as good as the signed checkpoint at its seq, when there is one.
func (v *verifier) redacted(st *chainState, link, name string, l EventLine) *BrokenError {
	if len(l.Event) != 0 {
		return broken(link, "a redacted line carries an event")
	}
	sum, err := ParseHash(l.Hash)
	if err != nil {
		return broken(link, "hash: %v", err)
	}
	if cp, ok := v.cps[cpKey{name, l.Seq}]; ok {
		if cp.Hash != l.Hash {
			return broken(link, "differs from the signed checkpoint of this seq")
		}
		v.matched[cpKey{name, l.Seq}] = true
	}
	v.rep.Redacted++
	st.prev = sum
	st.next++
	return nil
}

// finishCheckpoints fails on a checkpoint that falls inside an exported
// range but was never met (its event is gone), or that was signed inside
// the window past the end of its chain's export (events cut off at the end).
func (v *verifier) finishCheckpoints() *BrokenError {
	ranges := map[string]ChainProof{}
	for _, c := range v.chains {
		ranges[c.name()] = c
	}
	for k, cp := range v.cps {
		c, ok := ranges[k.chain]
		link := fmt.Sprintf("checkpoint %s seq %d", k.chain, k.seq)
		if !ok {
			return broken(link, "for a chain the pack does not hold")
		}
		if k.seq >= c.FirstSeq-1 && k.seq <= c.LastSeq && !v.matched[k] {
			return broken(link, "its event is missing from the pack")
		}
		if k.seq > c.LastSeq && !v.windowTo.IsZero() {
			t, err := time.Parse(time.RFC3339Nano, cp.Time)
			if err == nil && !t.After(v.windowTo) {
				return broken(link, "signed at %s inside the window, but the pack stops at seq %d: events missing", cp.Time, c.LastSeq)
			}
		}
	}
	return nil
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

func cloneFiles(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
