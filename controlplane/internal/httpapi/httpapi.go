// Package httpapi holds the few rules every control-plane JSON endpoint
// shares: errors as {"error","message","details"} (API.md), strict bounded
// request decoding, and JSON replies.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ErrorBody is the JSON shape of every error reply.
type ErrorBody struct {
	Error   string         `json:"error"`
	Message string         `json:"message,omitempty"`
	Details map[string]any `json:"details,omitempty"`
}

// Error writes an error reply. code is a stable machine-readable token
// (snake_case); message is for humans and must not contain secrets.
func Error(w http.ResponseWriter, status int, code, message string, details map[string]any) {
	JSON(w, status, ErrorBody{Error: code, Message: message, Details: details})
}

// JSON writes v as the reply body with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// DecodeError is a request body that cannot be accepted; Status is 400,
// 413 or 415.
type DecodeError struct {
	Status int
	Code   string
	Msg    string
}

func (e *DecodeError) Error() string { return e.Msg }

// Decode reads a JSON request body into v: at most maxBytes, content type
// application/json, no unknown fields, exactly one value. A failure is a
// *DecodeError naming the problem; WriteDecodeError answers it.
func Decode(r *http.Request, maxBytes int64, v any) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	return decode(http.MaxBytesReader(nil, r.Body, maxBytes), maxBytes, v)
}

// ReadBody reads a JSON request body whole (content type application/json,
// at most maxBytes) for an endpoint that parses it itself; DecodeBody
// decodes it as Decode would have. Errors are *DecodeError.
func ReadBody(r *http.Request, maxBytes int64) ([]byte, error) {
	if err := checkContentType(r); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= maxBytes {
		// One allocation of the announced size instead of doubling up to it.
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, maxBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(maxBytes)
		}
		return nil, &DecodeError{http.StatusBadRequest, "bad_request", "request body: " + err.Error()}
	}
	return buf.Bytes(), nil
}

// DecodeBody decodes a body read by ReadBody into v with Decode's rules and
// errors.
func DecodeBody(data []byte, v any) error {
	return decode(bytes.NewReader(data), 0, v)
}

func checkContentType(r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		return &DecodeError{http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("content type %q: want application/json", ct)}
	}
	return nil
}

func tooLarge(maxBytes int64) *DecodeError {
	return &DecodeError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body larger than %d bytes", maxBytes)}
}

// decode reads exactly one JSON value from body into v; maxBytes names the
// limit of a body cut by http.MaxBytesReader.
func decode(body io.Reader, maxBytes int64, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(maxBytes)
		}
		if errors.Is(err, io.EOF) {
			return &DecodeError{http.StatusBadRequest, "bad_request", "empty request body: want a JSON object"}
		}
		return &DecodeError{http.StatusBadRequest, "bad_request", "request body: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &DecodeError{http.StatusBadRequest, "bad_request", "request body: trailing data after the JSON value"}
	}
	return nil
}

// WriteDecodeError answers a Decode failure (or any other error as 400).
func WriteDecodeError(w http.ResponseWriter, err error) {
	var de *DecodeError
	if errors.As(err, &de) {
		Error(w, de.Status, de.Code, de.Msg, nil)
		return
	}
	Error(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
}

func isJSON(ct string) bool {
	for i := 0; i < len(ct); i++ {
		if ct[i] == ';' {
			ct = ct[:i]
			break
		}
	}
	for len(ct) > 0 && ct[len(ct)-1] == ' ' {
		ct = ct[:len(ct)-1]
	}
	return ct == "application/json"
}
