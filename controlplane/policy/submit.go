package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/aegis-mesh/aegis/controlplane/internal/httpapi"
)

// MaxFiles bounds the number of files in one submission.
const MaxFiles = 32

// SubmitRequest is the JSON form of a submission: file name → content.
// Exactly one file is the policy set (*.yaml, *.yml or *.json); policy test
// tables (*_test.yaml) may ride along and are stored with it.
type SubmitRequest struct {
	Files map[string]string `json:"files"`
}

// DecodeSubmit reads a submission as JSON ({"files": {...}}) or as
// multipart/form-data (one part per file, named by its filename), at most
// maxBytes in total. Errors are *httpapi.DecodeError (400, 413, 415).
func DecodeSubmit(r *http.Request, maxBytes int64) (map[string]string, error) {
	ct := r.Header.Get("Content-Type")
	mt, params, _ := mime.ParseMediaType(ct)
	var files map[string]string
	switch mt {
	case "multipart/form-data":
		var err error
		if files, err = decodeMultipart(r, params["boundary"], maxBytes); err != nil {
			return nil, err
		}
	default:
		// Read once, so the file names can be checked for duplicates (Go's
		// decoder keeps the last of two equal keys silently; which file
		// was meant would be ambiguous).
		data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBytes))
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpapi.DecodeError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Msg: fmt.Sprintf("request body larger than %d bytes", maxBytes)}
		}
		if err != nil {
			return nil, &httpapi.DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Msg: "request body: " + err.Error()}
		}
		if err := duplicateFile(data); err != nil {
			return nil, &httpapi.DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Msg: err.Error()}
		}
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(data))
		var req SubmitRequest
		if err := httpapi.Decode(r2, maxBytes, &req); err != nil {
			return nil, err
		}
		files = req.Files
	}
	if err := CheckFiles(files); err != nil {
		return nil, &httpapi.DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Msg: err.Error()}
	}
	return files, nil
}

func decodeMultipart(r *http.Request, boundary string, maxBytes int64) (map[string]string, error) {
	if boundary == "" {
		return nil, &httpapi.DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Msg: "multipart body without a boundary"}
	}
	body := http.MaxBytesReader(nil, r.Body, maxBytes)
	mr := multipart.NewReader(body, boundary)
	files := map[string]string{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, multipartErr(err, maxBytes)
		}
		name := part.FileName()
		if name == "" {
			name = part.FormName()
		}
		if _, dup := files[name]; dup {
			return nil, &httpapi.DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Msg: fmt.Sprintf("file %q given twice", name)}
		}
		if len(files) >= MaxFiles {
			return nil, &httpapi.DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Msg: fmt.Sprintf("more than %d files", MaxFiles)}
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return nil, multipartErr(err, maxBytes)
		}
		files[name] = string(data)
	}
	return files, nil
}

func multipartErr(err error, maxBytes int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &httpapi.DecodeError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Msg: fmt.Sprintf("request body larger than %d bytes", maxBytes)}
	}
	return &httpapi.DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Msg: "multipart body: " + err.Error()}
}

// duplicateFile finds a file name given twice in {"files": {...}}; other
// problems are left to the strict decoder.
func duplicateFile(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil
		}
		if key != "files" {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return nil
			}
			continue
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return nil
		}
		seen := map[string]bool{}
		for dec.More() {
			name, err := dec.Token()
			if err != nil {
				return nil
			}
			n, _ := name.(string)
			if seen[n] {
				return fmt.Errorf("file %q given twice", n)
			}
			seen[n] = true
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return nil
			}
		}
		return nil
	}
	return nil
}

// IsTestFile reports whether name is a policy test table.
func IsTestFile(name string) bool {
	return strings.HasSuffix(name, "_test.yaml") || strings.HasSuffix(name, "_test.yml")
}

// CheckFiles validates names and contents and that exactly one policy
// file is present.
func CheckFiles(files map[string]string) error {
	if len(files) == 0 {
		return errors.New("files: want at least one file")
	}
	if len(files) > MaxFiles {
		return fmt.Errorf("files: more than %d", MaxFiles)
	}
	var policy []string
	for name, content := range files {
		if name == "" || len(name) > 100 || strings.ContainsAny(name, "/\\:\x00") || name != path.Clean(name) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("file name %q: want a plain file name (no directories), at most 100 bytes", name)
		}
		for _, c := range name {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("file name %q: control characters", name)
			}
		}
		if !utf8.ValidString(content) {
			return fmt.Errorf("file %s: not valid UTF-8", name)
		}
		switch {
		case IsTestFile(name):
		case strings.HasSuffix(name, ".yaml"), strings.HasSuffix(name, ".yml"), strings.HasSuffix(name, ".json"):
			policy = append(policy, name)
		default:
			return fmt.Errorf("file %s: want *.yaml, *.yml, *.json or a *_test.yaml table", name)
		}
	}
	if len(policy) != 1 {
		sort.Strings(policy)
		return fmt.Errorf("want exactly one policy file (*.yaml, *.yml, *.json besides *_test.yaml), have %d %v", len(policy), policy)
	}
	return nil
}

// PolicyFile returns the name of the policy file of a checked submission.
func PolicyFile(files map[string]string) string {
	for name := range files {
		if !IsTestFile(name) {
			return name
		}
	}
	return ""
}
