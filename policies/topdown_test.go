package policies

import (
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
)

func regoInput(in any) rego.EvalOption { return rego.EvalInput(in) }

func jsonNum(s string) json.Number { return json.Number(s) }

// normalize round-trips a value through JSON so numbers compare as json.Number.
func normalize(t *testing.T, v any) any {
	t.Helper()
	_, out := yamlToJSON(t, v)
	return out
}
