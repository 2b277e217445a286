package input

import (
	"errors"
	"strconv"

	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input/internal/strictjson"
)

// body classifies the body and parses it when it is JSON. Field names in
// JSON violations start at "params" for plain HTTP tools (the body is the
// params) and at "body" for MCP endpoints (the params sit inside the
// JSON-RPC envelope).
func (b *builder) body(req *Request, r *reqInfo, mcp bool) engine.Value {
	if req.BodyTruncated || len(req.Body) > b.opts.MaxBodyBytes {
		r.bodyType = BodyOther
		b.violate(CodeBodyTooLarge, "body", "body larger than "+strconv.Itoa(b.opts.MaxBodyBytes)+" bytes")
		return nil
	}
	if len(req.Body) == 0 {
		r.bodyType = BodyNone
		return nil
	}
	if !isJSONMediaType(r.mediaType) {
		// The builder does not know the tool; the compiled policy denies
		// body_type "other" for tools that declare parameters.
		r.bodyType = BodyOther
		return nil
	}
	r.bodyType = BodyJSON
	if r.charset != "" && r.charset != "utf-8" && r.charset != "utf8" {
		b.violate(CodeUnsupportedCharset, "headers.content-type", "JSON bodies must be UTF-8")
		return nil
	}
	v, err := strictjson.Parse(req.Body, b.opts.MaxDepth)
	if err != nil {
		var e *strictjson.Error
		if !errors.As(err, &e) {
			b.violate(CodeInvalidJSON, "body", err.Error())
			return nil
		}
		prefix := "params"
		if mcp {
			prefix = "body"
		}
		b.violate(e.Code, prefix+e.Path, e.Msg+" (byte "+strconv.Itoa(e.Offset)+")")
		return nil
	}
	return v
}
