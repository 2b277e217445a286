package mcplist

import (
	"bytes"
	"encoding/json"
	"reflect"
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
		{"duplicate name", "application/json", `{"id":1,"result":{"tools":[{"name":"get_pods","name":"deploy"}]}}`},
		{"duplicate id", "application/json", `{"id":2,"id":1,"result":{"tools":[{"name":"deploy"}]}}`},
		{"duplicate in an unrelated response", "application/json", `{"id":2,"result":{"a":1,"a":2}}`},
		{"invalid UTF-8", "application/json", `{"id":1,"result":{"tools":[{"name":"get_pods","title":"` + "\xff" + `"}]}}`},
		{"lone surrogate", "application/json", `{"id":1,"result":{"tools":[{"name":"\ud800"}]}}`},
		{"name not a string", "application/json", `{"id":1,"result":{"tools":[{"name":7}]}}`},
		{"tool not an object", "application/json", `{"id":1,"result":{"tools":["deploy"]}}`},
		{"message not an object", "application/json", `[1]`},
		{"too deep", "application/json", `{"id":1,"result":{"tools":[],"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}`},
		{"bad event in stream", "text/event-stream", "data: " + list + "\n\nfoo: bar\n\n"},
	}
	for _, b := range bad {
		if out, err := Filter([]byte(b.body), b.ct, ids, visible); err == nil {
			t.Errorf("%s: accepted, %s", b.name, out)
		}
	}
}

// TestFilterKeepsOrder: members the filter does not understand go
// through as the server wrote them, in their order (encoding/json used to
// sort them), and only white space between tokens is dropped.
func TestFilterKeepsOrder(t *testing.T) {
	in := `{"result": {"z": 1, "tools": [ {"name": "deploy"}, {"name":"get_pods", "x": "a b\u0041\n<"} ], "a": [1.50, 2e3]}, "jsonrpc": "2.0", "id": 1}`
	want := `{"result":{"z":1,"tools":[{"name":"get_pods","x":"a b\u0041\n<"}],"a":[1.50,2e3]},"jsonrpc":"2.0","id":1}`
	out, err := Filter([]byte(in), "application/json", map[string]bool{"1": true}, visible)
	if err != nil || string(out) != want {
		t.Errorf("got %s (%v)\nwant %s", out, err, want)
	}
	// Another response: compacted, otherwise untouched.
	in2 := `{"b": {"tools": [ {"name": "deploy"} ]}, "id": 2, "result": {"tools": [{"name":"deploy"}]}}`
	out, err = Filter([]byte(in2), "application/json", map[string]bool{"1": true}, visible)
	if want := `{"b":{"tools":[{"name":"deploy"}]},"id":2,"result":{"tools":[{"name":"deploy"}]}}`; err != nil || string(out) != want {
		t.Errorf("got %s (%v)\nwant %s", out, err, want)
	}
}

func TestFilterStreamOneLine(t *testing.T) {
	pretty := "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": \"a\",\n  \"result\": {\"tools\": [\n    {\"name\": \"deploy\"},\n    {\"name\": \"get_logs\"}\n  ]}\n}"
	body := "data: " + strings.ReplaceAll(pretty, "\n", "\r\ndata: ") + "\r\n\r\n"
	out, err := Filter([]byte(body), "text/event-stream", map[string]bool{`"a"`: true}, visible)
	want := "data: {\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"tools\":[{\"name\":\"get_logs\"}]}}\n\n"
	if err != nil || string(out) != want {
		t.Errorf("got %q (%v)\nwant %q", out, err, want)
	}
}

// TestFilterIDEscapes: the id is compared by value, as the request's id
// was written, however the server escaped it.
func TestFilterIDEscapes(t *testing.T) {
	for _, id := range []string{`"ab<"`, `"\u0061b\u003c"`, `"a\u0062<"`} {
		body := `{"id":` + id + `,"result":{"tools":[{"name":"deploy"}]}}`
		out, err := Filter([]byte(body), "application/json", map[string]bool{`"ab\u003c"`: true}, visible)
		if err != nil || strings.Contains(string(out), "deploy") {
			t.Errorf("id %s: %s (%v)", id, out, err)
		}
	}
}

// TestFilterIDByValue: a response whose id is the request's number
// written another way is still a tools/list answer and is filtered; ids of
// another type or value are not.
func TestFilterIDByValue(t *testing.T) {
	for _, tc := range []struct {
		req, resp string
		filtered  bool
	}{
		{"1", "1.0", true}, {"1", "1e0", true}, {"1", "10E-1", true}, {"0", "-0", true}, {"-0.0", "0", true},
		{"1.5", "15e-1", true}, {"1", "2", false}, {"1", `"1"`, false}, {`"1"`, "1", false},
		{"12345678901234567890", "12345678901234567890.0", true},
	} {
		body := `{"id":` + tc.resp + `,"result":{"tools":[{"name":"deploy"}]}}`
		out, err := Filter([]byte(body), "application/json", map[string]bool{tc.req: true}, visible)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if got := !strings.Contains(string(out), "deploy"); got != tc.filtered {
			t.Errorf("request id %s, response id %s: filtered = %v, want %v", tc.req, tc.resp, got, tc.filtered)
		}
	}
}

// sameOutput reports whether two filter outputs mean the same: equal JSON
// values, or for an event stream equal lines, data lines equal as JSON
// values.
func sameOutput(a, b []byte, stream bool) bool {
	if !stream {
		va, ea := decodeAny(a)
		vb, eb := decodeAny(b)
		return ea == nil && eb == nil && reflect.DeepEqual(va, vb)
	}
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	if len(la) != len(lb) {
		return false
	}
	for i := range la {
		da, okA := strings.CutPrefix(la[i], "data: ")
		db, okB := strings.CutPrefix(lb[i], "data: ")
		if okA != okB || (!okA && la[i] != lb[i]) {
			return false
		}
		if !okA {
			continue
		}
		va, ea := decodeAny([]byte(da))
		vb, eb := decodeAny([]byte(db))
		if ea != nil || eb != nil || !reflect.DeepEqual(va, vb) {
			return false
		}
	}
	return true
}

func decodeAny(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func TestFilterAsBefore(t *testing.T) {
	ids := map[string]bool{"1": true, `"a"`: true}
	for _, tc := range []struct{ ct, body string }{
		{"application/json", list},
		{"application/json", "[" + list + `,{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"get_logs","d":{"<":"&"}}]}},{"id":3,"error":{}}]`},
		{"application/json", `{"id":1,"error":{"code":-32601,"message":"x"}}`},
		{"application/json", `[]`},
		{"text/event-stream", "event: message\nid: 5\ndata: " + list + "\n\n: comment\n\nretry: 10\n"},
		{"text/event-stream", "data: {\"id\":\"a\",\ndata: \"result\":{\"tools\":[]}}\n\n"},
	} {
		out, err := Filter([]byte(tc.body), tc.ct, ids, visible)
		old, oldErr := legacyFilter([]byte(tc.body), tc.ct, ids, visible)
		if err != nil || oldErr != nil || !sameOutput(out, old, tc.ct != "application/json") {
			t.Errorf("%s:\n got %s (%v)\nwant %s (%v)", tc.body, out, err, old, oldErr)
		}
	}
}

func FuzzFilter(f *testing.F) {
	f.Add([]byte(list), true)
	f.Add([]byte("data: "+list+"\n\n"), false)
	f.Add([]byte(`[{"id":1,"result":{"tools":[{"name":"get_logs"},{"name":"deploy","x":[{"a":null}]}]}},{"id":2}]`), true)
	f.Add([]byte(`{"id":"1","result":{"tools":[]},"x":"\u00e9<"}`), true)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		ct := "text/event-stream"
		if isJSON {
			ct = "application/json"
		}
		out, err := Filter(body, ct, map[string]bool{"1": true}, visible)
		old, oldErr := legacyFilter(body, ct, map[string]bool{"1": true}, visible)
		if err != nil {
			return
		}
		// Strictness never drops, and the meaning is what it was.
		if oldErr != nil {
			t.Fatalf("accepted what the encoding/json filter refused (%v): %q", oldErr, body)
		}
		if !sameOutput(out, old, !isJSON) {
			t.Fatalf("differs from the encoding/json filter:\n got %q\nwant %q", out, old)
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
