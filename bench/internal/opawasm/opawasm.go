// Package opawasm evaluates OPA's compiled wasm policies (policy.wasm, ABI
// 1.2 and later) under wazero, through the one-call opa_eval export: the
// baseline a user gets by running OPA's wasm target instead of our engine.
// It is a benchmark baseline, not a product path: one Instance serves one
// goroutine, and builtins that the module leaves to the host are refused
// at New unless OPA's Go evaluator implements them (they run there, as in
// OPA's own SDK) or they are aegis.dlp.redact (package dlp, as in
// policies.RedactFunction).
//
// The ABI is documented at https://www.openpolicyagent.org/docs/wasm.
package opawasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/aegis-mesh/aegis/dlp"
)

// Instance is one instantiated policy module with its data loaded.
//
// # Notes
//
// Not safe for concurrent use: evaluations share the module's heap. Close
// releases the runtime.
type Instance struct {
	rt  wazero.Runtime
	mod api.Module
	mem api.Memory

	eval, malloc, jsonParse, jsonDump, valueParse, valueDump api.Function

	dataAddr    uint32
	evalHeapPtr uint32

	entrypoints map[string]int32
	builtins    map[int32]builtin
	// dlpSets caches compiled detector sets by their JSON text, as the
	// engine does per bundle: constant specs are compiled once.
	dlpSets map[string]*dlp.Set
}

// builtin is either ours (fn, on JSON values) or OPA's Go implementation
// (topdown, on terms): the builtins OPA's wasm compiler does not build in
// are the ones OPA's own SDK runs through topdown.
type builtin struct {
	name    string
	fn      func(inst *Instance, args []any) (any, error)
	topdown topdown.BuiltinFunc
}

// hostBuiltins are the builtins this host implements for modules that
// call out for them.
var hostBuiltins = map[string]func(inst *Instance, args []any) (any, error){
	"aegis.dlp.redact": (*Instance).redact,
}

// New instantiates wasm and loads data (a JSON document, or nil). It fails
// when the module's ABI is older than 1.2 or when it needs a builtin this
// host does not implement.
func New(ctx context.Context, wasm, data []byte) (*Instance, error) {
	rt := wazero.NewRuntime(ctx)
	inst := &Instance{rt: rt, builtins: map[int32]builtin{}, dlpSets: map[string]*dlp.Set{}}
	fail := func(err error) (*Instance, error) {
		_ = rt.Close(ctx)
		return nil, err
	}
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return fail(fmt.Errorf("compiling policy.wasm: %w", err))
	}
	minPages := uint32(2)
	for _, m := range compiled.ImportedMemories() {
		minPages = max(minPages, m.Min())
	}
	if err := inst.instantiateHost(ctx); err != nil {
		return fail(err)
	}
	if _, err := rt.InstantiateWithConfig(ctx, glueModule(minPages), wazero.NewModuleConfig().WithName("env")); err != nil {
		return fail(fmt.Errorf("instantiating the env module: %w", err))
	}
	mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("policy"))
	if err != nil {
		return fail(fmt.Errorf("instantiating policy.wasm: %w", err))
	}
	inst.mod, inst.mem = mod, mod.Memory()
	if inst.mem == nil {
		return fail(errors.New("policy.wasm has no memory"))
	}
	if err := inst.checkABI(); err != nil {
		return fail(err)
	}
	for _, p := range []struct {
		dst  *api.Function
		name string
	}{{&inst.eval, "opa_eval"}, {&inst.malloc, "opa_malloc"}, {&inst.jsonParse, "opa_json_parse"}, {&inst.jsonDump, "opa_json_dump"},
		{&inst.valueParse, "opa_value_parse"}, {&inst.valueDump, "opa_value_dump"}} {
		if *p.dst = mod.ExportedFunction(p.name); *p.dst == nil {
			return fail(fmt.Errorf("policy.wasm does not export %s", p.name))
		}
	}
	if err := inst.load(ctx, data); err != nil {
		return fail(err)
	}
	return inst, nil
}

func (inst *Instance) checkABI() error {
	major, minor := inst.mod.ExportedGlobal("opa_wasm_abi_version"), inst.mod.ExportedGlobal("opa_wasm_abi_minor_version")
	if major == nil || minor == nil {
		return errors.New("policy.wasm: no ABI version globals")
	}
	if ma, mi := int32(major.Get()), int32(minor.Get()); ma != 1 || mi < 2 {
		return fmt.Errorf("policy.wasm: ABI %d.%d, need 1.2 or later (opa_eval)", ma, mi)
	}
	return nil
}

// load parses data into the heap, reads the builtin and entrypoint tables
// and remembers where each evaluation's heap starts.
func (inst *Instance) load(ctx context.Context, data []byte) error {
	if _, err := inst.malloc.Call(ctx, 0); err != nil { // initialises the heap
		return fmt.Errorf("opa_malloc: %w", err)
	}
	if data != nil {
		addr, err := inst.parseJSON(ctx, data)
		if err != nil {
			return fmt.Errorf("loading data: %w", err)
		}
		inst.dataAddr = addr
	}
	var builtins map[string]int32
	if err := inst.callJSON(ctx, "builtins", &builtins); err != nil {
		return err
	}
	var missing []string
	for name, id := range builtins {
		if fn, ok := hostBuiltins[name]; ok {
			inst.builtins[id] = builtin{name: name, fn: fn}
			continue
		}
		if td := topdown.GetBuiltin(name); td != nil {
			inst.builtins[id] = builtin{name: name, topdown: td}
			continue
		}
		missing = append(missing, name)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("policy.wasm needs builtins this host does not implement: %s", strings.Join(missing, ", "))
	}
	if err := inst.callJSON(ctx, "entrypoints", &inst.entrypoints); err != nil {
		return err
	}
	res, err := inst.mod.ExportedFunction("opa_heap_ptr_get").Call(ctx)
	if err != nil {
		return fmt.Errorf("opa_heap_ptr_get: %w", err)
	}
	inst.evalHeapPtr = uint32(res[0])
	return nil
}

// callJSON calls an export that returns a value address and decodes the
// value's JSON dump into out.
func (inst *Instance) callJSON(ctx context.Context, export string, out any) error {
	f := inst.mod.ExportedFunction(export)
	if f == nil {
		return fmt.Errorf("policy.wasm does not export %s", export)
	}
	res, err := f.Call(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", export, err)
	}
	raw, err := inst.dumpJSON(ctx, uint32(res[0]))
	if err != nil {
		return fmt.Errorf("%s: %w", export, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: %w", export, err)
	}
	return nil
}

// Entrypoint returns the id of a named entrypoint ("aegis/decision").
func (inst *Instance) Entrypoint(name string) (int32, bool) {
	id, ok := inst.entrypoints[name]
	return id, ok
}

// Eval evaluates entrypoint on input (JSON text) and returns the result
// set as JSON ([{"result": ...}], or [] when undefined). The returned
// bytes are a copy.
//
// The input is written at the start of the evaluation heap and opa_eval
// gets the heap pointer just past it, so each evaluation reuses the same
// memory (what OPA's own SDK does).
func (inst *Instance) Eval(ctx context.Context, entrypoint int32, input []byte) ([]byte, error) {
	inAddr := inst.evalHeapPtr
	end := uint64(inAddr) + uint64(len(input))
	if size := uint64(inst.mem.Size()); end > size {
		pages := (end - size + 65535) / 65536
		if _, ok := inst.mem.Grow(uint32(pages)); !ok {
			return nil, fmt.Errorf("input of %d bytes: memory cannot grow", len(input))
		}
	}
	if !inst.mem.Write(inAddr, input) {
		return nil, errors.New("writing input: out of bounds")
	}
	res, err := inst.eval.Call(ctx, 0, api.EncodeI32(entrypoint), uint64(inst.dataAddr), uint64(inAddr),
		uint64(len(input)), uint64(uint32(end)), 0 /* JSON output */)
	if err != nil {
		return nil, fmt.Errorf("opa_eval: %w", err)
	}
	out, err := inst.cString(uint32(res[0]))
	if err != nil {
		return nil, fmt.Errorf("opa_eval result: %w", err)
	}
	return bytes.Clone(out), nil
}

// Close releases the runtime and everything in it.
func (inst *Instance) Close(ctx context.Context) error { return inst.rt.Close(ctx) }

// cString returns a view of the NUL-terminated string at addr.
func (inst *Instance) cString(addr uint32) ([]byte, error) {
	size := inst.mem.Size()
	if addr >= size {
		return nil, fmt.Errorf("address %d outside memory (%d bytes)", addr, size)
	}
	view, _ := inst.mem.Read(addr, size-addr)
	n := bytes.IndexByte(view, 0)
	if n < 0 {
		return nil, fmt.Errorf("string at %d is not terminated", addr)
	}
	return view[:n], nil
}

func (inst *Instance) dumpJSON(ctx context.Context, value uint32) ([]byte, error) {
	res, err := inst.jsonDump.Call(ctx, uint64(value))
	if err != nil {
		return nil, fmt.Errorf("opa_json_dump: %w", err)
	}
	s, err := inst.cString(uint32(res[0]))
	if err != nil {
		return nil, err
	}
	return bytes.Clone(s), nil
}

func (inst *Instance) parseJSON(ctx context.Context, raw []byte) (uint32, error) {
	res, err := inst.malloc.Call(ctx, uint64(len(raw)))
	if err != nil {
		return 0, fmt.Errorf("opa_malloc: %w", err)
	}
	addr := uint32(res[0])
	if !inst.mem.Write(addr, raw) {
		return 0, errors.New("writing JSON: out of bounds")
	}
	res, err = inst.jsonParse.Call(ctx, uint64(addr), uint64(len(raw)))
	if err != nil {
		return 0, fmt.Errorf("opa_json_parse: %w", err)
	}
	if res[0] == 0 {
		return 0, errors.New("opa_json_parse refused the document")
	}
	return uint32(res[0]), nil
}
