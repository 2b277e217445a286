// The SDK's emulator (proxytest) and wazero run on the host only; under
// GOOS=wasip1 there is nothing to test here.

//go:build !wasm

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/tetratelabs/wazero"

	"github.com/aegis-mesh/aegis/filter/internal/plugin"
	"github.com/aegis-mesh/aegis/internal/wasmdeps"
)

// wasmPath is where `make filter` writes the module, relative to this
// package directory.
const wasmPath = "../build/aegis-filter.wasm"

// maxModuleBytes is the product's limit (issue 3): Envoy keeps a copy of
// the module per worker VM. `make filter` links 6.79 MB with Go and
// binaryen's wasm-opt -Oz (scripts/wasm-opt.sh) takes that to 6.27 MB.
// `go run ./internal/wasmsize` on a build without -s -w attributes the
// bytes; docs/filter-config.md ("Module size") says what was cut and what
// is left.
const maxModuleBytes = 6 << 20

// maxDataSegments is V8's limit (kV8MaxWasmDataSegments, src/wasm/wasm-limits.h):
// Envoy's default runtime refuses a module with more. The Go linker writes
// one segment per run of non-zero data, about 69,000 for the filter today,
// so growth reaches this limit before any other.
const maxDataSegments = 100_000

func TestMain(m *testing.M) {
	if err := ensureModule(); err != nil {
		fmt.Fprintln(os.Stderr, "building the filter module:", err)
		os.Exit(1)
	}
	if err := buildFixtures(); err != nil {
		fmt.Fprintln(os.Stderr, "building test bundles and keys:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// ensureModule builds the module when it is missing or older than a Go
// file of a package it links (or go.mod), so that `go test ./filter` never
// tests a stale build. `make test` builds it first.
func ensureModule() error {
	info, err := os.Stat(wasmPath)
	if err == nil {
		stale, err := staleSince(info.ModTime())
		if err != nil {
			return err
		}
		if !stale {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(wasmPath), 0o755); err != nil {
		return err
	}
	// `make filter` is the one recipe for the shipped module (Go, then
	// wasm-opt); testing anything else would test a module nobody runs.
	cmd := exec.Command("make", "-C", "..", "filter")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make filter: %v\n%s", err, out)
	}
	return nil
}

// staleSince reports whether go.mod or a non-test Go file of any non-standard
// package the filter links changed after t.
func staleSince(t time.Time) (bool, error) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.Output()
	if err != nil {
		return false, fmt.Errorf("go list: %w", err)
	}
	paths := []string{"../go.mod", "../go.sum"}
	for _, dir := range strings.Fields(string(out)) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		paths = append(paths, files...)
	}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(t) {
			return true, nil
		}
	}
	return false, nil
}

// vmTest runs body twice: against the plugin compiled natively, and against
// the built wasm module in wazero through the SDK's emulator. The wasm run
// fails, never skips, when the module is missing. The emulator is
// process-global, so the runs are sequential.
func vmTest(t *testing.T, body func(t *testing.T, vm types.VMContext)) {
	t.Helper()
	t.Run("go", func(t *testing.T) {
		body(t, plugin.NewVMContext())
	})
	t.Run("wasm", func(t *testing.T) {
		wasm, err := os.ReadFile(wasmPath)
		if err != nil {
			t.Fatalf("filter module: %v (build it with `make filter`)", err)
		}
		vm, err := proxytest.NewWasmVMContext(wasm)
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Close()
		body(t, vm)
	})
}

func hasHeader(hs [][2]string, name, value string) bool {
	for _, h := range hs {
		if strings.EqualFold(h[0], name) && h[1] == value {
			return true
		}
	}
	return false
}

// envoyImports is what Envoy ≥ 1.33 registers for a proxy-wasm module
// (proxy-wasm-cpp-host include/proxy-wasm/exports.h, and its WASI subset).
// Envoy refuses to load a module importing anything else.
var envoyImports = map[string][]string{
	"env": {
		"proxy_log", "proxy_get_status", "proxy_set_property", "proxy_get_property",
		"proxy_send_local_response", "proxy_get_shared_data", "proxy_set_shared_data",
		"proxy_register_shared_queue", "proxy_resolve_shared_queue", "proxy_dequeue_shared_queue",
		"proxy_enqueue_shared_queue", "proxy_get_header_map_value", "proxy_add_header_map_value",
		"proxy_replace_header_map_value", "proxy_remove_header_map_value", "proxy_get_header_map_pairs",
		"proxy_set_header_map_pairs", "proxy_get_header_map_size", "proxy_get_buffer_status",
		"proxy_get_buffer_bytes", "proxy_set_buffer_bytes", "proxy_http_call", "proxy_grpc_call",
		"proxy_grpc_stream", "proxy_grpc_close", "proxy_grpc_cancel", "proxy_grpc_send",
		"proxy_set_tick_period_milliseconds", "proxy_get_current_time_nanoseconds",
		"proxy_define_metric", "proxy_increment_metric", "proxy_record_metric", "proxy_get_metric",
		"proxy_set_effective_context", "proxy_done", "proxy_call_foreign_function",
		"proxy_continue_stream", "proxy_close_stream", "proxy_get_log_level",
	},
	"wasi_snapshot_preview1": {
		"fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
		"environ_get", "environ_sizes_get", "args_get", "args_sizes_get", "clock_time_get",
		"random_get", "sched_yield", "poll_oneoff", "proc_exit", "path_open",
		"fd_prestat_get", "fd_prestat_dir_name",
	},
}

// TestNoEncodingJSON: no package the filter links imports encoding/json,
// which with the reflection data it keeps alive cost about 0.7 MB of the
// module; internal/jsonx reads and writes the filter's JSON instead.
func TestNoEncodingJSON(t *testing.T) {
	lines := wasmdeps.List(t, ".", "{{.ImportPath}} {{join .Imports \" \"}}")
	if len(lines) < 50 {
		t.Fatalf("go list returned only %d packages; the check would prove nothing", len(lines))
	}
	for _, line := range lines {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if imp == "encoding/json" {
				t.Errorf("%s imports encoding/json", f[0])
			}
		}
	}
}

// TestNoFmtErrorf: the packages the filter links build errors with
// internal/errs.Errorf, which is fmt.Errorf behind a call the compiler does
// not inline; inlined at every error path, fmt.Errorf cost the module
// about 30 kB.
func TestNoFmtErrorf(t *testing.T) {
	checked := 0
	for _, line := range wasmdeps.List(t, ".", "{{if not .Standard}}{{.ImportPath}} {{.Dir}} {{join .GoFiles \" \"}}{{end}}") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "github.com/aegis-mesh/aegis/") || f[0] == "github.com/aegis-mesh/aegis/internal/errs" {
			continue
		}
		for _, name := range f[2:] {
			src, err := os.ReadFile(filepath.Join(f[1], name))
			if err != nil {
				t.Fatal(err)
			}
			checked++
			if strings.Contains(string(src), "fmt.Errorf(") {
				t.Errorf("%s/%s calls fmt.Errorf; use internal/errs.Errorf", f[0], name)
			}
		}
	}
	if checked < 50 {
		t.Fatalf("checked only %d files; the test would prove nothing", checked)
	}
}

func TestModuleImportsAreEnvoyCompatible(t *testing.T) {
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatalf("filter module: %v", err)
	}
	if len(wasm) > maxModuleBytes {
		t.Errorf("module is %d bytes, limit %d", len(wasm), maxModuleBytes)
	}
	t.Logf("module size: %d bytes", len(wasm))
	if n, err := dataSegments(wasm); err != nil {
		t.Errorf("data section: %v", err)
	} else if n > maxDataSegments {
		t.Errorf("module has %d data segments; V8 refuses more than %d", n, maxDataSegments)
	} else {
		t.Logf("data segments: %d (V8 limit %d)", n, maxDataSegments)
	}

	allowed := map[string]bool{}
	for mod, names := range envoyImports {
		for _, n := range names {
			allowed[mod+"."+n] = true
		}
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	compiled, err := r.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	imports := compiled.ImportedFunctions()
	if len(imports) == 0 {
		t.Fatal("module imports nothing: not a proxy-wasm module")
	}
	sawProxy := false
	for _, f := range imports {
		mod, name, _ := f.Import()
		if !allowed[mod+"."+name] {
			t.Errorf("import %s.%s is not registered by Envoy 1.33", mod, name)
		}
		sawProxy = sawProxy || mod == "env"
	}
	if !sawProxy {
		t.Error("module imports no proxy_* host function")
	}
	// Envoy calls these; without them the module is not a filter.
	exports := compiled.ExportedFunctions()
	abi := false
	for name := range exports {
		// Envoy picks the ABI from this marker export; it knows 0.2.0 and 0.2.1.
		abi = abi || name == "proxy_abi_version_0_2_0" || name == "proxy_abi_version_0_2_1"
	}
	if !abi {
		t.Error("module exports no proxy_abi_version_0_2_x marker")
	}
	for _, name := range []string{"_initialize", "proxy_on_memory_allocate", "proxy_on_vm_start",
		"proxy_on_configure", "proxy_on_context_create", "proxy_on_request_headers"} {
		if _, ok := exports[name]; !ok {
			t.Errorf("module does not export %s", name)
		}
	}
}

// dataSegments returns the count the module's data section declares.
func dataSegments(wasm []byte) (int, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return 0, fmt.Errorf("not a wasm module")
	}
	uleb := func(b []byte) (uint64, int, error) {
		var v uint64
		for i := 0; i < len(b) && i < 10; i++ {
			v |= uint64(b[i]&0x7f) << (7 * i)
			if b[i]&0x80 == 0 {
				return v, i + 1, nil
			}
		}
		return 0, 0, fmt.Errorf("bad LEB128")
	}
	for off := 8; off < len(wasm); {
		id := wasm[off]
		size, n, err := uleb(wasm[off+1:])
		if err != nil {
			return 0, err
		}
		body := off + 1 + n
		if size > uint64(len(wasm)-body) {
			return 0, fmt.Errorf("section %d overruns the module", id)
		}
		if id == 11 {
			count, _, err := uleb(wasm[body : body+int(size)])
			return int(count), err
		}
		off = body + int(size)
	}
	return 0, fmt.Errorf("no data section")
}
