package policies

// engineBuiltins is the builtin set the engine evaluates.
// TODO(integration): replace with engine.SupportedBuiltins() once it lands.
func engineBuiltins() []string { return tmpBuiltins }
