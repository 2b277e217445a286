// Package mcplist filters MCP tools/list responses down to the tools the
// calling agent may use, so that a model is never offered a tool whose
// calls would be refused. It handles a JSON body (one JSON-RPC response or
// a batch) and a text/event-stream body whose events carry them.
//
// Anything it cannot read unambiguously (invalid JSON, duplicate keys,
// invalid UTF-8, a tools entry without a string name) is an error: the
// caller then replaces the response instead of passing through a list it
// could not check. Everything else goes through as the server wrote it,
// members in their order, only without white space between tokens.
package mcplist

import (
	"errors"
	"strconv"
	"strings"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// maxDepth bounds nesting: tool input schemas nest, but not this deep.
const maxDepth = 64

// Filter returns body with every tools/list result restricted to visible
// (MCP tool names). ids are the JSON texts of the tools/list request ids:
// only responses to those are touched, matched by value (idKey).
func Filter(body []byte, contentType string, ids map[string]bool, visible map[string]bool) ([]byte, error) {
	ids = idKeys(ids)
	// Cut by hand: package mime links file-system lookups (its type
	// tables) that Envoy's WASI does not provide.
	mt, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "text/event-stream":
		return filterStream(body, ids, visible)
	case "application/json", "":
		return filterJSON(body, ids, visible)
	}
	return nil, errs.Errorf("content type %q cannot be filtered", contentType)
}

func filterJSON(body []byte, ids map[string]bool, visible map[string]bool) ([]byte, error) {
	// Strict: a duplicate key, which the client's parser might resolve
	// the other way, or invalid UTF-8 is an error.
	v, err := jsonx.ParseWith(body, jsonx.Options{MaxDepth: maxDepth})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(body))
	if v.Kind != jsonx.Array {
		return appendResponse(out, v, ids, visible)
	}
	out = append(out, '[')
	for i := range v.Elems {
		if i > 0 {
			out = append(out, ',')
		}
		if out, err = appendResponse(out, &v.Elems[i], ids, visible); err != nil {
			return nil, err
		}
	}
	return append(out, ']'), nil
}

// appendResponse appends one JSON-RPC message, its tools restricted to
// visible when it answers one of ids.
func appendResponse(out []byte, v *jsonx.Value, ids map[string]bool, visible map[string]bool) ([]byte, error) {
	if v.Kind != jsonx.Object {
		return nil, errors.New("JSON-RPC message is not an object")
	}
	id := v.Member("id")
	if id == nil || !ids[idKey(id)] {
		return jsonx.AppendCompact(out, v.Raw, false), nil
	}
	res := v.Member("result")
	if res == nil || res.Kind != jsonx.Object {
		return jsonx.AppendCompact(out, v.Raw, false), nil // an error response lists no tools
	}
	tools := res.Member("tools")
	if tools == nil || tools.Kind != jsonx.Array {
		return nil, errors.New("tools/list result without a tools array")
	}
	for i := range tools.Elems {
		if toolName(&tools.Elems[i]) == "" {
			return nil, errs.Errorf("tools[%d] has no name", i)
		}
	}
	out = append(out, '{')
	for i := range v.Members {
		m := &v.Members[i]
		if i > 0 {
			out = append(out, ',')
		}
		out = append(jsonx.AppendString(out, m.Key), ':')
		if m.Key != "result" {
			out = jsonx.AppendCompact(out, m.Value.Raw, false)
			continue
		}
		out = append(out, '{')
		for j := range res.Members {
			rm := &res.Members[j]
			if j > 0 {
				out = append(out, ',')
			}
			out = append(jsonx.AppendString(out, rm.Key), ':')
			if rm.Key != "tools" {
				out = jsonx.AppendCompact(out, rm.Value.Raw, false)
				continue
			}
			out = append(out, '[')
			n := 0
			for k := range tools.Elems {
				t := &tools.Elems[k]
				if !visible[toolName(t)] {
					continue
				}
				if n > 0 {
					out = append(out, ',')
				}
				n++
				out = jsonx.AppendCompact(out, t.Raw, false)
			}
			out = append(out, ']')
		}
		out = append(out, '}')
	}
	return append(out, '}'), nil
}

// idKey is an id's identity, as a client matching the answer to its
// request sees it: a string by value however the server escaped it, a
// number by numeric value (1, 1.0 and 1e0 are one id; matching their
// spelling let a server answer tools/list with an unfiltered list by
// writing the id differently), null and booleans as written.
func idKey(id *jsonx.Value) string {
	switch id.Kind {
	case jsonx.String:
		return string(jsonx.AppendString(nil, id.Str))
	case jsonx.Number:
		f, err := strconv.ParseFloat(id.Str, 64)
		if err != nil {
			return string(id.Raw) // beyond float64: no client reads it as a number either
		}
		if f == 0 {
			f = 0 // -0 is 0
		}
		return strconv.FormatFloat(f, 'g', -1, 64)
	case jsonx.Null, jsonx.Bool:
		return string(id.Raw)
	}
	return "" // requests have no such ids
}

// idKeys maps request ids (JSON texts) to their idKeys.
func idKeys(ids map[string]bool) map[string]bool {
	out := make(map[string]bool, len(ids))
	for text := range ids {
		if v, err := jsonx.Parse([]byte(text)); err == nil {
			out[idKey(v)] = true
		}
	}
	return out
}

// toolName returns a tools entry's name, "" when it has none.
func toolName(t *jsonx.Value) string {
	if t.Kind != jsonx.Object {
		return ""
	}
	if n := t.Member("name"); n != nil && n.Kind == jsonx.String {
		return n.Str
	}
	return ""
}

// filterStream rewrites each event's data (the lines after "data:" joined
// by newlines, per the SSE spec) and re-emits it on one data line.
func filterStream(body []byte, ids map[string]bool, visible map[string]bool) ([]byte, error) {
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	var out strings.Builder
	for _, ev := range strings.SplitAfter(text, "\n\n") {
		if ev == "" {
			continue
		}
		var data []string
		var other []string
		for _, line := range strings.Split(strings.TrimRight(ev, "\n"), "\n") {
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				data = append(data, strings.TrimPrefix(d, " "))
				continue
			}
			field, _, _ := strings.Cut(line, ":")
			switch field {
			case "", "event", "id", "retry":
				// comments (":..."), blank lines and the other SSE fields
				other = append(other, line)
			default:
				// A client may read an unknown line differently; only
				// what the filter understood goes through.
				return nil, errs.Errorf("event-stream line %.40q is not an SSE field", line)
			}
		}
		for _, l := range other {
			out.WriteString(l)
			out.WriteByte('\n')
		}
		if len(data) > 0 {
			filtered, err := filterJSON([]byte(strings.Join(data, "\n")), ids, visible)
			if err != nil {
				return nil, errs.Errorf("event-stream event: %w", err)
			}
			out.WriteString("data: ")
			out.Write(filtered)
			out.WriteByte('\n')
		}
		if strings.HasSuffix(ev, "\n\n") {
			out.WriteByte('\n')
		}
	}
	return []byte(out.String()), nil
}
