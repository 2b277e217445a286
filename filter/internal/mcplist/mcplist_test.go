package mcplist

import (
	"encoding/json"
	"strings"
	"testing"
)

var visible = map[string]bool{"get_pods": true, "get_logs": true}

func names(t *testing.T, body []byte) []string {
	t.Helper()
	var m struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var ns []string
	for _, tl := range m.Result.Tools {
		ns = append(ns, tl.Name)
	}
	return ns
}

const list = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get_pods","inputSchema":{"type":"object"}},{"name":"deploy"},{"name":"get_logs"}],"nextCursor":"c"}}`

func TestFilterJSON(t *testing.T) {
	out, err := Filter([]byte(list), "application/json", map[string]bool{"1": true}, visible)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(t, out), ","); got != "get_pods,get_logs" {
		t.Errorf("tools %s", got)
	}
	if !strings.Contains(string(out), `"nextCursor":"c"`) || !strings.Contains(string(out), `"inputSchema"`) {
		t.Errorf("other fields lost: %s", out)
	}
	// A response to another id is not a tools/list answer: untouched.
	out, _ = Filter([]byte(list), "application/json", map[string]bool{"2": true}, visible)
	if len(names(t, out)) != 3 {
		t.Errorf("unrelated response filtered: %s", out)
	}
	// Batch.
	out, err = Filter([]byte("["+list+`,{"jsonrpc":"2.0","id":2,"result":{}}]`), "application/json", map[string]bool{"1": true}, visible)
	if err != nil || strings.Contains(string(out), "deploy") {
		t.Errorf("batch: %s %v", out, err)
	}
}

func TestFilterStream(t *testing.T) {
	body := "event: message\nid: 5\ndata: " + list + "\n\n: comment\n\n"
	out, err := Filter([]byte(body), "text/event-stream; charset=utf-8", map[string]bool{"1": true}, visible)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "deploy") || !strings.Contains(s, "get_logs") || !strings.HasPrefix(s, "event: message\nid: 5\ndata: ") || !strings.HasSuffix(s, ": comment\n\n") {
		t.Errorf("stream %q", s)
	}
	// data split over two lines is one JSON document (joined by a newline,
	// which is whitespace between JSON tokens).
	cut := strings.Index(list, `"result"`)
	split := "data: " + list[:cut] + "\ndata: " + list[cut:] + "\n\n"
	out, err = Filter([]byte(split), "text/event-stream", map[string]bool{"1": true}, visible)
	if err != nil || strings.Contains(string(out), "deploy") {
		t.Errorf("split data: %q %v", out, err)
	}
}

func TestFilterRefuses(t *testing.T) {
	ids := map[string]bool{"1": true}
	bad := []struct{ name, ct, body string }{
		{"duplicate result", "application/json", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"deploy"}]}}`},
		{"duplicate tools", "application/json", `{"id":1,"result":{"tools":[],"tools":[{"name":"deploy"}]}}`},
		{"nameless tool", "application/json", `{"id":1,"result":{"tools":[{"title":"x"}]}}`},
		{"tools not array", "application/json", `{"id":1,"result":{"tools":{}}}`},
		{"not json", "application/json", `{"id":1,`},
		{"trailing", "application/json", `{"id":1,"result":{"tools":[]}} {}`},
		{"other type", "text/html", list},
		{"bad event", "text/event-stream", "data: {\"id\":1,\n\n"},
	}
	for _, b := range bad {
		if out, err := Filter([]byte(b.body), b.ct, ids, visible); err == nil {
			t.Errorf("%s: accepted, %s", b.name, out)
		}
	}
}

func FuzzFilter(f *testing.F) {
	f.Add([]byte(list), true)
	f.Add([]byte("data: "+list+"\n\n"), false)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		ct := "text/event-stream"
		if isJSON {
			ct = "application/json"
		}
		out, err := Filter(body, ct, map[string]bool{"1": true}, visible)
		if err != nil {
			return
		}
		if strings.Contains(string(out), `"name":"deploy"`) && strings.Contains(string(body), `"tools"`) {
			// deploy may survive only outside a result for id 1.
			var m map[string]any
			if json.Unmarshal(out, &m) == nil && m["id"] == 1.0 {
				if r, ok := m["result"].(map[string]any); ok {
					if tl, ok := r["tools"].([]any); ok {
						for _, x := range tl {
							if xm, _ := x.(map[string]any); xm["name"] == "deploy" {
								t.Fatalf("hidden tool kept: %s", out)
							}
						}
					}
				}
			}
		}
	})
}
