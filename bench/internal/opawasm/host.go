package opawasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/aegis-mesh/aegis/dlp"
)

// hostError carries a failure out of a host function: wazero turns the
// panic into the error that the guest call returns.
type hostError struct{ err error }

func (e hostError) Error() string { return e.err.Error() }

// instantiateHost registers the functions the glue module re-exports.
func (inst *Instance) instantiateHost(ctx context.Context) error {
	b := inst.rt.NewHostModuleBuilder(hostModule)
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, addr uint32) {
		msg, err := inst.cString(addr)
		if err != nil {
			panic(hostError{fmt.Errorf("opa_abort (unreadable message): %w", err)})
		}
		panic(hostError{fmt.Errorf("opa_abort: %s", msg)})
	}).Export("opa_abort")
	// Print statements are dropped: a benchmark must not write per call.
	b.NewFunctionBuilder().WithFunc(func(context.Context, uint32) {}).Export("opa_println")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, id, _ uint32) uint32 {
		return inst.dispatch(ctx, id)
	}).Export("opa_builtin0")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, id, _, a uint32) uint32 {
		return inst.dispatch(ctx, id, a)
	}).Export("opa_builtin1")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, id, _, a, b uint32) uint32 {
		return inst.dispatch(ctx, id, a, b)
	}).Export("opa_builtin2")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, id, _, a, b, c uint32) uint32 {
		return inst.dispatch(ctx, id, a, b, c)
	}).Export("opa_builtin3")
	b.NewFunctionBuilder().WithFunc(func(ctx context.Context, id, _, a, b, c, d uint32) uint32 {
		return inst.dispatch(ctx, id, a, b, c, d)
	}).Export("opa_builtin4")
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiating the host module: %w", err)
	}
	return nil
}

// dispatch runs a host builtin: arguments are dumped to JSON, decoded,
// handed to the Go implementation, and the result parsed back into the
// guest heap. A builtin error makes the call undefined (address 0), as in
// OPA's non-strict evaluation.
func (inst *Instance) dispatch(ctx context.Context, id uint32, argAddrs ...uint32) uint32 {
	b, ok := inst.builtins[int32(id)]
	if !ok {
		panic(hostError{fmt.Errorf("builtin id %d was not declared by the module", id)})
	}
	if b.topdown != nil {
		return inst.dispatchTopdown(ctx, b, argAddrs)
	}
	args := make([]any, len(argAddrs))
	for i, a := range argAddrs {
		raw, err := inst.dumpJSON(ctx, a)
		if err != nil {
			panic(hostError{fmt.Errorf("%s argument %d: %w", b.name, i, err)})
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&args[i]); err != nil {
			panic(hostError{fmt.Errorf("%s argument %d: %w", b.name, i, err)})
		}
	}
	out, err := b.fn(inst, args)
	if err != nil {
		return 0
	}
	raw, err := json.Marshal(out)
	if err != nil {
		panic(hostError{fmt.Errorf("%s result: %w", b.name, err)})
	}
	addr, err := inst.parseJSON(ctx, raw)
	if err != nil {
		panic(hostError{fmt.Errorf("%s result: %w", b.name, err)})
	}
	return addr
}

const maxDLPSets = 64

// redact is aegis.dlp.redact(text, specs) -> {"text", "hits"}.
func (inst *Instance) redact(args []any) (any, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("aegis.dlp.redact: %d arguments", len(args))
	}
	text, ok := args[0].(string)
	if !ok {
		return nil, errors.New("aegis.dlp.redact: text must be a string")
	}
	key, err := json.Marshal(args[1])
	if err != nil {
		return nil, err
	}
	set, ok := inst.dlpSets[string(key)]
	if !ok {
		specs, err := dlp.SpecsFromGo(args[1])
		if err != nil {
			return nil, fmt.Errorf("aegis.dlp.redact: %w", err)
		}
		if set, err = dlp.Compile(specs); err != nil {
			return nil, fmt.Errorf("aegis.dlp.redact: %w", err)
		}
		if len(inst.dlpSets) >= maxDLPSets {
			clear(inst.dlpSets) // specs are constants of the policy; this only bounds a hostile one
		}
		inst.dlpSets[string(key)] = set
	}
	out, hits := set.Redact(text)
	if hits == nil {
		hits = []string{}
	}
	return map[string]any{"text": out, "hits": hits}, nil
}

// dispatchTopdown runs one of OPA's Go builtins on terms read with
// opa_value_dump (Rego syntax keeps sets and numbers exact) and writes the
// result back with opa_value_parse.
func (inst *Instance) dispatchTopdown(ctx context.Context, b builtin, argAddrs []uint32) uint32 {
	terms := make([]*ast.Term, len(argAddrs))
	for i, a := range argAddrs {
		res, err := inst.valueDump.Call(ctx, uint64(a))
		if err != nil {
			panic(hostError{fmt.Errorf("%s argument %d: opa_value_dump: %w", b.name, i, err)})
		}
		text, err := inst.cString(uint32(res[0]))
		if err != nil {
			panic(hostError{fmt.Errorf("%s argument %d: %w", b.name, i, err)})
		}
		if terms[i], err = ast.ParseTerm(string(text)); err != nil {
			panic(hostError{fmt.Errorf("%s argument %d: %w", b.name, i, err)})
		}
	}
	bctx := topdown.BuiltinContext{Context: ctx, Time: ast.NumberTerm(json.Number(strconv.FormatInt(time.Now().UnixNano(), 10)))}
	var out *ast.Term
	err := b.topdown(bctx, terms, func(t *ast.Term) error { out = t; return nil })
	if err != nil || out == nil {
		return 0 // undefined, as non-strict evaluation treats builtin errors
	}
	// Written back as JSON, not Rego text: ast.String prints Go escapes
	// (\x00) that opa_value_parse does not read. None of the builtins a
	// policy leaves to the host returns a set, which JSON would flatten.
	v, err := ast.JSON(out.Value)
	if err != nil {
		panic(hostError{fmt.Errorf("%s result: %w", b.name, err)})
	}
	raw, err := json.Marshal(v)
	if err != nil {
		panic(hostError{fmt.Errorf("%s result: %w", b.name, err)})
	}
	addr, err := inst.parseJSON(ctx, raw)
	if err != nil {
		panic(hostError{fmt.Errorf("%s result: %w", b.name, err)})
	}
	return addr
}
