package evidence

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/jcs"
	"github.com/aegis-mesh/aegis/keys"
)

// Format names the pack layout in the manifest.
const Format = "aegis.evidence/v1"

// packDomain prefixes the bytes a pack signature covers.
const packDomain = "aegis-evidence-pack/v1\n"

// File names inside a pack, in the order they are written. The manifest and
// its signature come first so a reader can check the signature before it
// reads anything else; events come last, as one stream.
const (
	ManifestFile    = "manifest.json"
	SignatureFile   = "manifest.sig"
	ChainsFile      = "chains.json"
	CheckpointsFile = "checkpoints.json"
	ApprovalsFile   = "approvals.json"
	EventsFile      = "events.jsonl"
	bundlesDir      = "bundles/"
)

// Manifest describes a pack and pins every other file by sha256. It is
// signed, byte for byte, by the evidence key.
type Manifest struct {
	Format    string            `json:"format"`
	Tenant    string            `json:"tenant"`
	From      string            `json:"from"`
	To        string            `json:"to"`
	CreatedAt string            `json:"created_at"`
	KeyID     string            `json:"key_id"`
	PublicKey string            `json:"public_key"` // hex Ed25519; trusted only when pinned with --key
	Chains    int               `json:"chains"`
	Events    int64             `json:"events"`
	Bundles   []BundleRef       `json:"bundles"`
	Files     map[string]string `json:"files"` // path → hex sha256
}

// BundleRef lists one bundle's files in the pack.
type BundleRef struct {
	Revision int64    `json:"revision"`
	Name     string   `json:"name"`
	Files    []string `json:"files"`
}

// Meta is what a pack covers.
type Meta struct {
	Tenant    string
	From, To  time.Time
	CreatedAt time.Time
}

// ChainProof anchors the exported part of one chain: the hash before its
// first exported event, and the seq range the exporter found in the chain
// head and checkpoints (not in the rows, which may have been deleted).
type ChainProof struct {
	NodeID   string `json:"node_id"`
	ChainID  string `json:"chain_id"`
	PrevHash string `json:"prev_hash"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	// Tenant is the tenant owning the chain when it is not the pack's: a
	// shared gateway's chain, whose checkpoints are signed for its home
	// tenant. Empty means the pack's tenant.
	Tenant string `json:"tenant,omitempty"`
}

func (p ChainProof) name() string { return p.NodeID + "/" + p.ChainID }

// EventLine is one line of events.jsonl: a stored event, its chain
// position and the hash the control plane stored for it.
type EventLine struct {
	NodeID  string          `json:"node_id"`
	ChainID string          `json:"chain_id"`
	Seq     int64           `json:"seq"`
	Hash    string          `json:"hash"`
	Event   json.RawMessage `json:"event,omitempty"`
	// Redacted marks a link of another tenant's event on a chain shared by
	// several tenants (a shared gateway): the line carries its stored hash
	// but not the event, so the pack's tenant sees none of it. The
	// verifier cannot recompute such a hash; it takes it as the previous
	// hash of the next link and checks it against signed checkpoints.
	Redacted bool `json:"redacted,omitempty"`
}

// Bundle is a policy bundle that was active in the window: its release
// record and runtime bundle files, as the policy store keeps them.
type Bundle struct {
	Revision int64
	Name     string
	Files    map[string][]byte
}

// Builder assembles a pack. Events are spooled to a temporary file (a tar
// entry needs its size up front, and a pack may be large); everything else
// is held in memory. Call Close to remove the spool file.
type Builder struct {
	meta        Meta
	chains      []ChainProof
	checkpoints []Checkpoint
	approvals   []json.RawMessage
	bundles     []BundleRef
	files       map[string][]byte
	spool       *os.File
	spoolW      *bufio.Writer
	spoolHash   hash.Hash
	spoolSize   int64
	events      int64
	line        []byte
}

// NewBuilder starts a pack; tmpDir "" uses the system temporary directory.
func NewBuilder(tmpDir string, meta Meta) (*Builder, error) {
	if meta.Tenant == "" {
		return nil, errors.New("evidence pack: tenant is required")
	}
	f, err := os.CreateTemp(tmpDir, "aegis-evidence-*.jsonl")
	if err != nil {
		return nil, fmt.Errorf("evidence pack: spool: %w", err)
	}
	return &Builder{meta: meta, files: map[string][]byte{}, spool: f, spoolW: bufio.NewWriterSize(f, 1<<16), spoolHash: sha256.New()}, nil
}

// Close removes the spool file.
func (b *Builder) Close() error {
	if b.spool == nil {
		return nil
	}
	name := b.spool.Name()
	b.spool.Close()
	b.spool = nil
	return os.Remove(name)
}

// AddChain starts a chain; its events follow with AddEvent, in seq order.
func (b *Builder) AddChain(p ChainProof) { b.chains = append(b.chains, p) }

// AddCheckpoint adds a signed checkpoint of one of the chains.
func (b *Builder) AddCheckpoint(c Checkpoint) { b.checkpoints = append(b.checkpoints, c) }

// AddApproval adds one approval record (with its approvers) as JSON.
func (b *Builder) AddApproval(raw json.RawMessage) { b.approvals = append(b.approvals, raw) }

// AddEvent appends an event of the chain added last. ev.Event must be the
// canonical JSON the control plane stored.
func (b *Builder) AddEvent(ev EventLine) error {
	if len(b.chains) == 0 {
		return errors.New("evidence pack: event before any chain")
	}
	l := b.line[:0]
	l = append(l, `{"chain_id":`...)
	l = jcs.AppendString(l, ev.ChainID)
	if !ev.Redacted {
		l = append(l, `,"event":`...)
		l = append(l, ev.Event...)
	}
	l = append(l, `,"hash":`...)
	l = jcs.AppendString(l, ev.Hash)
	l = append(l, `,"node_id":`...)
	l = jcs.AppendString(l, ev.NodeID)
	if ev.Redacted {
		l = append(l, `,"redacted":true`...)
	}
	l = append(l, `,"seq":`...)
	l = strconv.AppendInt(l, ev.Seq, 10)
	l = append(l, "}\n"...)
	b.line = l
	if _, err := b.spoolW.Write(l); err != nil {
		return fmt.Errorf("evidence pack: spool: %w", err)
	}
	b.spoolHash.Write(l)
	b.spoolSize += int64(len(l))
	b.events++
	return nil
}

// AddBundle adds a policy bundle's files under bundles/REVISION/NAME/.
func (b *Builder) AddBundle(bd Bundle) error {
	if !safeName(bd.Name) || strings.Contains(bd.Name, "/") {
		return fmt.Errorf("evidence pack: bundle name %q", bd.Name)
	}
	ref := BundleRef{Revision: bd.Revision, Name: bd.Name}
	prefix := bundlesDir + strconv.FormatInt(bd.Revision, 10) + "/" + bd.Name + "/"
	for name, data := range bd.Files {
		if !safeName(name) {
			return fmt.Errorf("evidence pack: bundle %s file name %q", bd.Name, name)
		}
		p := prefix + name
		if _, dup := b.files[p]; dup {
			return fmt.Errorf("evidence pack: %s given twice", p)
		}
		b.files[p] = data
		ref.Files = append(ref.Files, p)
	}
	sort.Strings(ref.Files)
	b.bundles = append(b.bundles, ref)
	return nil
}

// Finish writes the signed pack to w as tar.gz.
func (b *Builder) Finish(w io.Writer, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return errors.New("evidence pack: no evidence key")
	}
	if err := b.spoolW.Flush(); err != nil {
		return fmt.Errorf("evidence pack: spool: %w", err)
	}
	if b.chains == nil {
		b.chains = []ChainProof{}
	}
	if b.checkpoints == nil {
		b.checkpoints = []Checkpoint{}
	}
	if b.approvals == nil {
		b.approvals = []json.RawMessage{}
	}
	if b.bundles == nil {
		b.bundles = []BundleRef{}
	}
	small := []struct {
		name string
		v    any
	}{{ChainsFile, b.chains}, {CheckpointsFile, b.checkpoints}, {ApprovalsFile, b.approvals}}
	for _, s := range small {
		data, err := json.MarshalIndent(s.v, "", " ")
		if err != nil {
			return fmt.Errorf("evidence pack: %s: %w", s.name, err)
		}
		b.files[s.name] = append(data, '\n')
	}
	pub := key.Public().(ed25519.PublicKey)
	m := Manifest{
		Format: Format, Tenant: b.meta.Tenant,
		From: rfc3339(b.meta.From), To: rfc3339(b.meta.To), CreatedAt: rfc3339(b.meta.CreatedAt),
		KeyID: keys.KeyID(pub), PublicKey: hex.EncodeToString(pub),
		Chains: len(b.chains), Events: b.events, Bundles: b.bundles,
		Files: map[string]string{EventsFile: hex.EncodeToString(b.spoolHash.Sum(nil))},
	}
	for name, data := range b.files {
		sum := sha256.Sum256(data)
		m.Files[name] = hex.EncodeToString(sum[:])
	}
	manifest, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("evidence pack: manifest: %w", err)
	}
	manifest = append(manifest, '\n')
	sig := hex.EncodeToString(ed25519.Sign(key, append([]byte(packDomain), manifest...)))

	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	mod := b.meta.CreatedAt.UTC().Truncate(time.Second)
	put := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: mod, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("evidence pack: %s: %w", name, err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("evidence pack: %s: %w", name, err)
		}
		return nil
	}
	putBytes := func(name string, data []byte) error {
		return put(name, int64(len(data)), strings.NewReader(string(data)))
	}
	if err := putBytes(ManifestFile, manifest); err != nil {
		return err
	}
	if err := putBytes(SignatureFile, []byte(sig+"\n")); err != nil {
		return err
	}
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := putBytes(n, b.files[n]); err != nil {
			return err
		}
	}
	if _, err := b.spool.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("evidence pack: spool: %w", err)
	}
	if err := put(EventsFile, b.spoolSize, b.spool); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("evidence pack: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("evidence pack: %w", err)
	}
	return nil
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// safeName accepts relative slash paths of [A-Za-z0-9._-] segments, none
// of them "." or "..": names that mean the same on every file system.
func safeName(name string) bool {
	if name == "" || len(name) > 200 {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}
