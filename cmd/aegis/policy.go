package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	goio "io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
	"github.com/aegis-mesh/aegis/decide"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/keys"
	"github.com/aegis-mesh/aegis/policies"
	"github.com/aegis-mesh/aegis/policies/policytest"
)

func policyCommands() []command {
	return []command{
		{name: "validate", summary: "check policy files and report every error with its location", run: policyValidate},
		{name: "compile", summary: "compile a policy to a (signed) bundle", run: policyCompile},
		{name: "test", summary: "run PolicyTest tables (*_test.yaml)", run: policyTest},
		{name: "eval", summary: "evaluate one request or input document against a bundle", run: policyEval},
	}
}

// policyFiles expands a file or directory argument into policy files,
// leaving out test tables.
func policyFiles(arg string) ([]string, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{arg}, nil
	}
	var out []string
	entries, err := os.ReadDir(arg)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasSuffix(n, "_test.yaml") || strings.HasSuffix(n, "_test.yml") {
			continue
		}
		switch filepath.Ext(n) {
		case ".yaml", ".yml", ".json":
			out = append(out, filepath.Join(arg, n))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no policy files (*.yaml, *.yml, *.json) in this directory", arg)
	}
	sort.Strings(out)
	return out, nil
}

func printErrors(io stdio, errs policies.Errors, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"errors": errs})
		return
	}
	for _, e := range errs {
		fmt.Fprintln(io.err, e.Error())
	}
	fmt.Fprintf(io.err, "%d error(s)\n", len(errs))
}

func policyValidate(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("policy validate", "<file|dir>...", `
Checks aegis.policy/v1 files: YAML syntax, unknown fields, types, regexes,
duplicate names, references between agents, tools, DLP detectors and MCP
servers, and custom Rego. Every error is reported as
file:line:col: field.path: message, with a hint where one helps.
A directory is checked file by file (test tables, *_test.yaml, are skipped).`, io)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(io.err, "aegis policy validate: want at least one policy file or directory")
		return exitUsage
	}
	var all policies.Errors
	var okFiles []map[string]any
	for _, arg := range pos {
		files, err := policyFiles(arg)
		if err != nil {
			all = append(all, &policies.Error{Code: policies.CodeIO, Message: err.Error(), Location: policies.Location{File: arg, Line: 1, Col: 1}})
			continue
		}
		for _, f := range files {
			ps, errs := policies.LoadPath(f)
			if len(errs) > 0 {
				all = append(all, errs...)
				continue
			}
			okFiles = append(okFiles, map[string]any{"file": f, "tenant": ps.Metadata.Tenant, "name": ps.Metadata.Name,
				"agents": len(ps.Agents), "tools": len(ps.Tools)})
			if !*asJSON {
				fmt.Fprintf(io.out, "ok %s (%s/%s: %d agents, %d tools)\n", f, ps.Metadata.Tenant, ps.Metadata.Name, len(ps.Agents), len(ps.Tools))
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		if all == nil {
			all = policies.Errors{}
		}
		_ = enc.Encode(map[string]any{"valid": okFiles, "errors": all})
	} else if len(all) > 0 {
		printErrors(io, all, false)
	}
	if len(all) > 0 {
		return exitFailure
	}
	return exitOK
}

// createdAt resolves --created-at, then SOURCE_DATE_EPOCH, then now.
func createdAt(flagVal string) (time.Time, error) {
	if flagVal != "" {
		t, err := time.Parse(time.RFC3339, flagVal)
		if err != nil {
			return time.Time{}, fmt.Errorf("--created-at %q: want RFC 3339, e.g. 2026-11-24T10:00:00Z", flagVal)
		}
		return t.UTC(), nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want Unix seconds", s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Now().UTC().Truncate(time.Second), nil
}

func policyCompile(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("policy compile", "<file|dir> -o bundle.tar.gz", `
Compiles a policy set: YAML → generated Rego → OPA IR plan and OPA wasm →
an archive bundle (manifest, Rego sources, plan.json, policy.wasm, data.json)
and, with --runtime, the small runtime bundle nodes load (manifest, plan.json,
data.json). With --sign-key each manifest is signed with pure Ed25519.
The same inputs and --created-at (or SOURCE_DATE_EPOCH) give byte-identical
bundles.`, io)
	out := fs.String("o", "", "write the archive bundle here (required)")
	runtimeOut := fs.String("runtime", "", "also write the runtime bundle here")
	signKey := fs.String("sign-key", "", "Ed25519 private key (PKCS#8 PEM) to sign the bundles with")
	revision := fs.Int64("revision", 1, "bundle revision (monotonic per tenant)")
	created := fs.String("created-at", "", "creation time, RFC 3339 (default: $SOURCE_DATE_EPOCH, else now)")
	validFor := fs.Duration("valid-for", 30*24*time.Hour, "how long the bundle stays valid after --created-at")
	regoOut := fs.String("rego-out", "", "also write the generated Rego and data.json into this directory")
	debug := fs.Bool("debug", false, "print stage timings to stderr")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 1 || *out == "" {
		fmt.Fprintln(io.err, "aegis policy compile: want one policy file or directory and -o OUTPUT")
		fs.Usage()
		return exitUsage
	}
	if *validFor <= 0 {
		fmt.Fprintln(io.err, "aegis policy compile: --valid-for must be positive")
		return exitUsage
	}
	ct, err := createdAt(*created)
	if err != nil {
		fmt.Fprintln(io.err, "aegis policy compile:", err)
		return exitUsage
	}
	opts := policies.BundleOptions{Revision: *revision, CreatedAt: ct, ExpiresAt: ct.Add(*validFor)}
	if *signKey != "" {
		pem, err := os.ReadFile(*signKey)
		if err != nil {
			fmt.Fprintln(io.err, "aegis policy compile: --sign-key:", err)
			return exitFailure
		}
		k, err := keys.ParsePrivatePEM(pem)
		if err != nil {
			fmt.Fprintf(io.err, "aegis policy compile: --sign-key %s: %v\n", *signKey, err)
			return exitFailure
		}
		opts.SignKey = k
	}
	ps, errs := policies.LoadPath(pos[0])
	if len(errs) > 0 {
		printErrors(io, errs, false)
		return exitFailure
	}
	c, err := policies.Compile(ctx, ps, policies.Options{})
	if err != nil {
		fmt.Fprintln(io.err, err)
		return exitFailure
	}
	archive, runtime, err := policies.BuildBundles(c, opts)
	if err != nil {
		fmt.Fprintln(io.err, "aegis policy compile:", err)
		return exitFailure
	}
	if err := writeFile(*out, archive); err != nil {
		fmt.Fprintln(io.err, "aegis policy compile:", err)
		return exitFailure
	}
	if *runtimeOut != "" {
		if err := writeFile(*runtimeOut, runtime); err != nil {
			fmt.Fprintln(io.err, "aegis policy compile:", err)
			return exitFailure
		}
	}
	if *regoOut != "" {
		if err := os.MkdirAll(*regoOut, 0o755); err != nil {
			fmt.Fprintln(io.err, "aegis policy compile:", err)
			return exitFailure
		}
		for _, f := range append(c.Rego, bundle.File{Path: "data.json", Data: c.Data}) {
			p := filepath.Join(*regoOut, filepath.FromSlash(f.Path))
			err := os.MkdirAll(filepath.Dir(p), 0o755)
			if err == nil {
				err = writeFile(p, f.Data)
			}
			if err != nil {
				fmt.Fprintln(io.err, "aegis policy compile:", err)
				return exitFailure
			}
		}
	}
	if *debug {
		for _, t := range c.Timings {
			fmt.Fprintf(io.err, "stage %-12s %v\n", t.Stage, t.Duration)
		}
	}
	signed := "unsigned"
	if opts.SignKey != nil {
		signed = "signed by key " + keys.KeyID(opts.SignKey.Public().(ed25519.PublicKey))
	}
	fmt.Fprintf(io.out, "compiled %s/%s revision %d (%s): %s (%d bytes)", c.Tenant, c.Name, *revision, signed, *out, len(archive))
	if *runtimeOut != "" {
		fmt.Fprintf(io.out, ", runtime %s (%d bytes)", *runtimeOut, len(runtime))
	}
	fmt.Fprintln(io.out)
	return exitOK
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func policyTest(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("policy test", "<test.yaml|dir>...", `
Runs PolicyTest tables: each case describes a call as the proxy sees it
(identity, node context, HTTP request) and the decision Aegis must reach.
The policy named by the table is compiled and every case runs through the
same decision path as the data plane (input builder, plan engine, body
rewrite). Failing cases are printed with expected and actual results and
the decision's reasons. A directory runs every *_test.yaml in it.`, io)
	verbose := fs.Bool("v", false, "print every case, not only failures")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(io.err, "aegis policy test: want at least one test file or directory")
		return exitUsage
	}
	var files []string
	for _, arg := range pos {
		fi, err := os.Stat(arg)
		if err != nil {
			fmt.Fprintln(io.err, "aegis policy test:", err)
			return exitFailure
		}
		if !fi.IsDir() {
			files = append(files, arg)
			continue
		}
		m, _ := filepath.Glob(filepath.Join(arg, "*_test.yaml"))
		m2, _ := filepath.Glob(filepath.Join(arg, "*_test.yml"))
		m = append(m, m2...)
		if len(m) == 0 {
			fmt.Fprintf(io.err, "aegis policy test: %s: no *_test.yaml files\n", arg)
			return exitFailure
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	passed, failed, broken := 0, 0, 0
	for _, tf := range files {
		p, f, err := runTestFile(ctx, tf, io, *verbose)
		passed += p
		failed += f
		if err != nil {
			broken++
			fmt.Fprintln(io.err, err)
		}
	}
	fmt.Fprintf(io.out, "%d passed, %d failed\n", passed, failed)
	if failed > 0 || broken > 0 {
		return exitFailure
	}
	return exitOK
}

func runTestFile(ctx context.Context, path string, io stdio, verbose bool) (passed, failed int, err error) {
	tf, errs := policytest.LoadFile(path)
	if len(errs) > 0 {
		return 0, 0, errs
	}
	target, err := policytest.Compile(ctx, tf)
	if err != nil {
		return 0, 0, err
	}
	results, err := policytest.Run(ctx, tf, target)
	for _, r := range results {
		if r.Passed() {
			passed++
			if verbose {
				fmt.Fprintf(io.out, "PASS %s: %s (%s)\n", path, r.Case.Name, r.Outcome.Decision.Action)
			}
			continue
		}
		failed++
		fmt.Fprint(io.out, r.Summary())
	}
	if err == nil {
		fmt.Fprintf(io.out, "%s: %d/%d cases passed\n", path, passed, passed+failed)
	}
	return passed, failed, err
}

func policyEval(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("policy eval", "--bundle B (--input input.json | --request req.json)", `
Evaluates one call and prints the decision as JSON.

--input takes a complete input document (see docs/input.md).
--request takes a request the way test tables write it:
  {"method": "POST", "url": "https://host/path", "headers": {...},
   "json": {...}  or  "body": "raw text"}
and builds the input document from it and the identity/context flags, as
the data plane would (identity flags stand for a verified token).

With --key the bundle's signature and validity are checked first.`, io)
	bundlePath := fs.String("bundle", "", "compiled bundle (archive or runtime) to evaluate (required)")
	keyPath := fs.String("key", "", "public key (PKIX PEM) to verify the bundle with")
	inputPath := fs.String("input", "", "input document JSON file ('-' for stdin)")
	requestPath := fs.String("request", "", "request JSON file ('-' for stdin)")
	agent := fs.String("agent", "", "the acting agent (with --request)")
	var actingFor stringList
	fs.Var(&actingFor, "acting-for", "a principal the agent acts for, nearest first (repeatable)")
	tenant := fs.String("tenant", "", "the token's tenant (default: the bundle's tenant)")
	region := fs.String("region", "", "the enforcing node's region")
	tokenRegion := fs.String("token-region", "", "the token's region claim (default: --region)")
	at := fs.String("time", "", "decision time, RFC 3339 (default: now)")
	intent := fs.String("intent", "", "x-aegis-intent header value")
	spent := fs.String("spent-usd", "", "the agent's spend today in USD, e.g. 19.98")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) > 0 || *bundlePath == "" || (*inputPath == "") == (*requestPath == "") {
		fmt.Fprintln(io.err, "aegis policy eval: want --bundle and exactly one of --input or --request")
		fs.Usage()
		return exitUsage
	}
	data, err := os.ReadFile(*bundlePath)
	if err != nil {
		fmt.Fprintln(io.err, "aegis policy eval:", err)
		return exitFailure
	}
	b, err := bundle.Open(data, bundle.Limits{})
	if err != nil {
		fmt.Fprintf(io.err, "aegis policy eval: %s: %v\n", *bundlePath, err)
		return exitFailure
	}
	if *keyPath != "" {
		pem, err := os.ReadFile(*keyPath)
		if err == nil {
			var pub ed25519.PublicKey
			if pub, err = keys.ParsePublicPEM(pem); err == nil {
				err = b.Verify(pub, time.Now())
			}
		}
		if err != nil {
			fmt.Fprintf(io.err, "aegis policy eval: %s: %v\n", *bundlePath, err)
			return exitFailure
		}
	}
	d, err := decide.FromBundle(b)
	if err != nil {
		fmt.Fprintln(io.err, "aegis policy eval:", err)
		return exitFailure
	}
	readArg := func(p string) ([]byte, error) {
		if p == "-" {
			return readAll(io)
		}
		return os.ReadFile(p)
	}
	enc := json.NewEncoder(io.out)
	enc.SetIndent("", "  ")
	if *inputPath != "" {
		raw, err := readArg(*inputPath)
		if err != nil {
			fmt.Fprintln(io.err, "aegis policy eval:", err)
			return exitFailure
		}
		doc, err := engine.FromJSON(raw)
		if err != nil {
			fmt.Fprintf(io.err, "aegis policy eval: %s: %v\n", *inputPath, err)
			return exitFailure
		}
		dec, err := d.Eval(ctx, doc)
		if err != nil {
			fmt.Fprintln(io.err, "aegis policy eval:", err)
			return exitFailure
		}
		_ = enc.Encode(decisionJSON(dec, &b.Manifest))
		return exitOK
	}
	raw, err := readArg(*requestPath)
	if err != nil {
		fmt.Fprintln(io.err, "aegis policy eval:", err)
		return exitFailure
	}
	if *agent == "" {
		fmt.Fprintln(io.err, "aegis policy eval: --request needs --agent (the identity a verified token would carry)")
		return exitUsage
	}
	c, err := policytest.RequestCase(raw)
	if err != nil {
		fmt.Fprintf(io.err, "aegis policy eval: %s: %v\n", *requestPath, err)
		return exitFailure
	}
	c.Agent, c.ActingFor, c.Region, c.TokenRegion, c.Time, c.Intent, c.SpentUSDToday = *agent, actingFor, *region, *tokenRegion, *at, *intent, *spent
	if c.Time == "" {
		c.Time = time.Now().UTC().Format(time.RFC3339Nano)
	}
	tn := *tenant
	if tn == "" {
		tn = b.Manifest.Tenant
	}
	req, id, nctx, err := policytest.ProxyView(&policytest.File{}, c, tn)
	if err != nil {
		fmt.Fprintln(io.err, "aegis policy eval:", err)
		return exitUsage
	}
	outc, err := d.Decide(ctx, req, id, nctx)
	if err != nil {
		fmt.Fprintln(io.err, "aegis policy eval:", err)
		return exitFailure
	}
	res := decisionJSON(outc.Decision, &b.Manifest)
	if outc.Decision.Action == decide.Sanitize {
		res["forwarded_body"] = json.RawMessage(outc.Body)
	}
	_ = enc.Encode(res)
	return exitOK
}

func decisionJSON(d decide.Decision, m *bundle.Manifest) map[string]any {
	raw, _ := json.Marshal(d)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	out["policy_version"] = fmt.Sprintf("%s/%s@%d", m.Tenant, m.Name, m.Revision)
	return out
}

func readAll(io stdio) ([]byte, error) { return goio.ReadAll(io.in) }
