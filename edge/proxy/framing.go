package proxy

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// framer follows the HTTP/1.1 message framing of one client connection as
// its bytes arrive (RFC 9112 §6): request heads, then bodies delimited by
// Content-Length or chunked coding. It exists because net/http resolves
// some ambiguities silently (a request with both Content-Length and
// Transfer-Encoding is accepted with the length dropped), and a proxy must
// refuse what an upstream might frame differently.
//
// Heads are held back until complete and checked; body bytes are released
// as they come. The framer never buffers more than one head.
type framer struct {
	state    framerState
	head     []byte // the head being collected
	remain   int64  // body bytes left (stateBody, stateChunkData)
	line     []byte // the chunk-size or trailer line being collected
	maxHead  int
	requests int
}

type framerState int

const (
	stateHead        framerState = iota
	stateBody                    // Content-Length body
	stateChunkSize               // reading a chunk-size line
	stateChunkData               // inside chunk data
	stateChunkCRLF               // the CRLF after chunk data
	stateTrailer                 // trailer lines after the last chunk
	statePassthrough             // HTTP/2 or a CONNECT tunnel: not HTTP/1 framing any more
)

// Violation is a framing problem, with a stable code.
type Violation struct {
	Code    string
	Message string
	// Status is the HTTP status to answer (400, or 431 for a head too
	// large).
	Status int
}

func (v *Violation) Error() string { return v.Code + ": " + v.Message }

func violation(code, format string, args ...any) *Violation {
	return &Violation{Code: code, Message: fmt.Sprintf(format, args...), Status: 400}
}

// h2Preface starts every HTTP/2 prior-knowledge connection.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// feed consumes p. It returns bytes that may be released to the HTTP
// server (complete, checked heads and body bytes) and a violation, after
// which the connection carries nothing more.
func (f *framer) feed(p []byte, out []byte) ([]byte, *Violation) {
	for len(p) > 0 {
		switch f.state {
		case statePassthrough:
			return append(out, p...), nil
		case stateHead:
			// Leading CRLFs between requests are tolerated (RFC 9112
			// §2.2) only before a head starts.
			i := bytes.Index(p, []byte("\n"))
			if i < 0 {
				f.head = append(f.head, p...)
				if f.requests == 0 && len(f.head) <= len(h2Preface) && bytes.HasPrefix([]byte(h2Preface), f.head) {
					return out, nil
				}
				if len(f.head) > f.maxHead {
					return out, &Violation{Code: "header_too_large", Message: fmt.Sprintf("request head over %d bytes", f.maxHead), Status: 431}
				}
				return out, nil
			}
			f.head = append(f.head, p[:i+1]...)
			p = p[i+1:]
			if f.requests == 0 && bytes.Equal(f.head, []byte("PRI * HTTP/2.0\r\n")) {
				// HTTP/2 with prior knowledge: its own framing, checked by
				// the HTTP/2 server.
				f.state = statePassthrough
				out = append(out, f.head...)
				f.head = nil
				continue
			}
			if len(f.head) > f.maxHead {
				return out, &Violation{Code: "header_too_large", Message: fmt.Sprintf("request head over %d bytes", f.maxHead), Status: 431}
			}
			if !bytes.HasSuffix(f.head, []byte("\r\n")) {
				return out, violation("bad_request", "a line of the request head ends in a bare LF")
			}
			if !bytes.HasSuffix(f.head, []byte("\r\n\r\n")) {
				if bytes.Equal(f.head, []byte("\r\n")) {
					f.head = f.head[:0] // a blank line between requests
				}
				continue
			}
			h, v := checkHead(f.head)
			if v != nil {
				return out, v
			}
			out = append(out, f.head...)
			f.head = f.head[:0]
			f.requests++
			switch {
			case h.connect:
				f.state = statePassthrough
			case h.chunked:
				f.state = stateChunkSize
			case h.length > 0:
				f.state, f.remain = stateBody, h.length
			}
		case stateBody, stateChunkData:
			n := int64(len(p))
			if n > f.remain {
				n = f.remain
			}
			out = append(out, p[:n]...)
			p = p[n:]
			f.remain -= n
			if f.remain == 0 {
				if f.state == stateBody {
					f.state = stateHead
				} else {
					f.state = stateChunkCRLF
				}
			}
		case stateChunkCRLF:
			f.line = append(f.line, p[0])
			out = append(out, p[0])
			p = p[1:]
			if len(f.line) == 2 {
				if string(f.line) != "\r\n" {
					return out, violation("bad_chunking", "chunk data not followed by CRLF")
				}
				f.line = f.line[:0]
				f.state = stateChunkSize
			}
		case stateChunkSize, stateTrailer:
			i := bytes.IndexByte(p, '\n')
			take := len(p)
			if i >= 0 {
				take = i + 1
			}
			f.line = append(f.line, p[:take]...)
			out = append(out, p[:take]...)
			p = p[take:]
			if len(f.line) > 4096 {
				return out, violation("bad_chunking", "chunk-size or trailer line over 4096 bytes")
			}
			if i < 0 {
				continue
			}
			if !bytes.HasSuffix(f.line, []byte("\r\n")) {
				return out, violation("bad_chunking", "line ends in a bare LF")
			}
			line := f.line[:len(f.line)-2]
			f.line = f.line[:0]
			if f.state == stateTrailer {
				if len(line) == 0 {
					f.state = stateHead
				} else if v := checkFieldLine(line); v != nil {
					return out, v
				}
				continue
			}
			size, v := parseChunkSize(line)
			if v != nil {
				return out, v
			}
			if size == 0 {
				f.state = stateTrailer
			} else {
				f.state, f.remain = stateChunkData, size
			}
		}
	}
	return out, nil
}

// parseChunkSize reads "1*HEXDIG [ chunk-ext ]" strictly: no leading or
// trailing whitespace, no sign, at most 15 digits.
func parseChunkSize(line []byte) (int64, *Violation) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 15 {
		return 0, violation("bad_chunking", "chunk size %q", line)
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, violation("bad_chunking", "chunk size %q is not hexadecimal", line)
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}

type headInfo struct {
	connect bool
	chunked bool
	length  int64
}

// checkHead checks a complete request head (ending in CRLF CRLF).
func checkHead(head []byte) (headInfo, *Violation) {
	var h headInfo
	lines := bytes.Split(head[:len(head)-4], []byte("\r\n"))
	for _, l := range lines {
		if bytes.IndexByte(l, '\n') >= 0 || bytes.IndexByte(l, '\r') >= 0 {
			return h, violation("bad_request", "a line of the request head ends in a bare LF or CR")
		}
	}
	reqLine := lines[0]
	parts := bytes.Split(reqLine, []byte(" "))
	if len(parts) != 3 || len(parts[0]) == 0 || len(parts[1]) == 0 {
		return h, violation("bad_request", "malformed request line")
	}
	proto := string(parts[2])
	if proto != "HTTP/1.1" && proto != "HTTP/1.0" {
		return h, violation("bad_request", "protocol %q", proto)
	}
	h.connect = string(parts[0]) == "CONNECT"
	var cls, tes int
	for _, l := range lines[1:] {
		if v := checkFieldLine(l); v != nil {
			return h, v
		}
		colon := bytes.IndexByte(l, ':')
		name := string(bytes.ToLower(l[:colon]))
		value := string(bytes.Trim(l[colon+1:], " \t"))
		switch name {
		case "content-length":
			cls++
			if cls > 1 {
				return h, violation("ambiguous_length", "more than one Content-Length")
			}
			if value == "" || len(value) > 18 || strings.Trim(value, "0123456789") != "" {
				return h, violation("ambiguous_length", "Content-Length %q is not a decimal number", value)
			}
			h.length, _ = strconv.ParseInt(value, 10, 64)
		case "transfer-encoding":
			tes++
			if tes > 1 || !strings.EqualFold(value, "chunked") {
				return h, violation("ambiguous_length", "Transfer-Encoding other than a single \"chunked\"")
			}
			if proto == "HTTP/1.0" {
				return h, violation("ambiguous_length", "Transfer-Encoding in an HTTP/1.0 request")
			}
			h.chunked = true
		case "upgrade":
			return h, violation("upgrade_not_supported", "protocol upgrades are not proxied (the policy could not inspect the stream)")
		case rejectHeader:
			return h, violation("bad_request", "reserved header %s", rejectHeader)
		}
	}
	if cls > 0 && tes > 0 {
		return h, violation("ambiguous_length", "both Content-Length and Transfer-Encoding")
	}
	if h.connect && (cls > 0 || tes > 0) {
		return h, violation("bad_request", "CONNECT with a body")
	}
	return h, nil
}

// checkFieldLine refuses obsolete line folding, whitespace before the
// colon and names outside the token grammar (RFC 9110 §5.1, RFC 9112 §5).
func checkFieldLine(l []byte) *Violation {
	if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') {
		return violation("bad_request", "obsolete line folding")
	}
	colon := bytes.IndexByte(l, ':')
	if colon <= 0 {
		return violation("bad_request", "header line without a name")
	}
	for _, c := range l[:colon] {
		if !isTokenChar(c) {
			return violation("bad_request", "header name %q", l[:colon])
		}
	}
	for _, c := range l[colon+1:] {
		if c == 0 || (c < 0x20 && c != '\t') || c == 0x7f {
			return violation("bad_request", "control character in the value of %s", l[:colon])
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
