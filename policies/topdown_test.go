package policies

import "github.com/open-policy-agent/opa/v1/rego"

func regoInput(in any) rego.EvalOption { return rego.EvalInput(in) }
