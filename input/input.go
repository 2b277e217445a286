// Package input builds the input document (docs/input.md) that a compiled
// policy is evaluated over, from what the proxy saw: the HTTP request, the
// verified identity and the node's context.
//
// The builder is the first line of the "ambiguity is a violation" rule: any
// part of a request that a tool could read differently from us (duplicate
// JSON keys, a repeated query parameter, an encoded slash in the path, a
// compressed body, ...) is reported as a Violation and no document is
// produced, so the caller denies with the violations as reasons. It never
// reports "nothing to check" for input it could not understand.
//
// The package is compiled into the wasm filter: standard library and
// engine only, no net, no os.
package input

import (
	"errors"
	"strconv"
	"time"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input/internal/strictjson"
	"github.com/aegis-mesh/aegis/internal/errs"
)

// Request is the HTTP request as the proxy saw it.
type Request struct {
	Method    string
	Scheme    string
	Authority string // :authority or Host
	Path      string // raw :path, query included
	// Headers in arrival order. Pseudo-headers (":method", ...) are
	// ignored except ":protocol" (extended CONNECT, a protocol upgrade);
	// use the fields above.
	Headers [][2]string
	Body    []byte
	// BodyTruncated is set by a caller that stopped buffering at
	// MaxBodyBytes: the body is then too large, whatever len(Body) is.
	BodyTruncated bool
}

// Identity is the verified caller.
type Identity struct {
	Agent  string   // the acting agent
	Tenant string   //
	Chain  []string // acting agent first, principal last; nil means [Agent]
	Region string   // the token's region claim
	Scope  []string //
	Claims engine.Value
}

// Context is what the enforcing node adds.
type Context struct {
	Region        string
	Time          time.Time
	SpentMicroUSD int64 // spend of the acting agent today (UTC), micro-dollars
	StateSeq      int64
	Override      engine.Value // verified override-token claims, nil when none
}

// MCPEndpoint declares where an MCP server listens. Host is compared
// case-insensitively; Path exactly, and must be in normalised form.
type MCPEndpoint struct {
	Server, Host, Path string
}

// Options bound the work the builder does.
type Options struct {
	MaxBodyBytes int // 0: DefaultMaxBodyBytes
	MaxDepth     int // JSON nesting limit; 0: DefaultMaxDepth
	MCPEndpoints []MCPEndpoint
}

// Defaults for zero Options fields.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxDepth     = 64
)

// Violation codes. Stable: policies and tests match on them.
const (
	CodeInvalidMethod        = "invalid_method"
	CodeInvalidScheme        = "invalid_scheme"
	CodeInvalidHost          = "invalid_host"
	CodeInvalidPath          = "invalid_path"
	CodeInvalidQuery         = "invalid_query"
	CodeRepeatedQueryParam   = "repeated_query_param"
	CodeInvalidHeader        = "invalid_header"
	CodeRepeatedHeader       = "repeated_header"
	CodeUpgrade              = "upgrade"
	CodeContentEncoding      = "content_encoding"
	CodeUnsupportedCharset   = "unsupported_charset"
	CodeInvalidContentLength = "invalid_content_length"
	CodeBodyTooLarge         = "body_too_large"
	CodeInvalidJSON          = strictjson.CodeSyntax
	CodeDuplicateKey         = strictjson.CodeDuplicateKey
	CodeInvalidUTF8          = strictjson.CodeInvalidUTF8
	CodeTooDeep              = strictjson.CodeTooDeep
	CodeNumberOutOfRange     = strictjson.CodeNumberOutOfRange
	CodeInvalidJSONRPC       = "invalid_jsonrpc"
	CodeEmptyBatch           = "empty_batch"
	CodeNestedBatch          = "nested_batch"
	CodeDuplicateID          = "duplicate_id"
	CodeMCPHTTPMethod        = "mcp_http_method"
)

// Violation is one reason the request cannot be checked as sent.
type Violation struct {
	Code    string // one of the Code constants
	Field   string // where: "request.path", "query.limit", "params.items[3].name", "body[1].id"
	Message string
}

func (v Violation) Error() string {
	if v.Field == "" {
		return v.Message
	}
	return v.Field + ": " + v.Message
}

// MCP call kinds (MCPCall.Kind and the document's mcp.kind).
const (
	KindRequest      = "request"
	KindNotification = "notification"
	KindResponse     = "response"
	KindStream       = "stream"      // GET: the server's event stream
	KindSessionEnd   = "session_end" // DELETE: end of the MCP session
)

// Call is one decision to make: one per request, or one per element of an
// MCP batch.
type Call struct {
	Input engine.Value
	MCP   *MCPCall // nil for requests to non-MCP endpoints
}

// MCPCall summarises the JSON-RPC element a Call was built from, for the
// caller that answers per JSON-RPC id.
type MCPCall struct {
	Kind   string // KindRequest, ...
	Method string // JSON-RPC method; "" for responses, streams, session ends
	ID     []byte // JSON text of the id; nil when there is none
	Tool   string // params.name of tools/call
	Server string
	Index  int // position in the batch; 0 when not a batch
}

// Result is what Build found. When Violations is non-empty, Calls is nil.
type Result struct {
	Calls []Call
	Batch bool // the body was a JSON-RPC batch
	// Body is the parsed JSON body (nil when there is none or it is not
	// JSON), for callers that rewrite it after a sanitize decision.
	Body       engine.Value
	Violations []Violation
}

// Build builds the input document(s) for one request. Hostile or ambiguous
// input is reported in Result.Violations; the error is only for caller
// mistakes (invalid options, identity or context).
func Build(req Request, id Identity, ctx Context, opts Options) (Result, error) {
	if err := checkArgs(&id, &ctx, &opts); err != nil {
		return Result{}, err
	}
	b := builder{opts: opts}
	rq := &reqInfo{}
	b.request(&req, rq)
	mcp := b.matchMCP(rq)
	body := b.body(&req, rq, mcp != nil)
	if len(b.violations) > 0 {
		return Result{Violations: b.violations}, nil
	}
	shared := sharedParts{
		agent:   agentObject(&id),
		request: rq.object(),
		context: contextObject(&ctx, rq.intent),
	}
	res := Result{Body: body}
	if mcp == nil {
		res.Calls = []Call{{Input: shared.document(nil, body)}}
		return res, nil
	}
	calls, batch := b.mcpCalls(&req, rq, mcp, body, &shared)
	if len(b.violations) > 0 {
		return Result{Violations: b.violations}, nil
	}
	res.Calls, res.Batch = calls, batch
	return res, nil
}

func checkArgs(id *Identity, ctx *Context, opts *Options) error {
	if opts.MaxBodyBytes < 0 || opts.MaxDepth < 0 {
		return errors.New("input: negative MaxBodyBytes or MaxDepth")
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxDepth == 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	for _, ep := range opts.MCPEndpoints {
		h, v := normalizeHost(ep.Host)
		p, _, v2 := normalizePath(ep.Path)
		if v != nil || v2 != nil || p != ep.Path || ep.Server == "" || h == "" {
			return errs.Errorf("input: MCP endpoint %q (%s%s) must have a server name, a valid host and a normalised path", ep.Server, ep.Host, ep.Path)
		}
	}
	if len(id.Chain) > 0 && id.Chain[0] != id.Agent {
		return errs.Errorf("input: identity chain %q must start with the acting agent %q", id.Chain, id.Agent)
	}
	if ctx.Time.IsZero() {
		return errors.New("input: context time is not set")
	}
	if y := ctx.Time.UTC().Year(); y < 1678 || y > 2261 {
		return errs.Errorf("input: context time %v outside the range of Unix nanoseconds", ctx.Time)
	}
	if ctx.SpentMicroUSD < 0 {
		return errs.Errorf("input: negative spend %d", ctx.SpentMicroUSD)
	}
	return nil
}

// builder collects violations while a request is taken apart.
type builder struct {
	opts       Options
	violations []Violation
}

//go:noinline
func (b *builder) violate(code, field, msg string) {
	b.violations = append(b.violations, Violation{Code: code, Field: field, Message: msg})
}

// sharedParts are built once per request and shared, read-only, by every
// document of a batch.
type sharedParts struct {
	agent, request, context *engine.Object
}

// document assembles one input document; mcp and params are nil when the
// document has none.
func (s *sharedParts) document(mcp, params engine.Value) *engine.Object {
	return engine.ObjectOf(boxed[documentKeys], s.agent, s.context, mcp, params, s.request, engine.Int(1))
}

func agentObject(id *Identity) *engine.Object {
	agent := engine.String(id.Agent)
	chain := engine.NewArray(max(1, len(id.Chain)))
	chain.Append(agent) // checkArgs saw that a given chain starts with the agent
	for _, c := range id.Chain[min(1, len(id.Chain)):] {
		chain.Append(engine.String(c))
	}
	scope := engine.NewArray(len(id.Scope))
	for _, s := range id.Scope {
		scope.Append(engine.String(s))
	}
	claims := id.Claims
	if claims == nil {
		claims = engine.NewObject(0)
	}
	return engine.ObjectOf(boxed[agentKeys], chain, claims, agent, engine.String(id.Region), scope, engine.String(id.Tenant))
}

func contextObject(ctx *Context, intent string) *engine.Object {
	usd, err := engine.Number(microToDecimal(ctx.SpentMicroUSD))
	if err != nil {
		// microToDecimal only produces valid literals for the
		// non-negative values checkArgs lets through.
		panic("input: " + err.Error())
	}
	budget := engine.ObjectOf(boxed[budgetKeys], engine.Int(ctx.SpentMicroUSD), usd)
	t := ctx.Time.UTC()
	return engine.ObjectOf(boxed[contextKeys],
		budget,
		engine.String(intent),
		ctx.Override, // nil when none
		engine.String(ctx.Region),
		engine.Int(ctx.StateSeq),
		engine.String(t.Format(time.RFC3339Nano)),
		engine.Int(t.UnixNano()),
	)
}

// microToDecimal renders micro-dollars as an exact decimal: 19980000 ->
// "19.98", 50000 -> "0.05", 0 -> "0".
func microToDecimal(n int64) string {
	var buf [32]byte // one allocation, the string's
	whole, frac := n/1_000_000, n%1_000_000
	b := strconv.AppendInt(buf[:0], whole, 10)
	if frac != 0 {
		b = strconv.AppendInt(b, frac+1_000_000, 10) // zero-padded to 6 digits
		b[len(b)-7] = '.'                            // over the padding's leading 1
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
	}
	return string(b)
}
