package engine

// The types below mirror OPA's v1/ir package field for field (same JSON
// tags, same statement kinds) so that a plan.json written by OPA decodes
// into them without loss. They are our own copies because importing v1/ir
// would link net/http and protobuf into the wasm filter.

// planPolicy mirrors ir.Policy.
type planPolicy struct {
	Static         *planStatic      `json:"static,omitempty"`
	Plans          *planPlans       `json:"plans,omitempty"`
	Funcs          *planFuncs       `json:"funcs,omitempty"`
	UnplannedRules []*unplannedRule `json:"unplanned_rules,omitempty"`
}

// planStatic mirrors ir.Static.
type planStatic struct {
	Strings      []*stringConst `json:"strings,omitempty"`
	BuiltinFuncs []*builtinFunc `json:"builtin_funcs,omitempty"`
	Files        []*stringConst `json:"files,omitempty"`
}

// builtinFunc mirrors ir.BuiltinFunc. The declaration is kept raw: the
// engine takes arity and behaviour from its own builtin table.
type builtinFunc struct {
	Name string  `json:"name"`
	Decl rawJSON `json:"decl"`
}

// rawJSON is a JSON value's exact text.
type rawJSON []byte

type planPlans struct {
	Plans []*plan `json:"plans"`
}

type planFuncs struct {
	Funcs []*planFunc `json:"funcs"`
}

// planFunc mirrors ir.Func.
type planFunc struct {
	Name   string   `json:"name"`
	Params []local  `json:"params"`
	Return local    `json:"return"`
	Blocks []*block `json:"blocks"`
	Path   []string `json:"path,omitempty"`
}

type plan struct {
	Name   string   `json:"name"`
	Blocks []*block `json:"blocks"`
}

type block struct {
	Stmts []stmt `json:"stmts"`
}

type stmt interface {
	loc() *location
}

type local int

// Reserved locals, as in ir.Input and ir.Data.
const (
	localInput local = 0
	localData  local = 1
)

type stringConst struct {
	Value string `json:"value"`
}

type unplannedRule struct {
	Path     string    `json:"path"`
	Location *location `json:"location"`
}

// operand mirrors ir.Operand: exactly one of the three kinds is set.
type operand struct {
	kind  operandKind
	local local
	index int // string_index
	b     bool
}

type operandKind uint8

const (
	opLocal operandKind = iota + 1
	opString
	opBool
)

// location mirrors ir.Location.
type location struct {
	File   int `json:"file"`
	Col    int `json:"col"`
	Row    int `json:"row"`
	EndCol int `json:"end_col"`
	EndRow int `json:"end_row"`
}

func (l *location) loc() *location { return l }

type returnLocalStmt struct {
	Source local `json:"source"`
	location
}

type callStmt struct {
	Func   string    `json:"func"`
	Args   []operand `json:"args"`
	Result local     `json:"result"`
	location
}

type callDynamicStmt struct {
	Args   []local   `json:"args"`
	Result local     `json:"result"`
	Path   []operand `json:"path"`
	location
}

type blockStmt struct {
	Blocks []*block `json:"blocks"`
	location
}

type breakStmt struct {
	Index uint32 `json:"index"`
	location
}

type dotStmt struct {
	Source operand `json:"source"`
	Key    operand `json:"key"`
	Target local   `json:"target"`
	location
}

type lenStmt struct {
	Source operand `json:"source"`
	Target local   `json:"target"`
	location
}

type scanStmt struct {
	Source local  `json:"source"`
	Key    local  `json:"key"`
	Value  local  `json:"value"`
	Block  *block `json:"block"`
	location
}

type notStmt struct {
	Block *block `json:"block"`
	location
}

type assignIntStmt struct {
	Value  int64 `json:"value"`
	Target local `json:"target"`
	location
}

type assignVarStmt struct {
	Source operand `json:"source"`
	Target local   `json:"target"`
	location
}

type assignVarOnceStmt struct {
	Source operand `json:"source"`
	Target local   `json:"target"`
	location
}

type resetLocalStmt struct {
	Target local `json:"target"`
	location
}

type makeNullStmt struct {
	Target local `json:"target"`
	location
}

type makeNumberIntStmt struct {
	Value  int64 `json:"value"`
	Target local `json:"target"`
	location
}

// makeNumberRefStmt accepts both "index" and the legacy "Index" key, as
// OPA's decoder does.
type makeNumberRefStmt struct {
	Index  int
	Target local
	location
}

type makeArrayStmt struct {
	Capacity int32 `json:"capacity"`
	Target   local `json:"target"`
	location
}

type makeObjectStmt struct {
	Target local `json:"target"`
	location
}

type makeSetStmt struct {
	Target local `json:"target"`
	location
}

type equalStmt struct {
	A operand `json:"a"`
	B operand `json:"b"`
	location
}

type notEqualStmt struct {
	A operand `json:"a"`
	B operand `json:"b"`
	location
}

type isArrayStmt struct {
	Source operand `json:"source"`
	location
}

type isObjectStmt struct {
	Source operand `json:"source"`
	location
}

type isSetStmt struct {
	Source operand `json:"source"`
	location
}

type isDefinedStmt struct {
	Source local `json:"source"`
	location
}

type isUndefinedStmt struct {
	Source local `json:"source"`
	location
}

type arrayAppendStmt struct {
	Value operand `json:"value"`
	Array local   `json:"array"`
	location
}

type objectInsertStmt struct {
	Key    operand `json:"key"`
	Value  operand `json:"value"`
	Object local   `json:"object"`
	location
}

type objectInsertOnceStmt struct {
	Key    operand `json:"key"`
	Value  operand `json:"value"`
	Object local   `json:"object"`
	location
}

type objectMergeStmt struct {
	A      local `json:"a"`
	B      local `json:"b"`
	Target local `json:"target"`
	location
}

type setAddStmt struct {
	Value operand `json:"value"`
	Set   local   `json:"set"`
	location
}

type withStmt struct {
	Local local   `json:"local"`
	Path  []int   `json:"path"`
	Value operand `json:"value"`
	Block *block  `json:"block"`
	location
}

type nopStmt struct {
	location
}

type resultSetAddStmt struct {
	Value local `json:"value"`
	location
}
