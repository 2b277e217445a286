package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
)

func jsonReq(body string) *http.Request {
	r := httptest.NewRequest("POST", "/v1/tenants/acme/policies", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func multipartReq(t testing.TB, files [][2]string) *http.Request {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, f := range files {
		part, err := w.CreateFormFile("file", f[0])
		if err != nil {
			t.Fatal(err)
		}
		part.Write([]byte(f[1]))
	}
	w.Close()
	r := httptest.NewRequest("POST", "/v1/tenants/acme/policies", &b)
	r.Header.Set("Content-Type", w.FormDataContentType())
	return r
}

func TestDecodeSubmit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    func(t *testing.T) *http.Request
		status int // 0: accepted
	}{
		{"json", func(*testing.T) *http.Request { return jsonReq(`{"files":{"p.yaml":"a: 1"}}`) }, 0},
		{"json with test table", func(*testing.T) *http.Request {
			return jsonReq(`{"files":{"p.yaml":"a: 1","p_test.yaml":"cases: []"}}`)
		}, 0},
		{"multipart", func(t *testing.T) *http.Request { return multipartReq(t, [][2]string{{"p.yaml", "a: 1"}}) }, 0},
		{"no files", func(*testing.T) *http.Request { return jsonReq(`{"files":{}}`) }, 400},
		{"only a test table", func(*testing.T) *http.Request { return jsonReq(`{"files":{"p_test.yaml":"x"}}`) }, 400},
		{"two policies", func(*testing.T) *http.Request { return jsonReq(`{"files":{"a.yaml":"","b.yml":""}}`) }, 400},
		{"path", func(*testing.T) *http.Request { return jsonReq(`{"files":{"dir/p.yaml":""}}`) }, 400},
		{"dot dot", func(*testing.T) *http.Request { return jsonReq(`{"files":{"..":""}}`) }, 400},
		{"hidden", func(*testing.T) *http.Request { return jsonReq(`{"files":{".p.yaml":""}}`) }, 400},
		{"control char", func(*testing.T) *http.Request { return jsonReq(`{"files":{"p\u0001.yaml":""}}`) }, 400},
		{"wrong extension", func(*testing.T) *http.Request { return jsonReq(`{"files":{"p.rego":""}}`) }, 400},
		{"unknown member", func(*testing.T) *http.Request { return jsonReq(`{"files":{"p.yaml":""},"x":1}`) }, 400},
		{"duplicate file", func(*testing.T) *http.Request { return jsonReq(`{"files":{"p.yaml":"a","p.yaml":"b"}}`) }, 400},
		{"too large json", func(*testing.T) *http.Request {
			return jsonReq(`{"files":{"p.yaml":"` + strings.Repeat("a", 5000) + `"}}`)
		}, 413},
		{"too large multipart", func(t *testing.T) *http.Request {
			return multipartReq(t, [][2]string{{"p.yaml", strings.Repeat("a", 5000)}})
		}, 413},
		{"multipart duplicate", func(t *testing.T) *http.Request {
			return multipartReq(t, [][2]string{{"p.yaml", "a"}, {"p.yaml", "b"}})
		}, 400},
		{"multipart no boundary", func(*testing.T) *http.Request {
			r := jsonReq("x")
			r.Header.Set("Content-Type", "multipart/form-data")
			return r
		}, 400},
		{"form", func(*testing.T) *http.Request {
			r := jsonReq("files=x")
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, 415},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := DecodeSubmit(tc.req(t), 4096)
			if tc.status == 0 {
				if err != nil || PolicyFile(files) == "" {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var de *httpapi.DecodeError
			if !errors.As(err, &de) || de.Status != tc.status {
				t.Fatalf("error %v, want status %d", err, tc.status)
			}
		})
	}
}

// FuzzDecodeSubmit: whatever arrives, decoding either refuses it with a
// 4xx DecodeError or returns a file set that passes CheckFiles with
// exactly one policy file.
func FuzzDecodeSubmit(f *testing.F) {
	f.Add("application/json", []byte(`{"files":{"p.yaml":"apiVersion: aegis.policy/v1"}}`))
	f.Add("application/json", []byte(`{"files":{"p.yaml":"a","p_test.yaml":"b"}}`))
	f.Add("application/json", []byte(`{"files":{"../p.yaml":"a"}}`))
	f.Add("application/json", []byte(`{"files":{"p.yaml":"\ud800"}}`))
	f.Add("multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.yaml\"\r\n\r\na: 1\r\n--X--\r\n"))
	f.Add("multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../p.yaml\"\r\n\r\na\r\n--X--\r\n"))
	f.Add("multipart/form-data; boundary=X", []byte("--X\r\n\r\n--X"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		files, err := DecodeSubmit(r, 1<<16)
		if err != nil {
			var de *httpapi.DecodeError
			if !errors.As(err, &de) || de.Status < 400 || de.Status > 499 {
				t.Fatalf("error %v is not a 4xx DecodeError", err)
			}
			return
		}
		if err := CheckFiles(files); err != nil {
			t.Fatalf("accepted files fail CheckFiles: %v", err)
		}
		n := 0
		for name := range files {
			if !IsTestFile(name) {
				n++
			}
			if strings.ContainsAny(name, "/\\") {
				t.Fatalf("accepted a path %q", name)
			}
		}
		if n != 1 {
			t.Fatalf("%d policy files accepted", n)
		}
		if _, err := json.Marshal(files); err != nil {
			t.Fatal(err)
		}
	})
}
