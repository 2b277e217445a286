package policies

// The typed model of an aegis.policy/v1 document. Every element keeps the
// position and field path it was read from, so later stages (references,
// generated Rego comments, rule ids) can point back to the YAML.

// APIVersion is the only policy language version this package reads.
const APIVersion = "aegis.policy/v1"

type pos struct{ Line, Col int }

// Source is where an element was declared: file position and field path.
type Source struct {
	Line int    `json:"line"`
	Col  int    `json:"col"`
	Path string `json:"path"`
}

// PolicySet is one tenant's policy: the root of an aegis.policy/v1 document.
type PolicySet struct {
	File       string // name the document was loaded under, used in errors and comments
	APIVersion string
	Kind       string
	Metadata   Metadata
	Defaults   Defaults
	DLP        []*Detector
	Agents     []*Agent
	Tools      []*Tool
	MCPServers []*MCPServer
	Rego       []*RegoModule

	lines []string // the source, for mapping custom Rego positions
	// dropped records which lists lost an element to a schema error, so the
	// reference stage does not report names as dangling when their target
	// was merely invalid.
	dropped struct{ dlp, agents, tools, servers bool }
}

// Metadata names the policy set and the tenant it belongs to.
type Metadata struct {
	Name, Tenant, Description string
}

// Defaults are the policy-wide settings.
type Defaults struct {
	UnknownAgent  string // allow | deny (default deny)
	UnknownTool   string // allow | deny (default deny)
	Mode          string // enforce | observe (default enforce)
	FailRead      string // open | closed (default open)
	FailWrite     string // open | closed (default closed)
	MaxBodyBytes  int64  // default DefaultMaxBodyBytes
	RequireIntent bool
}

// DefaultMaxBodyBytes applies when defaults.max_body_bytes is not set.
const DefaultMaxBodyBytes = 1 << 20

// Detector is a named DLP detector: a regular expression or a builtin.
type Detector struct {
	Src     Source
	Name    string
	Pattern string // RE2, when the detector is a regex
	Builtin string // a builtin detector name, otherwise
	Replace string // default "[<name>]"
}

// Agent is an identity that calls tools.
type Agent struct {
	Src           Source
	ID            string
	Owner, Team   string
	Description   string
	Intents       []string // nil: no intent constraint
	Tools         []Pattern
	Regions       []string // nil: no region constraint
	BudgetPerDay  *Decimal // budget.usd_per_day
	BudgetSrc     Source
	RatePerMinute int64 // 0: no rate limit
	MayDelegateTo []Ref
}

// Pattern is a tool-name pattern from an agent's grant list.
type Pattern struct {
	Src  Source
	Text string
}

// Ref is a name that refers to another element.
type Ref struct {
	Src  Source
	Name string
}

// Tool is one callable operation, matched by HTTP route or MCP tool name.
type Tool struct {
	Src              Source
	Name             string
	Owner            string
	Description      string
	Risk             string // low | medium | high | critical (default medium)
	Kind             string // read | write (default write)
	DataClasses      []string
	HTTP             *HTTPRoute
	MCP              *MCPTool
	CostUSD          *Decimal
	CostSrc          Source
	Params           []*Param
	AdditionalParams string // allow | deny (default allow)
	Approval         []*ApprovalRule
	Sanitize         *Sanitize
	Mode             string // enforce | observe (default: defaults.mode)
	Fail             string // open | closed (default: defaults.fail by kind)

	droppedParams bool // a parameter failed the schema stage
}

// HTTPRoute matches a plain HTTP tool call.
type HTTPRoute struct {
	Src        Source
	Host       string
	Method     string
	Path       string // exact match, or
	PathPrefix string // prefix match
}

// MCPTool matches a JSON-RPC tools/call on a declared MCP server.
type MCPTool struct {
	Src    Source
	Server Ref
	Tool   string
}

// Param types.
const (
	TypeString  = "string"
	TypeNumber  = "number"
	TypeInteger = "integer"
	TypeBoolean = "boolean"
	TypeObject  = "object"
	TypeArray   = "array"
)

// Param constrains one parameter of a tool.
type Param struct {
	Src         Source
	Name        string
	Type        string
	Description string
	Required    bool
	Min, Max    *Decimal
	MinSrc      Source
	MaxSrc      Source
	MinLength   *int64
	MaxLength   *int64
	MinLenSrc   Source
	MaxLenSrc   Source
	Enum        []Scalar
	EnumSrc     Source
	Pattern     string
	PatternSrc  Source
}

// Scalar is a YAML scalar kept with its type, for enum and eq comparisons.
type Scalar struct {
	Kind string // string | number | boolean
	Text string // the string itself, the decimal text, or true/false
}

// ApprovalRule requires a human approval when its condition holds.
type ApprovalRule struct {
	Src       Source
	When      *Condition // nil: every call needs approval
	Approvers []string
	ExpiresIn int64 // seconds
}

// Condition compares one parameter with a constant.
type Condition struct {
	Src   Source
	Param Ref
	Op    string // gt | gte | lt | lte | eq | ne | in
	Value Scalar
	List  []Scalar // for in
}

// Sanitize redacts DLP hits in string parameters.
type Sanitize struct {
	Src    Source
	Params []Ref
	DLP    []Ref
}

// MCPServer declares where an MCP endpoint lives.
type MCPServer struct {
	Src  Source
	Name string
	Host string
	Path string
}

// RegoModule is custom Rego included in the compiled policy.
type RegoModule struct {
	Src       Source
	Name      string
	Mode      string // enforce | observe (default: defaults.mode)
	Source    string
	SourceSrc Source // position of the source block's first line
	// Rules defined by the module that the decision consumes (deny, approval).
	Rules []string
	// literal: the source is a literal block scalar, so rows map to YAML lines.
	literal bool
}
