package input

import (
	"sort"
	"strings"

	"github.com/aegis-mesh/aegis/engine"
)

type header struct{ name, value string }

// headers lower-cases names, joins repeated headers with ", " and leaves
// out credentials and Aegis's own control headers, which are not the
// tool's input and must not end up in audit records. It also checks the
// headers that decide how the body is read.
func (b *builder) headers(req *Request, r *reqInfo) {
	hs := make([]header, 0, len(req.Headers))
	for _, h := range req.Headers {
		name := lowerHeaderName(h[0])
		if strings.HasPrefix(name, ":") {
			if name == ":protocol" {
				b.violate(CodeUpgrade, "headers.:protocol", "extended CONNECT (protocol upgrade) cannot be checked")
			}
			continue
		}
		if !isToken(name) {
			b.violate(CodeInvalidHeader, "request.headers", "header name is not an RFC 9110 token")
			continue
		}
		value := strings.Trim(h[1], " \t")
		if strings.ContainsAny(value, "\r\n\x00") {
			b.violate(CodeInvalidHeader, "headers."+name, "CR, LF or NUL in header value")
			continue
		}
		hs = append(hs, header{name, value})
	}
	// Sorting keeps this O(n log n) for hostile header counts and gives
	// the engine object its key order; stability keeps repeated values in
	// arrival order.
	// sort, not slices.Sort*Func: each struct type would instantiate its
	// own ~15 kB copy of the generic sort in the wasm filter (issue 3).
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].name < hs[j].name })

	obj := engine.NewObject(len(hs))
	contentLength := ""
	for i := 0; i < len(hs); {
		name := hs[i].name
		j := i + 1
		for j < len(hs) && hs[j].name == name {
			j++
		}
		group := hs[i:j]
		i = j
		value := group[0].value
		if len(group) > 1 {
			switch name {
			case "content-type", "x-aegis-intent", "host", "content-encoding":
				b.violate(CodeRepeatedHeader, "headers."+name, "header given more than once")
				continue
			}
			parts := make([]string, len(group))
			for k, h := range group {
				parts[k] = h.value
			}
			value = strings.Join(parts, ", ")
		}
		switch {
		case name == "x-aegis-intent":
			r.intent = value
			continue
		case name == "authorization" || name == "proxy-authorization" || name == "cookie" ||
			strings.HasPrefix(name, "x-aegis-"):
			continue
		case name == "host":
			// request.host comes from the authority; a Host header that
			// names another host is two answers to one question.
			if h, v := normalizeHost(value); v != nil || h != r.host {
				b.violate(CodeInvalidHost, "headers.host", "Host header does not match the authority")
			}
			continue
		case name == "upgrade":
			b.violate(CodeUpgrade, "headers.upgrade", "protocol upgrade cannot be checked")
		case name == "content-encoding":
			if !asciiEqualFold(value, "identity") {
				b.violate(CodeContentEncoding, "headers.content-encoding", "encoded (compressed) bodies cannot be checked")
			}
		case name == "content-type":
			r.mediaType, r.charset = parseContentType(value)
		case name == "content-length":
			contentLength = value
		}
		obj.Insert(headerKey(name), engine.String(value))
	}
	r.headers = obj
	if contentLength != "" {
		b.checkContentLength(contentLength, req)
	}
}

// checkContentLength refuses a malformed Content-Length (repeated values
// must agree, RFC 9110 8.6) and one announcing more than the limit.
func (b *builder) checkContentLength(v string, req *Request) {
	first := ""
	for part := range strings.SplitSeq(v, ",") {
		part = strings.Trim(part, " \t")
		if part == "" || len(part) > 18 || strings.Trim(part, "0123456789") != "" {
			b.violate(CodeInvalidContentLength, "headers.content-length", "not a decimal length")
			return
		}
		if first != "" && part != first {
			b.violate(CodeInvalidContentLength, "headers.content-length", "conflicting lengths")
			return
		}
		first = part
	}
	n := 0
	for i := 0; i < len(first); i++ {
		n = n*10 + int(first[i]-'0')
	}
	if n > b.opts.MaxBodyBytes && !req.BodyTruncated && len(req.Body) <= b.opts.MaxBodyBytes {
		// The body check reports the body itself when it is too large;
		// this catches a caller that did not buffer it at all.
		b.violate(CodeBodyTooLarge, "body", "Content-Length exceeds the body size limit")
	}
}

// parseContentType returns the lower-cased media type and charset.
func parseContentType(v string) (mediaType, charset string) {
	mt, params, _ := strings.Cut(v, ";")
	mediaType = asciiLower(strings.Trim(mt, " \t"))
	for p := range strings.SplitSeq(params, ";") {
		k, val, ok := strings.Cut(p, "=")
		if !ok || !asciiEqualFold(strings.Trim(k, " \t"), "charset") {
			continue
		}
		charset = asciiLower(strings.Trim(strings.Trim(val, " \t"), `"`))
	}
	return mediaType, charset
}

// isJSONMediaType: application/json and the structured-syntax suffix
// application/*+json (RFC 6839).
func isJSONMediaType(mt string) bool {
	return mt == "application/json" ||
		(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json") && len(mt) > len("application/+json"))
}

// commonHeaders are returned instead of a freshly lower-cased copy, which
// saves an allocation per header on the hot path for HTTP/1 callers that
// send canonical case (HTTP/2 names are lower-case already).
var commonHeaders = [...]string{
	"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
	"connection", "content-encoding", "content-length", "content-type", "cookie", "host",
	"idempotency-key", "mcp-protocol-version", "mcp-session-id", "proxy-authorization",
	"traceparent", "tracestate", "transfer-encoding", "upgrade", "user-agent",
	"x-aegis-intent", "x-aegis-override", "x-aegis-token", "x-forwarded-for",
	"x-forwarded-proto", "x-request-id",
}

func lowerHeaderName(s string) string {
	lower := true
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			lower = false
			break
		}
	}
	if lower {
		return s
	}
	for _, c := range commonHeaders {
		if len(c) == len(s) && asciiEqualFold(c, s) {
			return c
		}
	}
	return asciiLower(s)
}
