package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	goio "io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/evidence"
)

// verifyEvidencePack runs "aegis audit verify PACK [--key PUB]".
func verifyEvidencePack(_ context.Context, args []string, io stdio) int {
	fs := flagSet("audit verify", "PACK", `
Verify an evidence pack exported by the control plane, offline: the
manifest signature (with --key, the evidence public key you trust), every
file against the digest the manifest pins, the signed checkpoints, each
chain's events hash by hash from its anchor, and that no event the chain
proofs and checkpoints account for is missing. Prints a summary and exits
0, or names the first broken link and exits 1. PACK "-" reads standard
input. (For an edge audit WAL use --dir DIR.)`, io)
	keyPath := fs.String("key", "", "PKIX PEM evidence public key to pin (without it the pack is only checked against the key it names)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(io.err, "aegis audit verify: want exactly one PACK argument (or --dir DIR)")
		return exitUsage
	}
	var opts evidence.VerifyOptions
	if *keyPath != "" {
		pub, err := loadPublicKey(*keyPath)
		if err != nil {
			fmt.Fprintf(io.err, "aegis audit verify: --key %s: %v\n", *keyPath, err)
			return exitUsage
		}
		opts.Key = pub
	}
	var r goio.Reader = io.in
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			fmt.Fprintf(io.err, "aegis audit verify: %v\n", err)
			return exitFailure
		}
		defer f.Close()
		r = f
	} else if r == nil {
		fmt.Fprintln(io.err, "aegis audit verify: no standard input")
		return exitUsage
	}
	rep, err := evidence.Verify(r, opts)
	if err != nil {
		var b *evidence.BrokenError
		if errors.As(err, &b) && *asJSON {
			out, _ := json.Marshal(map[string]any{"ok": false, "link": b.Link, "reason": b.Reason})
			fmt.Fprintf(io.out, "%s\n", out)
		}
		fmt.Fprintf(io.err, "aegis audit verify: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		out, err := json.Marshal(map[string]any{"ok": true, "report": rep})
		if err != nil {
			fmt.Fprintf(io.err, "aegis audit verify: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(io.out, "%s\n", out)
		return exitOK
	}
	m := rep.Manifest
	fmt.Fprintf(io.out, "OK: evidence pack for tenant %s, %s to %s (created %s)\n", m.Tenant, m.From, m.To, m.CreatedAt)
	fmt.Fprintf(io.out, "  %d events in %d chains, %d of %d checkpoints met, %d policy bundles, %d approvals\n",
		rep.Events, rep.Chains, rep.CheckpointsMatched, rep.Checkpoints, rep.Bundles, rep.Approvals)
	if len(rep.RevisionsWithoutBundle) > 0 {
		fmt.Fprintf(io.out, "  NOTE: no policy bundle in the pack for revisions %v that events were decided under\n", rep.RevisionsWithoutBundle)
	}
	if rep.KeyPinned {
		fmt.Fprintf(io.out, "  signed by the pinned evidence key %s\n", m.KeyID)
	} else {
		fmt.Fprintf(io.out, "  WARNING: signed by key %s named in the pack itself; pass --key to pin the key you trust\n", m.KeyID)
	}
	return exitOK
}

// maxExportTime bounds one export request.
const maxExportTime = 30 * time.Minute

// runAuditExport runs "aegis audit export".
func runAuditExport(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("audit export", "", `
Download a signed evidence pack (tar.gz: events, chain proofs, checkpoints,
the policy bundles that were active and the approvals) for one tenant and
time window from the control plane's REST API, or with --format jsonl the
window's events as JSON lines for a SIEM. The credential needs the auditor
or admin role; it is read from --token-file or AEGIS_TOKEN (or --token).
Verify a pack offline with "aegis audit verify PACK --key EVIDENCE_PUB".`, io)
	server := fs.String("server", "", "control plane base URL, e.g. https://cp.example:8443 (required)")
	tok := fs.String("token", "", "API token (prefer --token-file or AEGIS_TOKEN: arguments show in process lists)")
	tokFile := fs.String("token-file", "", "file holding the API token")
	tenant := fs.String("tenant", "", "tenant (required)")
	from := fs.String("from", "", "window start, RFC 3339 (required)")
	to := fs.String("to", "", "window end, RFC 3339 (default now)")
	out := fs.String("o", "", "output file, - for standard output (required)")
	format := fs.String("format", "pack", "pack (signed evidence pack) or jsonl (events as JSON lines)")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(io.err, "aegis audit export: "+format+"\n", a...)
		return exitUsage
	}
	switch {
	case len(pos) != 0:
		return fail("unexpected argument %q", pos[0])
	case *server == "" || *tenant == "" || *from == "" || *out == "":
		return fail("--server, --tenant, --from and -o are required")
	case *format != "pack" && *format != "jsonl":
		return fail("--format %q: pack or jsonl", *format)
	}
	base, err := url.Parse(*server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fail("--server %q: want an http(s) URL", *server)
	}
	fromT, err := time.Parse(time.RFC3339Nano, *from)
	if err != nil {
		return fail("--from: want RFC 3339")
	}
	toT := time.Now().UTC()
	if *to != "" {
		if toT, err = time.Parse(time.RFC3339Nano, *to); err != nil {
			return fail("--to: want RFC 3339")
		}
	}
	if toT.Before(fromT) {
		return fail("--to is before --from")
	}
	token := *tok
	switch {
	case *tokFile != "":
		data, err := readFileMax(*tokFile, 64<<10)
		if err != nil {
			return fail("--token-file: %v", err)
		}
		token = strings.TrimSpace(string(data))
	case token == "":
		token = os.Getenv("AEGIS_TOKEN")
	}
	if token == "" {
		return fail("no credential: --token-file, AEGIS_TOKEN or --token")
	}
	q := url.Values{"tenant": {*tenant}, "from": {fromT.UTC().Format(time.RFC3339Nano)}, "to": {toT.UTC().Format(time.RFC3339Nano)}}
	path := "/v1/audit/export"
	if *format == "jsonl" {
		path = "/v1/audit/events"
		q.Set("format", "jsonl")
	}
	u := base.JoinPath(path)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, maxExportTime)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fail("%v", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(io.err, "aegis audit export: %v\n", err)
		return exitFailure
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := goio.ReadAll(goio.LimitReader(resp.Body, 4096))
		fmt.Fprintf(io.err, "aegis audit export: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return exitFailure
	}
	n, err := writeStream(*out, resp.Body, io.out)
	if err != nil {
		fmt.Fprintf(io.err, "aegis audit export: %v\n", err)
		return exitFailure
	}
	if *out != "-" {
		fmt.Fprintf(io.err, "wrote %s (%d bytes)\n", *out, n)
	}
	return exitOK
}

// writeStream copies r to path through a temporary file renamed at the
// end, so a cut-off download never looks like a complete pack.
func writeStream(path string, r goio.Reader, stdout goio.Writer) (int64, error) {
	if path == "-" {
		return goio.Copy(stdout, r)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".aegis-export-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := goio.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, os.Rename(tmp.Name(), path)
}
