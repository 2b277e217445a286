package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/keys"
)

func bundleCommands() []command {
	return []command{
		{name: "verify", summary: "check a bundle's signature, files and validity window", run: runBundleVerify},
		{name: "inspect", summary: "print a bundle's manifest and files", run: runBundleInspect},
	}
}

func runBundleVerify(_ context.Context, args []string, io stdio) int {
	fs := flagSet("bundle verify", "BUNDLE", `
Verify a policy bundle (.tar.gz): the archive is read strictly, every file is
checked against the SHA-256 the manifest pins, the Ed25519 signature in
manifest.sig is checked over the exact manifest.json bytes with the given
public key, and the bundle must be valid at the given time (created_at at
most 5 minutes ahead, expires_at not reached).

Prints "OK tenant/name revision N, signed by kid K, expires T" and exits 0,
or prints the reason and exits 1.`, io)
	keyPath := fs.String("key", "", "PKIX PEM public key to verify with (required)")
	at := fs.String("at", "", "verify as of this RFC 3339 time instead of now")
	tenant := fs.String("tenant", "", "also require the bundle to be for this tenant")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(io.err, "aegis bundle verify: want exactly one BUNDLE argument (see --help)")
		return exitUsage
	}
	if *keyPath == "" {
		fmt.Fprintln(io.err, "aegis bundle verify: --key is required")
		return exitUsage
	}
	now, err := parseAt(*at)
	if err != nil {
		fmt.Fprintf(io.err, "aegis bundle verify: --at: %v\n", err)
		return exitUsage
	}
	pub, err := loadPublicKey(*keyPath)
	if err != nil {
		fmt.Fprintf(io.err, "aegis bundle verify: %s: %v\n", *keyPath, err)
		return exitFailure
	}
	b, err := openBundleFile(pos[0])
	if err != nil {
		fmt.Fprintf(io.err, "aegis bundle verify: %v\n", err)
		return exitFailure
	}
	if err := b.Verify(pub, now); err != nil {
		fmt.Fprintf(io.err, "aegis bundle verify: %s: %v\n", pos[0], err)
		return exitFailure
	}
	m := &b.Manifest
	if *tenant != "" {
		if err := bundle.CheckTenant(m, *tenant); err != nil {
			fmt.Fprintf(io.err, "aegis bundle verify: %s: %v\n", pos[0], err)
			return exitFailure
		}
	}
	fmt.Fprintf(io.out, "OK %s/%s revision %d, signed by kid %s, expires %s\n",
		m.Tenant, m.Name, m.Revision, keys.KeyID(pub), m.ExpiresAt.Format(time.RFC3339))
	return exitOK
}

func runBundleInspect(_ context.Context, args []string, io stdio) int {
	fs := flagSet("bundle inspect", "BUNDLE", `
Print a bundle's manifest and its files (size and SHA-256). The archive and
the file hashes are checked as in "verify", but the signature is not: use
"aegis bundle verify" for that.`, io)
	asJSON := fs.Bool("json", false, `print one JSON object {"manifest", "signed", "files"} instead of text`)
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(io.err, "aegis bundle inspect: want exactly one BUNDLE argument (see --help)")
		return exitUsage
	}
	b, err := openBundleFile(pos[0])
	if err != nil {
		fmt.Fprintf(io.err, "aegis bundle inspect: %v\n", err)
		return exitFailure
	}
	type fileInfo struct {
		Path   string `json:"path"`
		Size   int    `json:"size"`
		SHA256 string `json:"sha256"`
	}
	files := []fileInfo{}
	for _, p := range b.Paths() {
		sum := sha256.Sum256(b.Files[p])
		files = append(files, fileInfo{Path: p, Size: len(b.Files[p]), SHA256: hex.EncodeToString(sum[:])})
	}
	if *asJSON {
		out, err := json.MarshalIndent(struct {
			Manifest json.RawMessage `json:"manifest"`
			Signed   bool            `json:"signed"`
			Files    []fileInfo      `json:"files"`
		}{json.RawMessage(b.ManifestBytes), b.Signature != nil, files}, "", "  ")
		if err != nil {
			fmt.Fprintf(io.err, "aegis bundle inspect: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(io.out, "%s\n", out)
		return exitOK
	}
	fmt.Fprintf(io.out, "%s", bytes.TrimRight(b.ManifestBytes, "\n"))
	fmt.Fprintln(io.out)
	if b.Signature != nil {
		fmt.Fprintln(io.out, "\nsigned: yes (check with aegis bundle verify --key PUB)")
	} else {
		fmt.Fprintln(io.out, "\nsigned: no")
	}
	fmt.Fprintf(io.out, "\nfiles:\n")
	for _, f := range files {
		fmt.Fprintf(io.out, "  %s  %9d  %s\n", f.SHA256, f.Size, f.Path)
	}
	return exitOK
}

func openBundleFile(path string) (*bundle.Bundle, error) {
	data, err := readFileMax(path, bundle.DefaultLimits.MaxArchiveBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := bundle.Open(data, bundle.Limits{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// parseAt reads an --at flag: empty means now.
func parseAt(s string) (time.Time, error) {
	if s == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", s)
	}
	return t, nil
}
