package wasmhost

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// hostFn is one env function: its i32/i64 parameters and the body, which
// reads parameters from the stack (masking i32s with uint32: wazero leaves
// their upper bits undefined) and returns a status.
type hostFn struct {
	name   string
	params []api.ValueType
	fn     func(ctx context.Context, in *instance, s []uint64) abi.Status
}

func i32s(n int) []api.ValueType {
	p := make([]api.ValueType, n)
	for i := range p {
		p[i] = i32
	}
	return p
}

// envFunctions is every function of module env, in abi.EnvFunctions order.
func envFunctions() []hostFn {
	return []hostFn{
		{"proxy_log", i32s(3), hostLog},
		{"proxy_get_log_level", i32s(1), hostGetLogLevel},
		{"proxy_get_status", i32s(3), hostGetStatus},
		{"proxy_set_property", i32s(4), hostSetProperty},
		{"proxy_get_property", i32s(4), hostGetProperty},
		{"proxy_send_local_response", i32s(8), hostSendLocalResponse},
		{"proxy_get_shared_data", i32s(5), hostGetSharedData},
		{"proxy_set_shared_data", i32s(5), hostSetSharedData},
		{"proxy_register_shared_queue", i32s(3), hostRegisterQueue},
		{"proxy_resolve_shared_queue", i32s(5), hostResolveQueue},
		{"proxy_dequeue_shared_queue", i32s(3), hostDequeue},
		{"proxy_enqueue_shared_queue", i32s(3), hostEnqueue},
		{"proxy_get_header_map_value", i32s(5), hostGetHeaderValue},
		{"proxy_add_header_map_value", i32s(5), hostAddHeaderValue},
		{"proxy_replace_header_map_value", i32s(5), hostReplaceHeaderValue},
		{"proxy_remove_header_map_value", i32s(3), hostRemoveHeaderValue},
		{"proxy_get_header_map_pairs", i32s(3), hostGetHeaderPairs},
		{"proxy_set_header_map_pairs", i32s(3), hostSetHeaderPairs},
		{"proxy_get_header_map_size", i32s(2), hostGetHeaderMapSize},
		{"proxy_get_buffer_status", i32s(3), hostGetBufferStatus},
		{"proxy_get_buffer_bytes", i32s(5), hostGetBufferBytes},
		{"proxy_set_buffer_bytes", i32s(5), hostSetBufferBytes},
		{"proxy_http_call", i32s(10), hostHTTPCall},
		{"proxy_grpc_call", i32s(12), unimplemented},
		{"proxy_grpc_stream", i32s(9), unimplemented},
		{"proxy_grpc_close", i32s(1), unimplemented},
		{"proxy_grpc_cancel", i32s(1), unimplemented},
		{"proxy_grpc_send", i32s(4), unimplemented},
		{"proxy_set_tick_period_milliseconds", i32s(1), hostSetTickPeriod},
		{"proxy_get_current_time_nanoseconds", i32s(1), hostGetCurrentTime},
		{"proxy_define_metric", i32s(4), hostDefineMetric},
		{"proxy_increment_metric", []api.ValueType{i32, i64}, hostIncrementMetric},
		{"proxy_record_metric", []api.ValueType{i32, i64}, hostRecordMetric},
		{"proxy_get_metric", i32s(2), hostGetMetric},
		{"proxy_set_effective_context", i32s(1), hostSetEffectiveContext},
		{"proxy_done", nil, hostDone},
		// No foreign functions are registered: Envoy answers NotFound for
		// an unknown name, which is every name here.
		{"proxy_call_foreign_function", i32s(6), func(context.Context, *instance, []uint64) abi.Status { return abi.StatusNotFound }},
		{"proxy_continue_stream", i32s(1), hostContinueStream},
		{"proxy_close_stream", i32s(1), hostCloseStream},
	}
}

// unimplemented is Envoy's answer for gRPC calls on a host without gRPC
// clusters: the filter sees a status, not a trap.
func unimplemented(context.Context, *instance, []uint64) abi.Status { return abi.StatusUnimplemented }

// instantiateHost registers module env and the Envoy WASI subset in rt.
func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	restricted := map[abi.Phase]map[string]bool{}
	for ph, names := range abi.AllowedDuring {
		restricted[ph] = setOf(names)
	}
	env := rt.NewHostModuleBuilder(abi.ModuleEnv)
	for _, h := range envFunctions() {
		h := h
		full := abi.ModuleEnv + "." + h.name
		env.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
			in := instanceFrom(ctx)
			if in == nil {
				stack[0] = uint64(abi.StatusInternalFailure)
				return
			}
			if in.phase != abi.PhaseRunning && !restricted[in.phase][full] {
				panic(errRestricted{name: full, phase: in.phase})
			}
			stack[0] = uint64(h.fn(ctx, in, stack))
		}), h.params, []api.ValueType{i32}).Export(h.name)
	}
	if _, err := env.Instantiate(ctx); err != nil {
		return fmt.Errorf("registering module env: %w", err)
	}

	// WASI: wazero's implementation, re-exported function by function so
	// that only Envoy's subset exists and the restricted phases apply.
	inner, err := wasi_snapshot_preview1.NewBuilder(rt).Compile(ctx)
	if err != nil {
		return fmt.Errorf("compiling WASI: %w", err)
	}
	defer inner.Close(ctx)
	defs := inner.ExportedFunctions()
	wasi := rt.NewHostModuleBuilder(abi.ModuleWASI)
	for _, name := range abi.WASIFunctions {
		def := defs[name]
		if def == nil {
			return fmt.Errorf("wazero has no WASI function %s", name)
		}
		gf, ok := def.GoFunction().(api.GoModuleFunction)
		if !ok {
			return fmt.Errorf("WASI function %s is not a Go module function", name)
		}
		full := abi.ModuleWASI + "." + name
		if name == "poll_oneoff" {
			// Envoy's poll_oneoff polls nothing and never sleeps: it
			// reports zero events and success (proxy-wasm-cpp-host
			// src/exports.cc), which the Go runtime accepts.
			gf = api.GoModuleFunc(func(_ context.Context, mod api.Module, stack []uint64) {
				if !mod.Memory().WriteUint32Le(uint32(stack[3]), 0) {
					stack[0] = 21 // EFAULT
					return
				}
				stack[0] = 0
			})
		}
		wasi.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			if in := instanceFrom(ctx); in != nil && in.phase != abi.PhaseRunning && !restricted[in.phase][full] {
				panic(errRestricted{name: full, phase: in.phase})
			}
			gf.Call(ctx, mod, stack)
		}), def.ParamTypes(), def.ResultTypes()).
			WithParameterNames(def.ParamNames()...).Export(name)
	}
	if _, err := wasi.Instantiate(ctx); err != nil {
		return fmt.Errorf("registering WASI: %w", err)
	}
	return nil
}
