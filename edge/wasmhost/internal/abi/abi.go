// Package abi holds the proxy-wasm ABI 0.2.1 names, enums and status codes
// the host speaks, and the Envoy restrictions that are data (the import
// allowlists and the host calls permitted while the guest initialises or
// allocates). Values follow proxy-wasm-cpp-host and the spec at
// https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1.
package abi

// Status is a host call result (WasmResult in proxy-wasm-cpp-host).
type Status uint32

// Statuses, numbered as in proxy-wasm-cpp-host include/proxy-wasm/wasm_api_impl.h.
const (
	StatusOK                  Status = 0
	StatusNotFound            Status = 1
	StatusBadArgument         Status = 2
	StatusSerializationFail   Status = 3
	StatusParseFailure        Status = 4
	StatusBadExpression       Status = 5
	StatusInvalidMemoryAccess Status = 6
	StatusEmpty               Status = 7
	StatusCasMismatch         Status = 8
	StatusResultMismatch      Status = 9
	StatusInternalFailure     Status = 10
	StatusBrokenConnection    Status = 11
	StatusUnimplemented       Status = 12
)

// MapType names a header map.
type MapType uint32

// Header maps.
const (
	MapRequestHeaders       MapType = 0
	MapRequestTrailers      MapType = 1
	MapResponseHeaders      MapType = 2
	MapResponseTrailers     MapType = 3
	MapGrpcReceiveInitial   MapType = 4
	MapGrpcReceiveTrailing  MapType = 5
	MapHTTPCallResponse     MapType = 6
	MapHTTPCallResponseTrlr MapType = 7
)

// BufferType names a buffer.
type BufferType uint32

// Buffers.
const (
	BufferRequestBody      BufferType = 0
	BufferResponseBody     BufferType = 1
	BufferDownstreamData   BufferType = 2
	BufferUpstreamData     BufferType = 3
	BufferHTTPCallResponse BufferType = 4
	BufferGrpcReceive      BufferType = 5
	BufferVMConfiguration  BufferType = 6
	BufferPluginConfig     BufferType = 7
	BufferCallData         BufferType = 8
)

// StreamType names a direction for continue_stream and close_stream.
type StreamType uint32

// Streams.
const (
	StreamRequest    StreamType = 0
	StreamResponse   StreamType = 1
	StreamDownstream StreamType = 2
	StreamUpstream   StreamType = 3
)

// Action is what an HTTP callback returns.
type Action uint32

// Actions.
const (
	ActionContinue Action = 0
	ActionPause    Action = 1
)

// MetricType is the kind of a metric; Envoy keeps it in the low bits of
// the metric id.
type MetricType uint32

// Metric kinds.
const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
	MetricTypeMask  uint32     = 0x3
)

// LogLevel is a proxy_log level.
type LogLevel uint32

// Log levels.
const (
	LogTrace    LogLevel = 0
	LogDebug    LogLevel = 1
	LogInfo     LogLevel = 2
	LogWarn     LogLevel = 3
	LogError    LogLevel = 4
	LogCritical LogLevel = 5
)

// Module names of the imports a filter may link.
const (
	ModuleEnv  = "env"
	ModuleWASI = "wasi_snapshot_preview1"
)

// EnvFunctions is every function proxy-wasm-cpp-host registers in module
// env for ABI 0.2.x (include/proxy-wasm/exports.h); a module importing
// anything else from env does not load in Envoy.
var EnvFunctions = []string{
	"proxy_log", "proxy_get_log_level", "proxy_get_status",
	"proxy_set_property", "proxy_get_property",
	"proxy_send_local_response",
	"proxy_get_shared_data", "proxy_set_shared_data",
	"proxy_register_shared_queue", "proxy_resolve_shared_queue",
	"proxy_dequeue_shared_queue", "proxy_enqueue_shared_queue",
	"proxy_get_header_map_value", "proxy_add_header_map_value",
	"proxy_replace_header_map_value", "proxy_remove_header_map_value",
	"proxy_get_header_map_pairs", "proxy_set_header_map_pairs", "proxy_get_header_map_size",
	"proxy_get_buffer_status", "proxy_get_buffer_bytes", "proxy_set_buffer_bytes",
	"proxy_http_call",
	"proxy_grpc_call", "proxy_grpc_stream", "proxy_grpc_close", "proxy_grpc_cancel", "proxy_grpc_send",
	"proxy_set_tick_period_milliseconds", "proxy_get_current_time_nanoseconds",
	"proxy_define_metric", "proxy_increment_metric", "proxy_record_metric", "proxy_get_metric",
	"proxy_set_effective_context", "proxy_done", "proxy_call_foreign_function",
	"proxy_continue_stream", "proxy_close_stream",
}

// WASIFunctions is the wasi_snapshot_preview1 subset Envoy 1.33 registers.
// Newer Envoy registers more; a filter must not depend on them.
var WASIFunctions = []string{
	"fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
	"environ_get", "environ_sizes_get", "args_get", "args_sizes_get",
	"clock_time_get", "random_get", "sched_yield", "poll_oneoff", "proc_exit",
	"path_open", "fd_prestat_get", "fd_prestat_dir_name",
}

// Phase is what the guest is doing when it makes a host call; Envoy
// restricts host calls in the first two.
type Phase uint8

// Phases.
const (
	PhaseRunning    Phase = iota // any callback: every host call allowed
	PhaseInitialize              // _initialize (and main) of a reactor
	PhaseAllocate                // proxy_on_memory_allocate / malloc
)

// AllowedDuring lists, per restricted phase, the host calls Envoy permits
// ("module.function"), from proxy-wasm-cpp-host src/wasm.cc (startVm) and
// include/proxy-wasm/wasm.h (allocMemory). Anything else traps with
// "restricted_callback". Only functions this host registers are listed.
var AllowedDuring = map[Phase][]string{
	PhaseInitialize: {
		"env.proxy_log",
		"wasi_snapshot_preview1.fd_write",
		"wasi_snapshot_preview1.args_sizes_get", "wasi_snapshot_preview1.args_get",
		"wasi_snapshot_preview1.environ_sizes_get", "wasi_snapshot_preview1.environ_get",
		"wasi_snapshot_preview1.clock_time_get",
		"wasi_snapshot_preview1.random_get",
		"wasi_snapshot_preview1.poll_oneoff",
		"wasi_snapshot_preview1.fd_fdstat_get", "wasi_snapshot_preview1.fd_fdstat_set_flags",
		"wasi_snapshot_preview1.fd_prestat_get", "wasi_snapshot_preview1.fd_prestat_dir_name",
	},
	PhaseAllocate: {
		"env.proxy_log",
		"wasi_snapshot_preview1.fd_write",
		"wasi_snapshot_preview1.clock_time_get",
		"wasi_snapshot_preview1.poll_oneoff",
	},
}
