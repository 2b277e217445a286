package policies

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/bundle"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func compileExample(t *testing.T, name string, opts Options) *Compiled {
	t.Helper()
	ps, errs := LoadPath(filepath.Join("examples", name))
	if errs != nil {
		t.Fatal(errs)
	}
	c, err := Compile(context.Background(), ps, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGolden pins the generated Rego, data.json and plan.json of the
// examples. Run `go test ./policies -run TestGolden -update` after an
// intended change and review the diff.
func TestGolden(t *testing.T) {
	for _, name := range []string{"payments", "mcp-devops"} {
		t.Run(name, func(t *testing.T) {
			c := compileExample(t, name+".yaml", Options{SkipWasm: true})
			var plan bytes.Buffer
			if err := json.Indent(&plan, c.Plan, "", " "); err != nil {
				t.Fatal(err)
			}
			files := map[string][]byte{
				name + ".tools.rego": fileData(t, c.Rego, ToolsRegoPath),
				name + ".data.json":  c.Data,
				name + ".plan.json":  plan.Bytes(),
			}
			if name == "payments" {
				files["decision.rego"] = fileData(t, c.Rego, DecisionRegoPath)
			}
			for f, got := range files {
				path := filepath.Join("testdata", f)
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the golden file (run with -update and review the diff)", path)
				}
			}
		})
	}
}

func fileData(t *testing.T, files []File, path string) []byte {
	t.Helper()
	for _, f := range files {
		if f.Path == path {
			return f.Data
		}
	}
	t.Fatalf("no file %s", path)
	return nil
}

// bigPolicy writes a policy set with n agents and n tools, declared in the
// order perm gives.
func bigPolicy(n int, perm []int) string {
	var b strings.Builder
	b.WriteString("apiVersion: aegis.policy/v1\nkind: PolicySet\nmetadata: {name: big, tenant: t}\n")
	b.WriteString("dlp:\n  - {name: card, builtin: card_number}\n  - {name: mail, pattern: '[a-z]+@[a-z]+'}\n")
	b.WriteString("mcp_servers:\n  - {name: srv, http: {host: mcp.internal, path: /mcp}}\n")
	b.WriteString("agents:\n")
	for _, i := range perm {
		fmt.Fprintf(&b, "  - id: agent-%02d\n    tools: [svc%02d.*, srv.t%02d]\n    regions: [eu-%d]\n    budget: {usd_per_day: %d.25}\n    may_delegate_to: [agent-%02d]\n",
			i, i, (i+1)%n, i%3, i, (i+1)%n)
	}
	b.WriteString("tools:\n")
	for _, i := range perm {
		fmt.Fprintf(&b, "  - name: svc%02d.call\n    cost_usd: 0.%03d\n    http: {host: svc%d.internal, method: POST, path_prefix: /v%d/}\n    params:\n      n: {type: integer, min: %d, max: %d}\n      s: {type: string, pattern: '^x{%d}$'}\n    sanitize: {params: [s], dlp: [mail, card]}\n    approval:\n      - when: {param: n, gt: %d}\n        approvers: [team-%d]\n",
			i, i, i%4, i, i, 100+i, i, 50+i, i)
		fmt.Fprintf(&b, "  - name: srv.t%02d\n    mcp: {server: srv, tool: t%02d}\n", i, i)
	}
	return b.String()
}

// TestDeterminism compiles a policy set with more than 12 agents and tools
// (OPA's sort takes its unstable path above 12 elements), in shuffled
// declaration orders: the same source compiles to the same bytes every time,
// and the constant tables do not depend on declaration order.
func TestDeterminism(t *testing.T) {
	const n = 16
	rng := rand.New(rand.NewPCG(1, 2))
	created := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	opts := BundleOptions{Revision: 3, CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour), SignKey: key}
	var firstData []byte
	for round := range 3 {
		perm := rng.Perm(n)
		src := []byte(bigPolicy(n, perm))
		var outs [2][]byte
		for i := range outs {
			ps, errs := Load("big.yaml", src)
			if errs != nil {
				t.Fatal(errs)
			}
			c, err := Compile(context.Background(), ps, Options{})
			if err != nil {
				t.Fatal(err)
			}
			archive, runtime, err := BuildBundles(c, opts)
			if err != nil {
				t.Fatal(err)
			}
			var all bytes.Buffer
			for _, f := range c.Rego {
				all.Write(f.Data)
			}
			for _, b := range [][]byte{c.Plan, c.Wasm, c.Data, archive, runtime} {
				all.Write(b)
			}
			outs[i] = all.Bytes()
			if i == 0 {
				if firstData == nil {
					firstData = c.Data
				} else if !bytes.Equal(firstData, c.Data) {
					t.Errorf("round %d: data.json depends on declaration order", round)
				}
			}
		}
		if !bytes.Equal(outs[0], outs[1]) {
			t.Fatalf("round %d: two compilations of the same source differ", round)
		}
	}
}

var fromComment = regexp.MustCompile(`^# from ([^:]+):(\d+):(\d+) (\S+)$`)

// TestTraceToYAML checks that every generated rule points at the YAML it
// came from: the comment's line:col holds the field its path names.
func TestTraceToYAML(t *testing.T) {
	for _, name := range []string{"payments.yaml", "mcp-devops.yaml"} {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("examples", name))
			if err != nil {
				t.Fatal(err)
			}
			yamlLines := strings.Split(string(src), "\n")
			c := compileExample(t, name, Options{SkipWasm: true})
			tools := fileData(t, c.Rego, ToolsRegoPath)
			n := 0
			for i, l := range strings.Split(string(tools), "\n") {
				m := fromComment.FindStringSubmatch(l)
				if m == nil {
					continue
				}
				n++
				if m[1] != name {
					t.Errorf("line %d names file %s", i+1, m[1])
				}
				var line, col int
				fmt.Sscan(m[2], &line)
				fmt.Sscan(m[3], &col)
				at := yamlLines[line-1][col-1:]
				path := m[4]
				last := path[strings.LastIndexAny(path, ".]")+1:]
				if strings.HasSuffix(path, "]") {
					// An element of a list: the position is the element itself.
					if !strings.HasPrefix(at, "name:") && !strings.HasPrefix(at, "when:") && !strings.HasPrefix(at, "{") {
						t.Errorf("%s -> %q, want the start of the list element", l, at)
					}
				} else if !strings.HasPrefix(at, last+":") {
					t.Errorf("%s -> %q, want field %q", l, at, last)
				}
				src, _, ok := Trace(tools, i+3)
				if !ok || src.Line != line || src.Path != path {
					t.Errorf("Trace(row %d) = %v, %v; want %d %s", i+3, src, ok, line, path)
				}
			}
			if n == 0 {
				t.Fatal("no rule carries a source comment")
			}
		})
	}
}

// TestPlanLocations checks that the IR plan keeps file:row:col of the
// generated Rego, so a statement's location leads back to YAML via Trace.
func TestPlanLocations(t *testing.T) {
	c := compileExample(t, "payments.yaml", Options{SkipWasm: true})
	var plan struct {
		Static struct {
			Files []struct {
				Value string `json:"value"`
			} `json:"files"`
		} `json:"static"`
	}
	if err := json.Unmarshal(c.Plan, &plan); err != nil {
		t.Fatal(err)
	}
	file := -1
	for i, f := range plan.Static.Files {
		if f.Value == ToolsRegoPath {
			file = i
		}
	}
	if file < 0 {
		t.Fatalf("plan files %v lack %s", plan.Static.Files, ToolsRegoPath)
	}
	// Find statements located in tools.rego and map their rows to YAML.
	locs := regexp.MustCompile(`"file":`+fmt.Sprint(file)+`,"col":\d+,"row":(\d+)`).FindAllSubmatch(c.Plan, -1)
	if len(locs) == 0 {
		t.Fatal("no statement is located in tools.rego")
	}
	tools := fileData(t, c.Rego, ToolsRegoPath)
	paths := map[string]bool{}
	for _, m := range locs {
		var row int
		fmt.Sscan(string(m[1]), &row)
		if src, _, ok := Trace(tools, row); ok {
			paths[src.Path] = true
		}
	}
	for _, want := range []string{"tools[0].params.amount", "tools[0].approval[0]", "tools[4].params.to", "rego[0]"} {
		if !paths[want] {
			t.Errorf("no plan statement traces back to %s (found %v)", want, paths)
		}
	}
}

func TestCompileRejectsUnsupportedBuiltins(t *testing.T) {
	ps, errs := LoadPath("examples/payments.yaml")
	if errs != nil {
		t.Fatal(errs)
	}
	// Without time.weekday the custom module cannot compile: the error
	// points into the YAML's rego source block.
	builtins := slices.DeleteFunc(slices.Clone(engineBuiltins()), func(s string) bool { return s == "time.weekday" })
	_, err := Compile(context.Background(), ps, Options{Builtins: builtins, SkipWasm: true})
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("err = %v, want located errors", err)
	}
	if got, want := es[0].Error(), "examples/payments.yaml:121:9: rego[0].source: undefined function time.weekday\n\thint: only builtins the Aegis engine implements may be used"; got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestCompiledMetadata(t *testing.T) {
	c := compileExample(t, "mcp-devops.yaml", Options{})
	if c.Tenant != "platform" || c.Name != "platform-devops" {
		t.Errorf("tenant/name = %s/%s", c.Tenant, c.Name)
	}
	if !slices.Equal(c.Entrypoints, []string{"aegis/decision", "aegis/mcp_visible_tools"}) {
		t.Errorf("entrypoints = %v", c.Entrypoints)
	}
	want := []MCPEndpoint{{"k8s", "mcp-k8s.platform.internal", "/mcp"}, {"vault", "mcp-vault.platform.internal", "/mcp"}}
	if !slices.Equal(c.MCPEndpoints, want) {
		t.Errorf("endpoints = %v", c.MCPEndpoints)
	}
	if len(c.Wasm) < 8 || !bytes.Equal(c.Wasm[:4], []byte("\x00asm")) {
		t.Errorf("wasm module missing or malformed (%d bytes)", len(c.Wasm))
	}
	supported := map[string]bool{}
	for _, b := range engineBuiltins() {
		supported[b] = true
	}
	for _, b := range c.Builtins {
		if !supported[b] {
			t.Errorf("plan calls %s, which the engine does not implement", b)
		}
	}
	if !slices.IsSorted(c.Builtins) || len(c.Builtins) == 0 {
		t.Errorf("builtins = %v", c.Builtins)
	}
	if c.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("max body bytes = %d", c.MaxBodyBytes)
	}
}

func TestBuildBundles(t *testing.T) {
	c := compileExample(t, "payments.yaml", Options{})
	created := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	opts := BundleOptions{Revision: 7, CreatedAt: created, ExpiresAt: created.Add(time.Hour), SignKey: key}
	archive, runtime, err := BuildBundles(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		data  []byte
		kind  string
		files []string
	}{
		{"archive", archive, bundle.KindArchive, []string{"aegis/custom/weekend_payments.rego", "aegis/decision.rego", "aegis/tools.rego", "data.json", "plan.json", "policy.wasm"}},
		{"runtime", runtime, bundle.KindRuntime, []string{"data.json", "plan.json"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := bundle.Open(tt.data, bundle.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Verify(key.Public().(ed25519.PublicKey), created.Add(time.Minute)); err != nil {
				t.Fatalf("verify: %v", err)
			}
			m := b.Manifest
			if m.Kind != tt.kind || m.Tenant != "acme" || m.Name != "acme-payments" || m.Revision != 7 {
				t.Errorf("manifest = %+v", m)
			}
			if !slices.Equal(b.Paths(), tt.files) {
				t.Errorf("files = %v, want %v", b.Paths(), tt.files)
			}
			if !slices.Equal(m.Builtins, c.Builtins) || !slices.Equal(m.Entrypoints, c.Entrypoints) {
				t.Errorf("builtins/entrypoints = %v / %v", m.Builtins, m.Entrypoints)
			}
			if !bytes.Equal(b.Files["plan.json"], c.Plan) {
				t.Error("plan.json differs from the compiled plan")
			}
		})
	}
	if _, _, err := BuildBundles(c, BundleOptions{Revision: 0, CreatedAt: created, ExpiresAt: created}); err == nil ||
		!strings.Contains(err.Error(), "revision 0: want >= 1") || !strings.Contains(err.Error(), "expires_at must be after created_at") {
		t.Errorf("bad options: err = %v", err)
	}
}
