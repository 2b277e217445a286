package engine

import "fmt"

// Error codes. The eval_* codes match OPA's topdown codes where the meaning
// is the same, so differential tests can compare codes rather than prose.
const (
	CodeInvalidPlan    = "engine_invalid_plan"  // the plan failed to decode or validate
	CodeUnsupported    = "engine_unsupported"   // the plan needs a builtin or feature the engine lacks
	CodeInvalidValue   = "engine_invalid_value" // a value could not be converted
	CodeUnknownEntry   = "engine_unknown_entrypoint"
	CodeTypeError      = "eval_type_error"
	CodeBuiltinError   = "eval_builtin_error"
	CodeConflictError  = "eval_conflict_error"
	CodeCancelled      = "eval_cancel_error"
	CodeInternalError  = "eval_internal_error"
	CodeRecursionError = "eval_recursion_error"
)

// Location points into the Rego source a plan statement came from.
type Location struct {
	File string `json:"file,omitempty"`
	Row  int    `json:"row,omitempty"`
	Col  int    `json:"col,omitempty"`
}

func (l *Location) String() string {
	if l == nil {
		return ""
	}
	if l.File != "" {
		return fmt.Sprintf("%s:%d", l.File, l.Row)
	}
	return fmt.Sprintf("%d:%d", l.Row, l.Col)
}

// Error is the structured error returned by Load and Eval.
type Error struct {
	Code     string    `json:"code"`
	Message  string    `json:"message"`
	Location *Location `json:"location,omitempty"`
}

func (e *Error) Error() string {
	if e.Location != nil && (e.Location.File != "" || e.Location.Row != 0) {
		return fmt.Sprintf("%s: %s: %s", e.Location, e.Code, e.Message)
	}
	return e.Code + ": " + e.Message
}
