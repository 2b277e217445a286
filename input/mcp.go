package input

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/aegis-mesh/aegis/engine"
)

// matchMCP finds the declared MCP endpoint a request goes to.
func (b *builder) matchMCP(r *reqInfo) *MCPEndpoint {
	if r.host == "" || r.path == "" {
		return nil
	}
	for i := range b.opts.MCPEndpoints {
		ep := &b.opts.MCPEndpoints[i]
		if asciiEqualFold(ep.Host, r.host) && ep.Path == r.path {
			return ep
		}
	}
	return nil
}

// mcpCalls turns a request to an MCP endpoint into one Call per JSON-RPC
// message (streamable HTTP transport): POST carries a message or a batch,
// GET opens the server's event stream, DELETE ends the session. Other
// methods are refused.
func (b *builder) mcpCalls(req *Request, rq *reqInfo, ep *MCPEndpoint, body engine.Value, shared *sharedParts) ([]Call, bool) {
	switch rq.method {
	case "GET", "DELETE":
		if len(req.Body) > 0 {
			b.violate(CodeInvalidJSONRPC, "body", rq.method+" to an MCP endpoint must not carry a body")
			return nil, false
		}
		kind := KindStream
		if rq.method == "DELETE" {
			kind = KindSessionEnd
		}
		m := &MCPCall{Kind: kind, Server: ep.Server}
		return []Call{{Input: shared.document(mcpObject(m, nil, false), nil), MCP: m}}, false
	case "POST":
	default:
		b.violate(CodeMCPHTTPMethod, "request.method", "MCP endpoints accept POST, GET and DELETE only")
		return nil, false
	}
	if body == nil {
		b.violate(CodeInvalidJSONRPC, "body", "an MCP POST must carry a JSON-RPC message as application/json")
		return nil, false
	}
	arr, batch := body.(*engine.Array)
	if !batch {
		c, ok := b.mcpMessage(body, "body", 0, false, ep, shared)
		if !ok {
			return nil, false
		}
		return []Call{c}, false
	}
	if arr.Len() == 0 {
		b.violate(CodeEmptyBatch, "body", "empty JSON-RPC batch")
		return nil, true
	}
	calls := make([]Call, 0, arr.Len())
	for i := range arr.Len() {
		el := arr.Index(i)
		field := "body[" + strconv.Itoa(i) + "]"
		if _, nested := el.(*engine.Array); nested {
			b.violate(CodeNestedBatch, field, "nested JSON-RPC batch")
			continue
		}
		if c, ok := b.mcpMessage(el, field, i, true, ep, shared); ok {
			calls = append(calls, c)
		}
	}
	b.checkDuplicateIDs(calls, arr)
	return calls, true
}

// checkDuplicateIDs refuses a batch in which two requests share an id: the
// answers (and our per-id denials) could not be told apart.
func (b *builder) checkDuplicateIDs(calls []Call, arr *engine.Array) {
	type ref struct {
		id    engine.Value
		index int
	}
	var ids []ref
	for _, c := range calls {
		if c.MCP.Kind != KindRequest {
			continue
		}
		id, _ := arr.Index(c.MCP.Index).(*engine.Object).Get("id")
		ids = append(ids, ref{id, c.MCP.Index})
	}
	// sort, not slices.Sort*Func: each struct type would instantiate its
	// own ~15 kB copy of the generic sort in the wasm filter (issue 3).
	sort.SliceStable(ids, func(i, j int) bool { return engine.Compare(ids[i].id, ids[j].id) < 0 })
	for i := 1; i < len(ids); i++ {
		if engine.Equal(ids[i].id, ids[i-1].id) && (i < 2 || !engine.Equal(ids[i].id, ids[i-2].id)) {
			b.violate(CodeDuplicateID, "body["+strconv.Itoa(ids[i].index)+"].id", "JSON-RPC id used by more than one request in the batch")
		}
	}
}

var jsonrpcMembers = []string{"error", "id", "jsonrpc", "method", "params", "result"}

// mcpMessage checks one JSON-RPC 2.0 message and builds its document.
// Members other than the five JSON-RPC defines are refused: the
// specification allows none, so a server that reads one is outside what
// the policy saw.
func (b *builder) mcpMessage(v engine.Value, field string, index int, batch bool, ep *MCPEndpoint, shared *sharedParts) (Call, bool) {
	bad := func(f, msg string) (Call, bool) {
		b.violate(CodeInvalidJSONRPC, f, msg)
		return Call{}, false
	}
	obj, ok := v.(*engine.Object)
	if !ok {
		return bad(field, "a JSON-RPC message must be an object")
	}
	unknown := ""
	obj.Range(func(k, _ engine.Value) bool {
		s, _ := engine.AsString(k)
		if !slices.Contains(jsonrpcMembers, s) {
			unknown = s
			return false
		}
		return true
	})
	if unknown != "" {
		return bad(fieldName(field, unknown), "member not defined by JSON-RPC 2.0")
	}
	if ver, _ := obj.Get("jsonrpc"); !isString(ver, "2.0") {
		return bad(field+".jsonrpc", `must be "2.0"`)
	}
	method, hasMethod := obj.Get("method")
	id, hasID := obj.Get("id")
	params, hasParams := obj.Get("params")
	_, hasResult := obj.Get("result")
	_, hasError := obj.Get("error")

	m := &MCPCall{Server: ep.Server, Index: index}
	var docParams engine.Value
	if hasMethod {
		name, ok := engine.AsString(method)
		if !ok || name == "" {
			return bad(field+".method", "must be a non-empty string")
		}
		if hasResult || hasError {
			return bad(field, "a request must not carry result or error")
		}
		m.Method = name
		m.Kind = KindNotification
		if hasID {
			if !validRequestID(id) {
				return bad(field+".id", "must be a string or an integer")
			}
			m.Kind = KindRequest
		}
		if hasParams {
			switch params.(type) {
			case *engine.Object, *engine.Array:
			default:
				return bad(field+".params", "must be an object or an array")
			}
			docParams = params
		}
		if name == "tools/call" {
			p, ok := params.(*engine.Object)
			if !ok {
				return bad(field+".params", "tools/call needs params as an object")
			}
			tool, _ := p.Get("name")
			t, ok := engine.AsString(tool)
			if !ok || t == "" {
				return bad(field+".params.name", "tools/call needs the tool name as a non-empty string")
			}
			m.Tool = t
			args, has := p.Get("arguments")
			switch {
			case !has:
				args = engine.NewObject(0)
			case !isObject(args):
				return bad(field+".params.arguments", "must be an object")
			}
			docParams = args
		}
	} else {
		if !hasID {
			return bad(field, "a JSON-RPC message needs a method (request) or an id (response)")
		}
		if !validRequestID(id) && !engine.Equal(id, engine.Null()) {
			return bad(field+".id", "must be a string, an integer or null")
		}
		if hasResult == hasError {
			return bad(field, "a response needs exactly one of result and error")
		}
		if hasParams {
			return bad(field+".params", "a response must not carry params")
		}
		m.Kind = KindResponse
	}
	if hasID {
		raw, err := engine.ToJSON(id)
		if err != nil {
			return bad(field+".id", "cannot encode id")
		}
		m.ID = raw
	}
	return Call{Input: shared.document(mcpObject(m, id, batch), docParams), MCP: m}, true
}

func mcpObject(m *MCPCall, id engine.Value, batch bool) *engine.Object {
	if m.ID == nil {
		id = nil
	}
	return engine.ObjectOf(boxed[mcpKeys],
		engine.Bool(batch),
		id,
		engine.Int(int64(m.Index)),
		str(m.Kind),
		optString(m.Method),
		engine.String(m.Server),
		optString(m.Tool),
	)
}

// validRequestID: JSON-RPC 2.0 ids are strings or numbers, and numbers
// SHOULD NOT have fractions; null is reserved for responses to requests
// whose id could not be read, so a request with it is refused.
func validRequestID(id engine.Value) bool {
	if _, ok := engine.AsString(id); ok {
		return true
	}
	lit, ok := engine.AsNumber(id)
	return ok && !strings.ContainsAny(lit, ".eE")
}

func isString(v engine.Value, want string) bool {
	s, ok := engine.AsString(v)
	return ok && s == want
}

func isObject(v engine.Value) bool {
	_, ok := v.(*engine.Object)
	return ok
}
