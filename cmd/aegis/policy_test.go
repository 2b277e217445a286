package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const examples = "../../policies/examples"

func TestPolicyValidate(t *testing.T) {
	code, out, errOut := cryptoCLI(t, "", "policy", "validate", examples)
	if code != exitOK || !strings.Contains(out, "ok ../../policies/examples/payments.yaml (acme/acme-payments: 2 agents, 5 tools)") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}

	src, err := os.ReadFile(filepath.Join(examples, "payments.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(src), "max: 50000", "max: lots", 1)
	broken = strings.Replace(broken, "risk: low", "risk: lowish", 1)
	path := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = cryptoCLI(t, "", "policy", "validate", path)
	if code != exitFailure {
		t.Fatalf("broken policy: exit %d, want %d", code, exitFailure)
	}
	for _, want := range []string{
		path + ":67:46: tools[0].params.amount.max: ",
		path + ":81:11: tools[1].risk: ",
		"2 error(s)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	code, out, _ = cryptoCLI(t, "", "policy", "validate", "--json", path)
	var res struct {
		Errors []struct {
			Code, Path, File string
			Line, Col        int
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitFailure || len(res.Errors) != 2 || res.Errors[0].Line != 67 {
		t.Errorf("--json: exit %d, %v, %s", code, err, out)
	}
}

func TestPolicyCompileAndEval(t *testing.T) {
	keyDir := cryptoKeyPair(t)
	dir := t.TempDir()
	archive, runtime := filepath.Join(dir, "a.tar.gz"), filepath.Join(dir, "r.tar.gz")
	args := []string{"policy", "compile", filepath.Join(examples, "payments.yaml"), "-o", archive, "--runtime", runtime,
		"--sign-key", filepath.Join(keyDir, "aegis.key"), "--revision", "3", "--created-at", "2026-11-20T00:00:00Z", "--valid-for", "87600h"}
	code, out, errOut := cryptoCLI(t, "", args...)
	if code != exitOK || !strings.Contains(out, "compiled acme/acme-payments revision 3 (signed by key ") {
		t.Fatalf("compile: exit %d\n%s\n%s", code, out, errOut)
	}
	first, _ := os.ReadFile(archive)
	if code, _, errOut := cryptoCLI(t, "", args...); code != exitOK {
		t.Fatal(errOut)
	}
	second, _ := os.ReadFile(archive)
	if !bytes.Equal(first, second) || len(first) == 0 {
		t.Error("compiling twice with the same inputs gave different bundles")
	}
	if code, out, errOut := cryptoCLI(t, "", "bundle", "verify", "--key", filepath.Join(keyDir, "aegis.pub"), runtime); code != exitOK {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}

	req := filepath.Join(dir, "req.json")
	os.WriteFile(req, []byte(`{"method":"POST","url":"https://payments.acme.internal/v1/payments",
	  "json":{"amount":10,"currency":"EUR","beneficiary_iban":"DE89370400440532013000","memo":"card 4111 1111 1111 1111"}}`), 0o644)
	code, out, errOut = cryptoCLI(t, "", "policy", "eval", "--bundle", runtime, "--key", filepath.Join(keyDir, "aegis.pub"),
		"--request", req, "--agent", "billing-agent", "--region", "eu-west-1", "--time", "2026-11-24T10:00:00Z")
	if code != exitOK {
		t.Fatalf("eval: %d %s", code, errOut)
	}
	var dec struct {
		Action        string          `json:"action"`
		PolicyVersion string          `json:"policy_version"`
		Forwarded     json.RawMessage `json:"forwarded_body"`
	}
	if err := json.Unmarshal([]byte(out), &dec); err != nil {
		t.Fatal(err, out)
	}
	if dec.Action != "sanitize" || dec.PolicyVersion != "acme/acme-payments@3" || !strings.Contains(compact(dec.Forwarded), `"memo":"card [card]"`) {
		t.Errorf("eval --request: %s", out)
	}

	// The same call as a finished input document, from stdin.
	doc := `{"agent":{"id":"intern-bot","tenant":"acme","chain":["intern-bot"],"region":""},
	  "request":{"method":"GET","host":"billing.acme.internal","path":"/v1/invoices/1","query":{},"headers":{},"body_type":"none"},
	  "context":{"region":"eu-west-1","time":"2026-11-24T10:00:00Z","intent":"","budget":{"spent_micro_usd_today":0}}}`
	code, out, errOut = cryptoCLI(t, doc, "policy", "eval", "--bundle", archive, "--input", "-")
	if code != exitOK || !strings.Contains(out, `"action": "deny"`) || !strings.Contains(strings.ToLower(out), "unknown agent") {
		t.Errorf("eval --input: %d %s %s", code, out, errOut)
	}

	// A tampered bundle is refused when a key is given.
	tampered := append([]byte(nil), first...)
	tampered[len(tampered)/2] ^= 0xff
	os.WriteFile(filepath.Join(dir, "t.tar.gz"), tampered, 0o644)
	if code, _, errOut := cryptoCLI(t, "", "policy", "eval", "--bundle", filepath.Join(dir, "t.tar.gz"), "--key",
		filepath.Join(keyDir, "aegis.pub"), "--input", req); code != exitFailure {
		t.Errorf("tampered bundle: exit %d, %s", code, errOut)
	}
}

func TestPolicyTestCommand(t *testing.T) {
	code, out, errOut := cryptoCLI(t, "", "policy", "test", examples)
	if code != exitOK || !strings.HasSuffix(out, "33 passed, 0 failed\n") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	// A table with a wrong expectation fails the command and says why.
	dir := t.TempDir()
	pol, _ := os.ReadFile(filepath.Join(examples, "payments.yaml"))
	os.WriteFile(filepath.Join(dir, "payments.yaml"), pol, 0o644)
	os.WriteFile(filepath.Join(dir, "bad_test.yaml"), []byte(`apiVersion: aegis.policy/v1
kind: PolicyTest
policy: payments.yaml
cases:
  - name: wrong
    agent: intern-bot
    region: eu-west-1
    request: {method: GET, url: https://billing.acme.internal/v1/invoices/42}
    expect: {action: allow}
`), 0o644)
	code, out, _ = cryptoCLI(t, "", "policy", "test", dir)
	if code != exitFailure || !strings.Contains(out, "action: want allow, got deny") || !strings.HasSuffix(out, "0 passed, 1 failed\n") {
		t.Errorf("failing table: exit %d\n%s", code, out)
	}
}

func TestPolicyUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"policy"}, exitUsage, "Subcommands:"},
		{[]string{"policy", "--help"}, exitOK, "validate"},
		{[]string{"policy", "frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"policy", "compile", "--help"}, exitOK, "byte-identical"},
		{[]string{"policy", "compile", examples + "/payments.yaml"}, exitUsage, "want one policy file or directory and -o OUTPUT"},
		{[]string{"policy", "compile", examples, "-o", "/dev/null"}, exitFailure, "exactly one policy file"},
		{[]string{"policy", "compile", examples + "/payments.yaml", "-o", "x", "--created-at", "yesterday"}, exitUsage, "want RFC 3339"},
		{[]string{"policy", "eval", "--bundle", "b"}, exitUsage, "exactly one of --input or --request"},
		{[]string{"policy", "eval", "--help"}, exitOK, "--request takes a request"},
		{[]string{"policy", "validate"}, exitUsage, "want at least one policy file"},
		{[]string{"policy", "validate", "/nonexistent"}, exitFailure, "no such file"},
		{[]string{"policy", "test", "--nope"}, exitUsage, "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := cryptoCLI(t, "", tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Errorf("exit %d (want %d); output lacks %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}

func compact(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
