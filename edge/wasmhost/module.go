package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// CompileOptions tune Compile.
type CompileOptions struct {
	// CacheDir, when set, keeps compiled machine code on disk so that a
	// restart does not compile the module again.
	CacheDir string
	// MemoryLimitPages caps each instance's memory in 64 KiB pages
	// (0: wazero's default, 4 GiB).
	MemoryLimitPages uint32
	// InterruptOnTimeout makes guest code stoppable: a request whose
	// deadline passes while the filter runs (an endless loop) is failed at
	// once and the instance closed. It costs a check at every loop header
	// and function call of the guest: the Aegis filter's allow path runs
	// about four times slower. Without it a guest overrunning the deadline
	// is failed (and its instance replaced) when it returns, as Envoy
	// would; an endless loop holds its instance.
	InterruptOnTimeout bool
}

// ErrImportNotAllowed is wrapped by Compile when the module imports
// something Envoy does not register.
var ErrImportNotAllowed = errors.New("import not registered by Envoy")

// Module is a compiled filter together with the runtime that runs its
// instances. Close it after every Pool built on it.
type Module struct {
	rt            wazero.Runtime
	compiled      wazero.CompiledModule
	cache         wazero.CompilationCache
	abiVersion    string
	interruptible bool
}

// Compile checks and compiles a proxy-wasm module. It refuses modules that
// import anything outside Envoy's set, and modules without the ABI 0.2.x
// version export or proxy_on_memory_allocate/malloc.
func Compile(ctx context.Context, wasm []byte, opts CompileOptions) (*Module, error) {
	var cache wazero.CompilationCache
	var err error
	if opts.CacheDir != "" {
		cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache %s: %w", opts.CacheDir, err)
		}
	} else {
		cache = wazero.NewCompilationCache()
	}
	rc := wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(opts.InterruptOnTimeout)
	if opts.MemoryLimitPages > 0 {
		rc = rc.WithMemoryLimitPages(opts.MemoryLimitPages)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	m := &Module{rt: rt, cache: cache, interruptible: opts.InterruptOnTimeout}
	fail := func(err error) (*Module, error) {
		_ = rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, err
	}
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return fail(fmt.Errorf("compiling the filter module: %w", err))
	}
	m.compiled = compiled
	if err := checkImports(compiled); err != nil {
		return fail(err)
	}
	if err := m.checkExports(); err != nil {
		return fail(err)
	}
	if err := instantiateHost(ctx, rt); err != nil {
		return fail(err)
	}
	return m, nil
}

// Close releases the runtime and the compilation cache.
func (m *Module) Close(ctx context.Context) error {
	err := m.rt.Close(ctx)
	if cerr := m.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// ABIVersion is the proxy-wasm ABI the module declares ("0_2_0" or "0_2_1").
func (m *Module) ABIVersion() string { return m.abiVersion }

// Imports lists the module's function imports as "module.name", sorted.
func (m *Module) Imports() []string {
	var out []string
	for _, f := range m.compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		out = append(out, mod+"."+name)
	}
	sort.Strings(out)
	return out
}

// checkImports fails on the first import (in module order) that Envoy
// would not link: it names it, so the author knows which dependency to
// drop.
func checkImports(c wazero.CompiledModule) error {
	env := setOf(abi.EnvFunctions)
	wasi := setOf(abi.WASIFunctions)
	var bad []string
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		ok := (mod == abi.ModuleEnv && env[name]) || (mod == abi.ModuleWASI && wasi[name])
		if !ok {
			bad = append(bad, mod+"."+name)
		}
	}
	if mems := c.ImportedMemories(); len(mems) > 0 {
		for _, mem := range mems {
			mod, name, _ := mem.Import()
			bad = append(bad, mod+"."+name+" (memory)")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("filter module imports %s: %w (Envoy 1.33 set only)", strings.Join(bad, ", "), ErrImportNotAllowed)
	}
	return nil
}

func (m *Module) checkExports() error {
	exp := m.compiled.ExportedFunctions()
	switch {
	case exp["proxy_abi_version_0_2_1"] != nil:
		m.abiVersion = "0_2_1"
	case exp["proxy_abi_version_0_2_0"] != nil:
		m.abiVersion = "0_2_0"
	default:
		return errors.New("filter module exports no proxy_abi_version_0_2_0 or _0_2_1: not a proxy-wasm 0.2.x module")
	}
	if exp["malloc"] == nil && exp["proxy_on_memory_allocate"] == nil {
		return errors.New("filter module exports neither malloc nor proxy_on_memory_allocate")
	}
	if m.compiled.ExportedMemories()["memory"] == nil {
		return errors.New("filter module exports no memory")
	}
	return nil
}

func setOf(names []string) map[string]bool {
	s := make(map[string]bool, len(names))
	for _, n := range names {
		s[n] = true
	}
	return s
}

// i32 and i64 spell host function signatures.
const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)
