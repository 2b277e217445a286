package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type body struct {
		Name string `json:"name"`
	}
	for _, tc := range []struct {
		name, ct, body string
		status         int
	}{
		{"ok", "application/json", `{"name":"a"}`, 0},
		{"ok with charset", "application/json; charset=utf-8", `{"name":"a"}`, 0},
		{"unknown field", "application/json", `{"name":"a","x":1}`, 400},
		{"trailing", "application/json", `{"name":"a"} {}`, 400},
		{"empty", "application/json", ``, 400},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", 100) + `"}`, 413},
		{"wrong type", "application/json", `{"name":1}`, 400},
		{"form", "application/x-www-form-urlencoded", `name=a`, 415},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", tc.ct)
		var b body
		err := Decode(r, 64, &b)
		// ReadBody then DecodeBody answers the same.
		r2 := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
		r2.Header.Set("Content-Type", tc.ct)
		var b2 body
		data, err2 := ReadBody(r2, 64)
		if err2 == nil {
			err2 = DecodeBody(data, &b2)
		}
		if status(err) != status(err2) || b != b2 {
			t.Errorf("%s: Decode %v %+v, ReadBody+DecodeBody %v %+v", tc.name, err, b, err2, b2)
		}
		if tc.status == 0 {
			if err != nil || b.Name != "a" {
				t.Errorf("%s: %v %+v", tc.name, err, b)
			}
			continue
		}
		w := httptest.NewRecorder()
		WriteDecodeError(w, err)
		var eb ErrorBody
		if w.Code != tc.status || json.Unmarshal(w.Body.Bytes(), &eb) != nil || eb.Error == "" || eb.Message == "" {
			t.Errorf("%s: status %d body %s, want %d with error and message", tc.name, w.Code, w.Body, tc.status)
		}
	}
}

func status(err error) int {
	if de, ok := err.(*DecodeError); ok {
		return de.Status
	}
	if err != nil {
		return -1
	}
	return 0
}
