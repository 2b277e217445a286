package policies

import (
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"
)

// RedactBuiltinName is the DLP builtin generated policies call:
//
//	aegis.dlp.redact(text, specs) -> {"text": string, "hits": [detector names, sorted]}
//
// specs is a list of detector objects {name, pattern | builtin, replace}
// applied in order (see package dlp for the exact semantics).
const RedactBuiltinName = "aegis.dlp.redact"

// RedactBuiltin declares aegis.dlp.redact to OPA's type checker and planner.
// Each call returns a new declaration, so no caller can change another's.
func RedactBuiltin() *ast.Builtin {
	return &ast.Builtin{
		Name:        RedactBuiltinName,
		Description: "Redacts DLP detector matches in a string.",
		Decl: types.NewFunction(
			types.Args(
				types.Named("text", types.S),
				types.Named("specs", types.NewArray(nil, types.NewObject(nil, types.NewDynamicProperty(types.S, types.S)))),
			),
			types.Named("result", types.NewObject([]*types.StaticProperty{
				types.NewStaticProperty("hits", types.NewArray(nil, types.S)),
				types.NewStaticProperty("text", types.S),
			}, nil)),
		),
	}
}

// operators are parsed as builtins but never reach the plan as calls: the
// planner turns them into statements, so they are always allowed.
var operators = []string{ast.Assign.Name, ast.Equality.Name}

// Capabilities returns OPA's capabilities restricted to the named builtins
// (what the engine implements) plus aegis.dlp.redact. A policy that calls
// anything else fails OPA's compile with the builtin's name and location.
func Capabilities(supported []string) *ast.Capabilities {
	all := ast.CapabilitiesForThisVersion()
	allowed := map[string]bool{}
	for _, n := range supported {
		allowed[n] = true
	}
	for _, n := range operators {
		allowed[n] = true
	}
	caps := &ast.Capabilities{
		FutureKeywords:  all.FutureKeywords,
		WasmABIVersions: all.WasmABIVersions,
		Features:        all.Features,
		AllowNet:        []string{}, // the type checker must not fetch remote schemas
	}
	for _, b := range all.Builtins {
		if allowed[b.Name] {
			caps.Builtins = append(caps.Builtins, b)
		}
	}
	caps.Builtins = append(caps.Builtins, RedactBuiltin())
	sort.Slice(caps.Builtins, func(i, j int) bool { return caps.Builtins[i].Name < caps.Builtins[j].Name })
	return caps
}
