package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/keys"
)

var created = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func testManifest() Manifest {
	return Manifest{
		Kind:          KindRuntime,
		Tenant:        "acme",
		Name:          "payments",
		Revision:      7,
		CreatedAt:     created,
		ExpiresAt:     created.Add(30 * 24 * time.Hour),
		EngineVersion: "aegis-engine/1",
		Builtins:      []string{"count", "regex.match"},
		Entrypoints:   []string{"aegis/decision"},
		Policy:        map[string]any{"mcp": map[string]any{"endpoints": []any{"/mcp"}}, "b": 1, "a": "<&>"},
	}
}

func testFiles() []File {
	return []File{
		{Path: "plan.json", Data: []byte(`{"static":{}}`)},
		{Path: "data.json", Data: []byte(`{"tenants":{}}`)},
		{Path: "rego/policy.rego", Data: []byte("package aegis\n")},
	}
}

func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	// A fixed seed keeps signed test bundles byte-stable (Ed25519 is
	// deterministic).
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

func mustBuild(t testing.TB, m Manifest, files []File, key ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := Build(m, files, BuildOptions{SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBuildOpenVerifyRoundTrip(t *testing.T) {
	key := testKey(t)
	data := mustBuild(t, testManifest(), testFiles(), key)
	b, err := Open(data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(key.Public().(ed25519.PublicKey), created.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, f := range testFiles() {
		if got := b.Files[f.Path]; !bytes.Equal(got, f.Data) {
			t.Errorf("%s = %q, want %q", f.Path, got, f.Data)
		}
	}
	if got, want := b.Paths(), []string{"data.json", "plan.json", "rego/policy.rego"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Paths = %v, want %v", got, want)
	}
	if b.Manifest.Format != Format || b.Manifest.Revision != 7 || b.Manifest.Tenant != "acme" {
		t.Errorf("manifest = %+v", b.Manifest)
	}
	// The manifest read back re-encodes to the exact signed bytes.
	again, err := b.Manifest.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b.ManifestBytes) {
		t.Errorf("re-marshalled manifest differs:\n%s\nvs\n%s", again, b.ManifestBytes)
	}
	if !bytes.HasSuffix(b.ManifestBytes, []byte("}\n")) {
		t.Error("manifest does not end in a newline")
	}
	if !bytes.Contains(b.ManifestBytes, []byte(`"a": "<&>"`)) {
		t.Errorf("manifest escapes HTML or loses policy data:\n%s", b.ManifestBytes)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	key := testKey(t)
	a := mustBuild(t, testManifest(), testFiles(), key)
	files := testFiles()
	files[0], files[2] = files[2], files[0]
	m := testManifest()
	// Same instant in another zone, with sub-second noise: normalised away.
	m.CreatedAt = created.In(time.FixedZone("X", 3600)).Add(300 * time.Millisecond)
	b := mustBuild(t, m, files, key)
	if !bytes.Equal(a, b) {
		t.Fatal("same inputs produced different bundles")
	}
	m.Revision++
	if c := mustBuild(t, m, files, key); bytes.Equal(a, c) {
		t.Fatal("different revision produced the same bundle")
	}
}

func TestBuildLayout(t *testing.T) {
	data := mustBuild(t, testManifest(), testFiles(), testKey(t))
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() || zr.Comment != "" || zr.Extra != nil {
		t.Errorf("gzip header carries variable data: %+v", zr.Header)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(created) ||
			h.Typeflag != tar.TypeReg || h.Format != tar.FormatUSTAR {
			t.Errorf("%s: header %+v", h.Name, h)
		}
	}
	want := "manifest.json,data.json,plan.json,rego/policy.rego,manifest.sig"
	if got := strings.Join(names, ","); got != want {
		t.Errorf("entries %s, want %s", got, want)
	}

	unsigned := mustBuild(t, testManifest(), testFiles(), nil)
	b, err := Open(unsigned, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Signature != nil {
		t.Error("unsigned bundle has a signature")
	}
	if err := b.Verify(testKey(t).Public().(ed25519.PublicKey), created); !errors.Is(err, ErrUnsigned) {
		t.Errorf("Verify unsigned: %v", err)
	}
}

func TestBuildRejects(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Manifest)
		files []File
		opts  BuildOptions
		want  string
	}{
		{"reserved path", nil, []File{{Path: "manifest.json"}}, BuildOptions{}, "reserved"},
		{"dotdot path", nil, []File{{Path: "a/../b"}}, BuildOptions{}, `contains ".."`},
		{"duplicate file", nil, []File{{Path: "a"}, {Path: "a"}}, BuildOptions{}, "given twice"},
		{"no files", nil, nil, BuildOptions{}, "files is empty"},
		{"bad key", nil, testFiles(), BuildOptions{SigningKey: make([]byte, 5)}, "signing key"},
		{"bad kind", func(m *Manifest) { m.Kind = "zip" }, testFiles(), BuildOptions{}, "kind"},
		{"unsorted builtins", func(m *Manifest) { m.Builtins = []string{"b", "a"} }, testFiles(), BuildOptions{}, "sorted"},
		{"expiry before creation", func(m *Manifest) { m.ExpiresAt = m.CreatedAt }, testFiles(), BuildOptions{}, "not after"},
		{"wrong format", func(m *Manifest) { m.Format = "aegis.bundle/v2" }, testFiles(), BuildOptions{}, "format"},
		{"zero revision", func(m *Manifest) { m.Revision = 0 }, testFiles(), BuildOptions{}, "revision"},
		{"bad tenant", func(m *Manifest) { m.Tenant = "a/b" }, testFiles(), BuildOptions{}, "tenant"},
		{"bad rollback", func(m *Manifest) { m.Release = &Release{Replaces: 3} }, testFiles(), BuildOptions{}, "replaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest()
			if tt.edit != nil {
				tt.edit(&m)
			}
			_, err := Build(m, tt.files, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestOpenSSLVerifiesSignature proves the signature is plain Ed25519 over
// the manifest bytes, checkable without Aegis.
func TestOpenSSLVerifiesSignature(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH")
	}
	key := testKey(t)
	b, err := Open(mustBuild(t, testManifest(), testFiles(), key), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubPEM, _ := keys.MarshalPublicPEM(key.Public().(ed25519.PublicKey))
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub := write("pub.pem", pubPEM)
	sig := write("sig.bin", b.Signature)
	verify := func(manifest []byte) error {
		return exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin",
			"-in", write("manifest.json", manifest), "-sigfile", sig).Run()
	}
	if err := verify(b.ManifestBytes); err != nil {
		t.Fatalf("openssl rejects our signature: %v", err)
	}
	tampered := bytes.Replace(b.ManifestBytes, []byte(`"revision": 7`), []byte(`"revision": 8`), 1)
	if err := verify(tampered); err == nil {
		t.Fatal("openssl accepted a tampered manifest")
	}
}

func TestVerify(t *testing.T) {
	key := testKey(t)
	pub := key.Public().(ed25519.PublicKey)
	other, _ := keys.Generate(rand.Reader)
	b, err := Open(mustBuild(t, testManifest(), testFiles(), key), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	expires := testManifest().ExpiresAt
	tests := []struct {
		name string
		pub  ed25519.PublicKey
		now  time.Time
		edit func(*Bundle)
		want error
	}{
		{"valid", pub, created, nil, nil},
		{"within skew", pub, created.Add(-ClockSkew), nil, nil},
		{"last second", pub, expires.Add(-time.Second), nil, nil},
		{"other key", other.Public().(ed25519.PublicKey), created, nil, ErrBadSignature},
		{"short key", pub[:10], created, nil, ErrBadSignature},
		{"not yet valid", pub, created.Add(-ClockSkew - time.Second), nil, ErrNotYetValid},
		{"expired", pub, expires, nil, ErrExpired},
		{"tampered manifest", pub, created, func(b *Bundle) { b.ManifestBytes = append(bytes.Clone(b.ManifestBytes), ' ') }, ErrBadSignature},
		{"tampered signature", pub, created, func(b *Bundle) { b.Signature = bytes.Clone(b.Signature); b.Signature[0] ^= 1 }, ErrBadSignature},
		{"unsigned", pub, created, func(b *Bundle) { b.Signature = nil }, ErrUnsigned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *b
			if tt.edit != nil {
				tt.edit(&c)
			}
			err := c.Verify(tt.pub, tt.now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckUpgrade(t *testing.T) {
	cur := testManifest()
	cur.Files = map[string]string{"plan.json": strings.Repeat("a", 64)}
	with := func(edit func(*Manifest)) *Manifest { m := cur; edit(&m); return &m }
	tests := []struct {
		name    string
		current *Manifest
		next    *Manifest
		want    error
	}{
		{"first bundle", nil, &cur, nil},
		{"higher revision", &cur, with(func(m *Manifest) { m.Revision = 8 }), nil},
		{"same content again", &cur, with(func(m *Manifest) {}), nil},
		{"same revision other content", &cur, with(func(m *Manifest) { m.Files = map[string]string{"plan.json": strings.Repeat("b", 64)} }), ErrConflict},
		{"lower revision", &cur, with(func(m *Manifest) { m.Revision = 6 }), ErrDowngrade},
		{"rollback naming current", &cur, with(func(m *Manifest) { m.Revision = 5; m.Release = &Release{Replaces: 7} }), nil},
		{"rollback naming another", &cur, with(func(m *Manifest) { m.Revision = 5; m.Release = &Release{Replaces: 9} }), ErrDowngrade},
		{"other tenant", &cur, with(func(m *Manifest) { m.Revision = 9; m.Tenant = "evil" }), ErrTenant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckUpgrade(tt.current, tt.next)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("CheckUpgrade = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckBuiltins(t *testing.T) {
	m := testManifest()
	if err := CheckBuiltins(&m, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	err := CheckBuiltins(&m, func(n string) bool { return n == "count" })
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "regex.match") {
		t.Fatalf("err = %v", err)
	}
	if err := CheckTenant(&m, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := CheckTenant(&m, "other"); !errors.Is(err, ErrTenant) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseManifestRejects(t *testing.T) {
	b, err := Open(mustBuild(t, testManifest(), testFiles(), nil), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	good := b.ManifestBytes
	planHash := b.Manifest.Files["plan.json"]
	if _, err := ParseManifest(good); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"unknown field", bytes.Replace(good, []byte(`"kind"`), []byte(`"extra": 1, "kind"`), 1), "unknown member"},
		{"duplicate key", bytes.Replace(good, []byte(`"kind": "runtime"`), []byte(`"kind": "runtime", "kind": "archive"`), 1), "duplicate key"},
		{"nested duplicate key", bytes.Replace(good, []byte(`"b": 1`), []byte(`"b": 1, "b": 2`), 1), "duplicate key"},
		{"case variant key", bytes.Replace(good, []byte(`"kind": "runtime"`), []byte(`"kind": "runtime", "KIND": "archive"`), 1), "differ only in case"},
		{"long s variant of a field", bytes.Replace(good, []byte(`"tenant":`), []byte(`"tenant": "x", "ſtage":1, "Kind":`), 1), "differ only in case"},
		{"kelvin sign field alone", bytes.Replace(good, []byte(`"kind":`), []byte(`"Kind":`), 1), `must be spelled "kind"`},
		{"case variant policy key", bytes.Replace(good, []byte(`"b": 1`), []byte(`"b": 1, "B": 2`), 1), "differ only in case"},
		{"case variant alone", bytes.Replace(good, []byte(`"tenant":`), []byte(`"Tenant":`), 1), "must be spelled"},
		{"trailing data", append(bytes.Clone(good), "{}"...), "after the JSON"},
		{"invalid utf8", bytes.Replace(good, []byte("acme"), []byte("ac\xffe"), 1), "UTF-8"},
		{"not json", []byte("nope"), "invalid literal"},
		{"non-utc time", bytes.Replace(good, []byte(`"2026-11-01T12:00:00Z"`), []byte(`"2026-11-01T13:00:00+01:00"`), 1), "not UTC"},
		{"fractional time", bytes.Replace(good, []byte(`"2026-11-01T12:00:00Z"`), []byte(`"2026-11-01T12:00:00.5Z"`), 1), "fractional"},
		{"uppercase hash", bytes.Replace(good, []byte(planHash), []byte(strings.ToUpper(planHash)), 1), "lowercase hex"},
		{"null files", bytes.Replace(good, []byte(`"files": {`), []byte(`"files": null, "x": {`), 1), "want an object, got null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest(tt.data)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
}
