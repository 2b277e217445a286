package policies

import (
	"encoding/json"
	"strings"
	"testing"
)

// header is the smallest valid prefix; cases append to it, so line numbers
// in expectations start at 5 for the first appended line.
const header = `apiVersion: aegis.policy/v1
kind: PolicySet
metadata: {name: t, tenant: acme}
`

const okTools = `tools:
  - name: pay.create
    http: {host: pay.internal, method: POST, path: /pay}
    params:
      amount: {type: number, min: 1, max: 10}
      memo: {type: string}
  - name: list.get
    http: {host: pay.internal, method: GET, path: /list}
`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every error, in order, as printed (hint lines included)
	}{
		{"yaml syntax", "apiVersion: [\n", []string{"p.yaml:1:1: did not find expected node content"}},
		{"empty", "", []string{"p.yaml:1:1: the document is empty"}},
		{"not a mapping", "- 1\n", []string{"p.yaml:1:1: expected a mapping, got a list"}},
		{"two documents", header + "---\nkind: x\n", []string{"p.yaml:4:1: a policy file holds one YAML document\n\thint: put each policy set in its own file"}},
		{"alias", header + "agents:\n  - &a {id: x}\n  - *a\n", []string{"p.yaml:5:5: YAML anchors and aliases are not supported in policies\n\thint: write the value out in full"}},
		{"missing required", "kind: PolicySet\n", []string{
			`p.yaml:1:1: missing required field "apiVersion"`,
			`p.yaml:1:1: missing required field "metadata"`,
		}},
		{"wrong apiVersion", strings.Replace(header, "policy/v1", "policy/v2", 1), []string{`p.yaml:1:13: apiVersion: unsupported apiVersion "aegis.policy/v2" (want "aegis.policy/v1")`}},
		{"unknown top-level field", header + "agent: []\n", []string{"p.yaml:4:1: agent: unknown field \"agent\"\n\thint: did you mean \"agents\"?"}},
		{"unknown nested field", header + okTools + "agents:\n  - id: a\n    tools: [pay.create]\n    regoins: [eu]\n", []string{
			"p.yaml:15:5: agents[0].regoins: unknown field \"regoins\"\n\thint: did you mean \"regions\"?"}},
		{"duplicate key", header + "defaults: {mode: enforce, mode: observe}\n", []string{`p.yaml:4:27: defaults.mode: duplicate key "mode"`}},
		{"bad enum", header + "defaults: {mode: shadow}\n", []string{`p.yaml:4:18: defaults.mode: "shadow" is not one of enforce, observe`}},
		{"bad enum with hint", header + "defaults: {unknown_tool: dney}\n", []string{"p.yaml:4:26: defaults.unknown_tool: \"dney\" is not one of deny, allow\n\thint: did you mean \"deny\"?"}},
		{"wrong type", header + "defaults: {max_body_bytes: big}\n", []string{`p.yaml:4:28: defaults.max_body_bytes: expected an integer, got a string`}},
		{"wrong type string", header + "metadata2: 1\n", []string{"p.yaml:4:1: metadata2: unknown field \"metadata2\"\n\thint: did you mean \"metadata\"?"}},
		{"number for string", header + "dlp:\n  - {name: 5, builtin: iban}\n", []string{
			"p.yaml:5:12: dlp[0].name: expected a string, got a number\n\thint: quote the value to make it a string"}},
		{"invalid regex", header + "dlp:\n  - {name: x, pattern: 'a(b'}\n", []string{
			"p.yaml:5:24: dlp[0].pattern: invalid regular expression: missing closing ): `a(b`\n\thint: patterns use RE2 syntax (Go regexp)"}},
		{"param regex", header + "tools:\n  - name: a\n    http: {host: h, method: POST, path: /}\n    params:\n      x: {type: string, pattern: '(?<n>x'}\n", []string{
			"p.yaml:8:34: tools[0].params.x.pattern: invalid regular expression: missing closing ): `(?<n>x`\n\thint: patterns use RE2 syntax (Go regexp) and are unanchored unless written with ^ and $"}},
		{"min greater than max", header + "tools:\n  - name: a\n    http: {host: h, method: POST, path: /}\n    params:\n      x: {type: number, min: 5, max: 1}\n", []string{
			"p.yaml:8:30: tools[0].params.x.min: min 5 is greater than max 1"}},
		{"constraint for wrong type", header + "tools:\n  - name: a\n    http: {host: h, method: POST, path: /}\n    params:\n      x: {type: string, max: 1}\n", []string{
			"p.yaml:8:25: tools[0].params.x.max: max does not apply to type string (only to number, integer)"}},
		{"bad decimal", header + "tools:\n  - name: a\n    http: {host: h, method: POST, path: /}\n    cost_usd: 1e-3\n", []string{
			"p.yaml:7:15: tools[0].cost_usd: \"1e-3\" is not a plain decimal number (digits, optional '-' and '.', no exponent)\n\thint: write an exact decimal such as 0.05"}},
		{"too precise money", header + "tools:\n  - name: a\n    http: {host: h, method: POST, path: /}\n    cost_usd: 0.0000001\n", []string{
			"p.yaml:7:15: tools[0].cost_usd: 0.0000001 is not a non-negative amount with at most 6 decimal places\n\thint: costs are counted in micro-dollars"}},
		{"bad duration", header + okTools + "    approval:\n      - {approvers: [x], expires_in: 15 minutes}\n", []string{
			"p.yaml:13:38: tools[1].approval[0].expires_in: \"15 minutes\" is not a valid duration\n\thint: use whole seconds up to 720h, e.g. 90s, 15m, 2h"}},
		{"duplicate tool", header + okTools + "  - name: pay.create\n    http: {host: other, method: POST, path: /x}\n", []string{
			"p.yaml:12:5: tools[2]: duplicate tool \"pay.create\"\n\thint: first declared at line 5 (tools[0])"}},
		{"duplicate route", header + okTools + "  - name: pay.again\n    http: {host: pay.internal, method: POST, path: /pay}\n", []string{
			"p.yaml:13:11: tools[2].http: duplicate HTTP route POST pay.internal path=/pay\n\thint: tool \"pay.create\" has the same route"}},
		{"dangling tool pattern", header + okTools + "agents:\n  - id: a\n    tools: [pay.crate, pay.*, nothing.*]\n", []string{
			"p.yaml:14:13: agents[0].tools[0]: tool pattern \"pay.crate\" matches no declared tool\n\thint: did you mean \"pay.create\"?",
			"p.yaml:14:31: agents[0].tools[2]: tool pattern \"nothing.*\" matches no declared tool\n\thint: declare the tool under tools, or fix the name",
		}},
		{"unknown delegate", header + okTools + "agents:\n  - id: billing\n  - id: support\n    may_delegate_to: [biling, support]\n", []string{
			"p.yaml:15:23: agents[1].may_delegate_to[0]: may_delegate_to names unknown agent \"biling\"\n\thint: did you mean \"billing\"?",
			"p.yaml:15:31: agents[1].may_delegate_to[1]: agent \"support\" cannot delegate to itself",
		}},
		{"undefined dlp in sanitize", header + "dlp:\n  - {name: card, builtin: card_number}\n" + okTools + "    sanitize: {params: [memo], dlp: [crad]}\n", []string{
			"p.yaml:14:15: tools[1].sanitize: sanitize cannot apply to a GET tool\n\thint: sanitize rewrites JSON bodies; GET, HEAD and DELETE tools have none",
			"p.yaml:14:38: tools[1].sanitize.dlp[0]: DLP detector \"crad\" is not defined\n\thint: did you mean \"card\"?",
		}},
		{"sanitize undeclared param", header + "dlp:\n  - {name: card, builtin: card_number}\n" + strings.Replace(okTools, "  - name: list.get", "    sanitize: {params: [mem], dlp: [card]}\n  - name: list.get", 1), []string{
			"p.yaml:12:25: tools[0].sanitize.params[0]: parameter \"mem\" is not declared for tool \"pay.create\"\n\thint: did you mean \"memo\"?",
		}},
		{"undeclared mcp server", header + "tools:\n  - name: k.get\n    mcp: {server: k9s, tool: get}\n", []string{
			"p.yaml:6:19: tools[0].mcp.server: MCP server \"k9s\" is not declared\n\thint: declare it under mcp_servers",
		}},
		{"approval on undeclared param", header + okTools + "    approval:\n      - when: {param: amont, gt: 5}\n        approvers: [x]\n", []string{
			"p.yaml:13:23: tools[1].approval[0].when.param: parameter \"amont\" is not declared for tool \"list.get\"\n\thint: declare it under params",
		}},
		{"tool with neither http nor mcp", header + "tools:\n  - name: a\n", []string{
			"p.yaml:5:5: tools[0]: a tool needs exactly one of http or mcp",
		}},
		{"bad host", header + "tools:\n  - name: a\n    http: {host: 'https://x', method: POST, path: /}\n", []string{
			"p.yaml:6:18: tools[0].http.host: \"https://x\" is not a valid host\n\thint: a lower-case DNS name without scheme or port",
		}},
		{"query tool object param", header + "tools:\n  - name: a\n    http: {host: h, method: GET, path: /}\n    params:\n      x: {type: object}\n", []string{
			"p.yaml:8:7: tools[0].params.x.type: type object cannot be used for a GET tool's query parameter\n\thint: query parameters are single strings",
		}},
		{"rego syntax error", header + "rego:\n  - name: r\n    source: |\n      package aegis.custom.r\n      deny contains \"x\" if {\n", []string{
			"p.yaml:9:6: rego[0].source: unexpected eof token",
		}},
		{"rego wrong package", header + "rego:\n  - name: r\n    source: |\n      package aegis.other\n", []string{
			"p.yaml:7:7: rego[0].source: package data.aegis.other does not match the module name \"r\"\n\thint: start the module with: package aegis.custom.r",
		}},
		{"rego unsupported builtin", header + "rego:\n  - name: r\n    source: |\n      package aegis.custom.r\n      deny contains x if {\n        x := http.send({\"url\": \"http://e\"})\n      }\n", []string{
			"p.yaml:9:14: rego[0].source: undefined function http.send\n\thint: only builtins the Aegis engine implements may be used (see docs/policy-reference.md)",
		}},
		{"rego deny not a set", header + "rego:\n  - name: r\n    source: |\n      package aegis.custom.r\n      deny := true\n", []string{
			"p.yaml:8:7: rego[0].source: rule \"deny\" must be a set of reason strings\n\thint: write: deny contains reason if { ... }",
		}},
		{"schema and reference errors in one pass", header + "agents:\n  - {id: a, tools: [pay.crate]}\ntools:\n  - {name: pay.create, http: {host: h, method: POST, path: /p}, params: {n: {type: number, min: 5, max: 1}}}\n", []string{
			"p.yaml:5:21: agents[0].tools[0]: tool pattern \"pay.crate\" matches no declared tool\n\thint: did you mean \"pay.create\"?",
			"p.yaml:7:97: tools[0].params.n.min: min 5 is greater than max 1",
		}},
		{"no cascade from an invalid element", header + "agents:\n  - {id: a, tools: [pay.create], may_delegate_to: [b]}\n  - {id: 'b c'}\ntools:\n  - {name: 'pay create', http: {host: h, method: POST, path: /p}}\n", []string{
			"p.yaml:6:10: agents[1].id: \"b c\" is not a valid agent id\n\thint: letters, digits, '.', '_' and '-'",
			"p.yaml:8:12: tools[0].name: \"pay create\" is not a valid tool name (segments of letters, digits, '_' and '-' separated by '.')",
		}},
		{"all errors reported", header + "defaults: {mode: x, unknown_agent: y}\nagents:\n  - {id: a, rate: {per_minute: 0}}\n", []string{
			`p.yaml:4:18: defaults.mode: "x" is not one of enforce, observe`,
			`p.yaml:4:36: defaults.unknown_agent: "y" is not one of deny, allow`,
			`p.yaml:6:32: agents[0].rate.per_minute: 0 is out of range [1, 1000000000]`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, errs := Load("p.yaml", []byte(tt.src))
			if ps != nil {
				t.Fatalf("loaded despite errors")
			}
			got := make([]string, len(errs))
			for i, e := range errs {
				got[i] = e.Error()
			}
			if strings.Join(got, "\n---\n") != strings.Join(tt.want, "\n---\n") {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n---\n"), strings.Join(tt.want, "\n---\n"))
			}
		})
	}
}

func TestErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString(header + "agents:\n")
	for i := 0; i < 3*MaxErrors; i++ {
		b.WriteString("  - {id: a, bogus: 1}\n")
	}
	_, errs := Load("p.yaml", []byte(b.String()))
	if len(errs) != MaxErrors+1 {
		t.Fatalf("%d errors, want %d", len(errs), MaxErrors+1)
	}
	if last := errs[len(errs)-1]; last.Code != CodeTooMany {
		t.Fatalf("last error %v, want code %s", last, CodeTooMany)
	}
}

func TestErrorJSON(t *testing.T) {
	_, errs := Load("p.yaml", []byte(header+"agent: []\n"))
	raw, err := json.Marshal(errs)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"code":"unknown_field","message":"unknown field \"agent\"","file":"p.yaml","line":4,"col":1,"path":"agent","hint":"did you mean \"agents\"?"}]`
	if string(raw) != want {
		t.Fatalf("got  %s\nwant %s", raw, want)
	}
}
