package mcplist

// The encoding/json filter this package used before jsonx, kept as the
// reference the differential tests hold Filter to: whatever it refused,
// Filter must refuse, and whatever both accept must mean the same JSON.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// Filter returns body with every tools/list result restricted to visible
// (MCP tool names). ids are the JSON texts of the tools/list request ids:
// only responses to those are touched.
func legacyFilter(body []byte, contentType string, ids map[string]bool, visible map[string]bool) ([]byte, error) {
	ids = idKeys(ids)
	// Cut by hand: package mime links file-system lookups (its type
	// tables) that Envoy's WASI does not provide.
	mt, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "text/event-stream":
		return legacyFilterStream(body, ids, visible)
	case "application/json", "":
		return legacyFilterJSON(body, ids, visible)
	}
	return nil, fmt.Errorf("content type %q cannot be filtered", contentType)
}

func legacyFilterJSON(body []byte, ids map[string]bool, visible map[string]bool) ([]byte, error) {
	if err := legacyCheckDuplicates(body); err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON value")
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := legacyFilterResponse(e, ids, visible); err != nil {
				return nil, err
			}
		}
	default:
		if err := legacyFilterResponse(x, ids, visible); err != nil {
			return nil, err
		}
	}
	return json.Marshal(v)
}

func legacyFilterResponse(v any, ids map[string]bool, visible map[string]bool) error {
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("JSON-RPC message is not an object")
	}
	rawID, err := json.Marshal(m["id"])
	// The new filter's id matching (by value) stands in for the old
	// one's (by spelling), which let 1.0 answer a request with id 1.
	if err != nil || !ids[textKey(rawID)] {
		return nil
	}
	res, ok := m["result"].(map[string]any)
	if !ok {
		return nil // an error response lists no tools
	}
	tools, ok := res["tools"].([]any)
	if !ok {
		return errors.New("tools/list result without a tools array")
	}
	kept := make([]any, 0, len(tools))
	for i, t := range tools {
		tm, ok := t.(map[string]any)
		name, _ := tm["name"].(string)
		if !ok || name == "" {
			return fmt.Errorf("tools[%d] has no name", i)
		}
		if visible[name] {
			kept = append(kept, t)
		}
	}
	res["tools"] = kept
	return nil
}

// filterStream rewrites each event's data (the lines after "data:" joined
// by newlines, per the SSE spec) and re-emits it on one data line.
func legacyFilterStream(body []byte, ids map[string]bool, visible map[string]bool) ([]byte, error) {
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
				return nil, fmt.Errorf("event-stream line %.40q is not an SSE field", line)
			}
		}
		for _, l := range other {
			out.WriteString(l)
			out.WriteByte('\n')
		}
		if len(data) > 0 {
			filtered, err := legacyFilterJSON([]byte(strings.Join(data, "\n")), ids, visible)
			if err != nil {
				return nil, fmt.Errorf("event-stream event: %w", err)
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

// checkDuplicates refuses an object with a repeated key: the client's JSON
// parser might keep the other one.
func legacyCheckDuplicates(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(depth int) error
	walk = func(depth int) error {
		if depth > 64 {
			return errors.New("nested too deeply")
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		if d == '{' {
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				if seen[k] {
					return fmt.Errorf("duplicate key %q", k)
				}
				seen[k] = true
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
		} else {
			for dec.More() {
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token()
		return err
	}
	return walk(0)
}

// textKey is idKey of the JSON text id ("" when it is not JSON).
func textKey(id []byte) string {
	v, err := jsonx.Parse(id)
	if err != nil {
		return ""
	}
	return idKey(v)
}
