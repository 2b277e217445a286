// Package engine evaluates OPA IR plans (the plan.json of OPA's "plan"
// compile target) in pure Go, for the Aegis CLI and the wasip1 filter.
//
// Load decodes, validates and compiles a plan once (into ops that the block
// loop decodes, and closures for the rarer statements); Eval and
// EvalOne then run an entrypoint against an input Value. Semantics follow
// OPA: undefined versus false, conflict errors, `with`, set and object
// ordering, exact decimal comparison and topdown's arithmetic text. Builtins
// come from one table (SupportedBuiltins); a plan that calls anything else
// fails to Load with engine_unsupported.
//
// # Notes
//
//   - A Policy is safe for concurrent use; it owns its caches (compiled
//     constant regexes, a bounded cache for dynamic patterns, compiled DLP
//     detector sets). There is no package-level mutable state.
//   - Values passed to Load and Eval are treated as read-only and must not be
//     modified afterwards; values returned by Eval are new or shared
//     read-only values.
//   - Eval's result is the plan's result set: a *Set of {"result": value}
//     objects, empty when the entrypoint is undefined.
//
// Functions marked //go:noinline are error constructors, plan-decoding
// helpers (run once per bundle load) and the closure factories that build
// the builtin table: inlined, each call site carries a copy of the body,
// which in the filter's wasm module cost about 60 kB for no measurable
// speed (docs/filter-config.md, "Module size").
//
// See docs/engine.md for the design and the evidence (OPA compliance cases,
// differential tests against topdown, fuzzing, benchmarks).
package engine
