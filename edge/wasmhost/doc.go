// Package wasmhost runs proxy-wasm filters (ABI 0.2.1, as built with the Go
// proxy-wasm SDK) on wazero, the way Envoy runs them, and puts them in
// front of an http.Handler.
//
// The flow is Compile → NewPool → Pool.Handler:
//
//	mod, err := wasmhost.Compile(ctx, wasmBytes, wasmhost.CompileOptions{CacheDir: dir})
//	pool, err := wasmhost.NewPool(ctx, mod, wasmhost.PoolConfig{Size: 4, PluginConfig: cfg, Env: env})
//	http.Handle("/", pool.Handler(upstream))
//	...
//	pool.UpdateConfig(ctx, newCfg) // hot swap; in-flight requests finish on the old config
//	pool.Close(ctx); mod.Close(ctx)
//
// # Envoy parity
//
// Compile refuses a module importing anything Envoy 1.33 does not register
// (the env functions of proxy-wasm-cpp-host and its WASI subset), and the
// host traps, as Envoy does, on host calls outside the restricted lists
// while the guest runs _initialize or allocates memory. Status codes,
// shared-data CAS, header-map and buffer semantics follow
// proxy-wasm-cpp-host and Envoy; where this host differs it says so in
// docs/wasmhost.md.
//
// # Notes
//
//   - A Pool runs each request on one VM instance at a time, like Envoy's
//     per-worker VMs; instances share shared data and queues.
//   - A guest trap or a request timeout fails that request closed with a
//     JSON 5xx ({"error":"filter_failure"}), and the instance is replaced.
//   - Pool and Module are safe for concurrent use; Close releases
//     everything they created.
package wasmhost
