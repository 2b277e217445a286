package policies

// frameworkRego is the fixed part of every compiled policy: it reads the
// constant tables in data.aegis_policy and the findings generated per tool
// (tools.rego), and assembles the one decision document. It is kept as
// plain Rego, not generated, so that it can be read and reviewed once.
//
// A finding is {effect, rule_id, reason, mode}: effect is deny, approval or
// sanitize; mode is enforce or observe. Approval findings also carry
// approvers and expires_in_s.
const frameworkRego = `package aegis

import rego.v1

# The decision document: the only entrypoint the data plane evaluates.
decision["action"] := action

decision["reasons"] := sort({f.reason | some f in enforced})

decision["rule_ids"] := sort({f.rule_id | some f in enforced})

decision["shadow_action"] := action_for(active) if count(observed) > 0

decision["shadow_reasons"] := sort({f.reason | some f in observed}) if count(observed) > 0

decision["tool"] := tool_doc if tool_matched

decision["redactions"] := sort([object_without_mode(r) | some r in redactions; r.mode == "enforce"]) if action == "sanitize"

decision["approval"] := approval_doc if action == "approval_needed"

decision["obligations"] := obligations

decision["fail"] := fail_mode

decision["mode"] := cfg.settings.mode

cfg := data.aegis_policy

# ---------------------------------------------------------------------------
# Combining findings. Precedence: deny > approval_needed > sanitize > allow.

enforced contains f if {
	some f in active
	f.mode == "enforce"
}

observed contains f if {
	some f in active
	f.mode == "observe"
}

# Every finding that is in force, whether enforced or observed.
active contains f if {
	some f in findings
	not lifted(f)
}

action := action_for(enforced)

action_for(fs) := "deny" if {
	some f in fs
	f.effect == "deny"
} else := "approval_needed" if {
	some f in fs
	f.effect == "approval"
} else := "sanitize" if {
	some f in fs
	f.effect == "sanitize"
} else := "allow"

# A verified one-time override token for this tool lifts approvals only;
# denials stand and sanitize still applies.
lifted(f) if {
	f.effect == "approval"
	is_object(input.context.override)
	input.context.override.tool == tool_name
}

approval_doc := {
	"approvers": sort({a | some f in enforced; f.effect == "approval"; some a in object.get(f, "approvers", [])}),
	"expires_in_s": min({e | some f in enforced; f.effect == "approval"; e := object.get(f, "expires_in_s", null); is_number(e)}),
}

finding(effect, rule_id, reason, mode) := {"effect": effect, "rule_id": rule_id, "reason": reason, "mode": mode}

approval_finding(rule_id, reason, mode, approvers, expires_in_s) := {
	"effect": "approval",
	"rule_id": rule_id,
	"reason": reason,
	"mode": mode,
	"approvers": approvers,
	"expires_in_s": expires_in_s,
}

object_without_mode(r) := {"path": r.path, "value": r.value, "detectors": r.detectors}

# ---------------------------------------------------------------------------
# Who is calling: the delegation chain, acting agent first, principal last.

default chain := []

chain := input.agent.chain if {
	is_array(input.agent.chain)
	count(input.agent.chain) > 0
}

chain := [input.agent.id] if {
	not is_array(input.agent.chain)
	is_string(input.agent.id)
}

acting := chain[0]

mode := cfg.settings.mode

findings contains finding("deny", "agent.identity", "agent: the call carries no agent identity", mode) if {
	count(chain) == 0
}

findings contains finding("deny", "agent.identity", sprintf("agent: agent id %q is not the first member of its chain", [input.agent.id]), mode) if {
	is_string(input.agent.id)
	count(chain) > 0
	input.agent.id != acting
}

findings contains finding("deny", "defaults.unknown_agent", sprintf("agent: unknown agent %q", [id]), mode) if {
	cfg.settings.unknown_agent == "deny"
	some id in chain
	not cfg.agents[id]
}

# RFC 8693 delegation: each principal must list the agent acting for it.
findings contains finding("deny", sprintf("agents.%s.may_delegate_to", [principal]), sprintf("delegation: %s does not delegate to %s", [principal, actor]), mode) if {
	some i, principal in chain
	i > 0
	actor := chain[i - 1]
	cfg.agents[principal]
	not cfg.agents[principal].may_delegate_to[actor]
}

findings contains finding("deny", "agents.delegation.depth", sprintf("delegation: %d principals behind the acting agent, at most 4 are allowed", [count(chain) - 1]), mode) if {
	count(chain) > 5
}

findings contains finding("deny", "agents.delegation.cycle", sprintf("delegation: agent %q appears more than once in the chain", [id]), mode) if {
	some i, id in chain
	some j, other in chain
	i < j
	id == other
}

# Tool, region and intent must be allowed for every agent in the chain.
findings contains finding("deny", sprintf("agents.%s.tools", [id]), sprintf("tool: %s is not granted to %s", [tool_name, id]), mode) if {
	tool_matched
	some id in chain
	cfg.agents[id]
	not cfg.agents[id].tools[tool_name]
}

default node_region := ""

node_region := input.context.region if is_string(input.context.region)

default token_region := ""

token_region := input.agent.region if is_string(input.agent.region)

findings contains finding("deny", sprintf("agents.%s.regions", [id]), sprintf("region: node region %q is not permitted for %s", [node_region, id]), mode) if {
	some id in chain
	regions := cfg.agents[id].regions
	not node_region in regions
}

findings contains finding("deny", sprintf("agents.%s.regions", [id]), sprintf("region: token region %q is not permitted for %s", [token_region, id]), mode) if {
	token_region != ""
	some id in chain
	regions := cfg.agents[id].regions
	not token_region in regions
}

default intent := ""

intent := input.context.intent if is_string(input.context.intent)

findings contains finding("deny", sprintf("agents.%s.intents", [id]), sprintf("intent: %q is not a permitted intent of %s", [intent, id]), mode) if {
	intent != ""
	some id in chain
	intents := cfg.agents[id].intents
	not intent in intents
}

findings contains finding("deny", "defaults.require_intent", "intent: the x-aegis-intent header is required", mode) if {
	cfg.settings.require_intent
	intent == ""
}

# Budgets are integers in micro-USD: exact, and charged to the acting agent.
default spent := 0

spent := input.context.budget.spent_micro_usd_today if is_number(input.context.budget.spent_micro_usd_today)

default call_cost := 0

call_cost := tool.cost_micro_usd if tool_matched

findings contains finding("deny", sprintf("agents.%s.budget", [acting]), sprintf("budget: %s has spent %d of %d micro-USD today and this call costs %d", [acting, spent, limit, call_cost]), mode) if {
	limit := cfg.agents[acting].budget_micro_usd
	spent + call_cost > limit
}

obligations["cost_micro_usd"] := call_cost if call_cost > 0

obligations["rate"] := {"key": acting, "per_minute": n} if {
	n := cfg.agents[acting].rate_per_minute
}

# ---------------------------------------------------------------------------
# Which tool: by JSON-RPC content on MCP endpoints, by HTTP route otherwise.

is_mcp if is_object(input.mcp)

default mcp_method := ""

mcp_method := input.mcp.method if is_string(input.mcp.method)

mcp_call if {
	is_mcp
	input.mcp.kind in {"request", "notification"}
	mcp_method == "tools/call"
}

tool_name := cfg.mcp_tools[input.mcp.server][input.mcp.tool] if mcp_call

tool_name := routes[0].tool if {
	not is_mcp
	routes := [r | some r in cfg.http_routes[input.request.host]; route_matches(r)]
}

route_matches(r) if {
	r.method == input.request.method
	r.path == input.request.path
}

route_matches(r) if {
	r.method == input.request.method
	startswith(input.request.path, r.path_prefix)
}

tool_matched if tool_name

tool := cfg.tools[tool_name]

tool_doc := {k: v | some k in ["name", "kind", "risk", "server"]; v := tool[k]}

default fail_mode := "closed"

fail_mode := tool.fail if tool_matched

findings contains finding("deny", "defaults.unknown_tool", sprintf("tool: %s is not a tool of MCP server %s", [input.mcp.tool, input.mcp.server]), mode) if {
	cfg.settings.unknown_tool == "deny"
	mcp_call
	not tool_matched
	is_string(input.mcp.tool)
}

findings contains finding("deny", "defaults.unknown_tool", "tool: tools/call without a tool name", mode) if {
	mcp_call
	not is_string(input.mcp.tool)
}

findings contains finding("deny", "defaults.unknown_tool", sprintf("tool: no tool matches %s %s%s", [input.request.method, input.request.host, input.request.path]), mode) if {
	cfg.settings.unknown_tool == "deny"
	not is_mcp
	not tool_matched
}

# MCP messages other than tools/call: initialize, ping, tools/list (its
# response is filtered by the data plane), notifications/* and client
# responses are allowed; the event stream and session end are allowed to
# agents granted any tool of the server; anything else is denied.
mcp_open_methods := {"initialize", "ping", "tools/list"}

findings contains finding("deny", "mcp.method", sprintf("mcp: method %q is not allowed", [mcp_method]), mode) if {
	is_mcp
	input.mcp.kind in {"request", "notification"}
	mcp_method != "tools/call"
	not mcp_method in mcp_open_methods
	not startswith(mcp_method, "notifications/")
}

findings contains finding("deny", "mcp.message", "mcp: not a valid JSON-RPC 2.0 message", mode) if {
	is_mcp
	not input.mcp.kind in {"request", "notification", "response", "stream", "session_end"}
}

findings contains finding("deny", sprintf("agents.%s.tools", [id]), sprintf("mcp: %s is granted no tool of server %s", [id, input.mcp.server]), mode) if {
	is_mcp
	input.mcp.kind in {"stream", "session_end"}
	some id in chain
	cfg.agents[id]
	not cfg.agents[id].servers[input.mcp.server]
}

findings contains finding("deny", "mcp.endpoint", sprintf("mcp: request to the endpoint of MCP server %s without a JSON-RPC message", [s]), mode) if {
	not is_mcp
	some s, ep in cfg.mcp_endpoints
	ep.host == input.request.host
	ep.path == input.request.path
}

# The tools of the server that every agent in the chain may call: the data
# plane filters tools/list responses to these.
mcp_visible_tools := sort([t |
	count(chain) > 0
	some t, name in cfg.mcp_tools[input.mcp.server]
	not hidden(name)
])

hidden(name) if {
	some id in chain
	not cfg.agents[id].tools[name]
}

# ---------------------------------------------------------------------------
# Parameters. HTTP tools with GET, HEAD or DELETE take them from the query
# string (strings, parsed strictly for integer/number/boolean); other HTTP
# tools from the JSON body; MCP tools from the tools/call arguments.

default body_params := {}

body_params := input.params if is_object(input.params)

default query_params := {}

query_params := input.request.query if is_object(input.request.query)

has_key(obj, k) if _ = obj[k]

# integer: a JSON number written without fraction or exponent. OPA numbers
# keep their literal text, so the check is made on the marshalled literal:
# 1.0 and 1e3 are numbers but not integers.
is_integer(x) if {
	is_number(x)
	regex.match(` + "`^-?[0-9]+$`" + `, json.marshal(x))
}

query_typed(s, "string") := s if is_string(s)

# A query parameter is converted to a number only when it is at most as
# long as the request-body parser allows a number literal to be: to_number
# and every later comparison cost time in the length of the text, and a
# header can carry tens of kilobytes of digits.
query_number_max_len := 256

query_typed(s, "integer") := to_number(s) if {
	is_string(s)
	count(s) <= query_number_max_len
	regex.match(` + "`^-?(0|[1-9][0-9]*)$`" + `, s)
}

query_typed(s, "number") := to_number(s) if {
	is_string(s)
	count(s) <= query_number_max_len
	regex.match(` + "`^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$`" + `, s)
}

query_typed(s, "boolean") := true if s == "true"

query_typed(s, "boolean") := false if s == "false"

query_ok(s, t) if _ = query_typed(s, t)

findings contains finding("deny", sprintf("tools.%s.params", [tool_name]), "params: the body must be a JSON object", tool.mode) if {
	tool_matched
	tool.params_in == "body"
	_ = input.params
	not is_object(input.params)
}

findings contains finding("deny", sprintf("tools.%s.params", [tool_name]), "params: the body is not JSON, so its parameters cannot be checked", tool.mode) if {
	tool_matched
	tool.params_in == "body"
	input.request.body_type == "other"
}

findings contains finding("deny", sprintf("tools.%s.params", [tool_name]), sprintf("query.%s: %s takes its parameters from the JSON body, not the query string", [k, tool_name]), tool.mode) if {
	tool_matched
	tool.params_in == "body"
	not is_mcp
	some k, _ in query_params
}

findings contains finding("deny", sprintf("tools.%s.params", [tool_name]), sprintf("params: %s takes query parameters and no body", [tool_name]), tool.mode) if {
	tool_matched
	tool.params_in == "query"
	input.request.body_type in {"json", "other"}
}

findings contains finding("deny", sprintf("tools.%s.additional_params", [tool_name]), sprintf("params.%s: parameter is not declared for %s", [k, tool_name]), tool.mode) if {
	tool_matched
	tool.additional_params == "deny"
	tool.params_in == "body"
	some k, _ in body_params
	not tool.declared[k]
}

findings contains finding("deny", sprintf("tools.%s.additional_params", [tool_name]), sprintf("query.%s: parameter is not declared for %s", [k, tool_name]), tool.mode) if {
	tool_matched
	tool.additional_params == "deny"
	tool.params_in == "query"
	some k, _ in query_params
	not tool.declared[k]
}

# Sanitize: DLP detectors over the listed string parameters.
redactions contains {"path": [p], "value": r.text, "detectors": r.hits, "mode": tool.mode} if {
	tool_matched
	some p in tool.sanitize.params
	x := body_params[p]
	is_string(x)
	r := aegis.dlp.redact(x, tool.sanitize.specs)
	count(r.hits) > 0
}

findings contains finding("sanitize", sprintf("tools.%s.sanitize", [tool_name]), sprintf("params.%s: redacted %s", [r.path[0], concat(", ", r.detectors)]), r.mode) if {
	some r in redactions
}
`
