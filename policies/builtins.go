package policies

import "github.com/aegis-mesh/aegis/engine"

// engineBuiltins is the builtin set the engine evaluates: generated and
// custom Rego may call these and nothing else.
func engineBuiltins() []string { return engine.SupportedBuiltins() }
