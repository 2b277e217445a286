package input

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aegis-mesh/aegis/engine"
)

// reqInfo is the normalised request line and headers.
type reqInfo struct {
	method, scheme, host, path string
	query                      *engine.Object
	headers                    *engine.Object
	bodyType                   string
	intent                     string
	mediaType                  string // lower-cased, parameters removed
	charset                    string // lower-cased charset parameter, "" when absent
}

func (r *reqInfo) object() *engine.Object {
	return engine.ObjectOf(boxed[requestKeys],
		str(r.bodyType),
		r.headers,
		engine.String(r.host),
		str(r.method),
		engine.String(r.path),
		r.query,
		str(r.scheme),
	)
}

// Body types (request.body_type).
const (
	BodyNone  = "none"
	BodyJSON  = "json"
	BodyOther = "other"
)

// request fills r, the caller's so that it can stay on the stack.
func (b *builder) request(req *Request, r *reqInfo) {
	var ok bool
	if r.method, ok = normalizeMethod(req.Method); !ok {
		b.violate(CodeInvalidMethod, "request.method", "method is empty or not an RFC 9110 token")
	}
	switch s := asciiLower(req.Scheme); s {
	case "http", "https":
		r.scheme = s
	default:
		b.violate(CodeInvalidScheme, "request.scheme", "scheme must be http or https")
	}
	host, v := normalizeHost(req.Authority)
	if v != nil {
		b.violations = append(b.violations, *v)
	}
	r.host = host
	path, rawQuery, v := normalizePath(req.Path)
	if v != nil {
		b.violations = append(b.violations, *v)
	}
	r.path = path
	r.query = b.query(rawQuery)
	b.headers(req, r)
}

// isTchar reports RFC 9110 token characters.
func isTchar(c byte) bool {
	if isAlnum(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isAlnum(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// normalizeMethod upper-cases a method. Methods are case-sensitive on the
// wire, but a server that accepts "get" treats it as GET, and a server that
// does not refuses it, so upper-casing never lets a call through as
// something milder.
func normalizeMethod(m string) (string, bool) {
	if !isToken(m) {
		return "", false
	}
	return asciiUpper(m), true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// normalizeHost lower-cases the authority, removes the port and one
// trailing dot, and refuses userinfo, percent-encoding, empty labels and
// anything but letters, digits, '-', '_' and '.' (or a bracketed IPv6
// literal, kept with its brackets).
func normalizeHost(a string) (string, *Violation) {
	bad := func(msg string) (string, *Violation) {
		return "", &Violation{Code: CodeInvalidHost, Field: "request.host", Message: msg}
	}
	if a == "" {
		return bad("host is empty")
	}
	if strings.IndexByte(a, '@') >= 0 {
		return bad("host must not carry userinfo")
	}
	host, port := a, ""
	hasPort := false
	if a[0] == '[' {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return bad("unterminated IPv6 literal")
		}
		host = a[:end+1]
		rest := a[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return bad("unexpected characters after IPv6 literal")
			}
			port, hasPort = rest[1:], true
		}
		if len(host) < 4 {
			return bad("empty IPv6 literal")
		}
		for i := 1; i < len(host)-1; i++ {
			c := host[i]
			if !(isHex(c) || c == ':' || c == '.') {
				return bad("invalid character in IPv6 literal")
			}
		}
	} else {
		if i := strings.IndexByte(a, ':'); i >= 0 {
			if strings.IndexByte(a[i+1:], ':') >= 0 {
				return bad("more than one ':' (IPv6 literals need brackets)")
			}
			host, port, hasPort = a[:i], a[i+1:], true
		}
		host = strings.TrimSuffix(host, ".") // one trailing dot: the FQDN form
		if host == "" {
			return bad("host is empty")
		}
		if host[0] == '.' || host[len(host)-1] == '.' || strings.Contains(host, "..") {
			return bad("empty label in host")
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !(isAlnum(c) || c == '-' || c == '_' || c == '.') {
				return bad("invalid character " + quoteByte(c) + " in host")
			}
		}
	}
	if hasPort && !validPort(port) {
		return bad("invalid port")
	}
	return asciiLower(host), nil
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func isUnreserved(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~'
}

// pathChar reports characters a path may carry literally: RFC 3986 pchar
// and '/', without ';' (servers disagree on path parameters: some strip
// ";x" from a segment, others keep it) and without '%' (handled apart).
func pathChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte("!$&'()*+,=:@/", c) >= 0
}

// normalizePath splits off the query and normalises the path:
// percent-encoded unreserved characters are decoded, other escapes get
// upper-case hex, and "." and ".." segments are resolved (RFC 3986 5.2.4).
// Refused as ambiguous: a path not starting with '/', a fragment, an
// encoded '/', '\' or NUL, a literal '\', ';' or other character outside
// RFC 3986, invalid percent-encoding, ".." above the root, and empty
// segments ("//": some servers merge slashes and some do not, so the
// resource such a path names depends on the server).
func normalizePath(raw string) (path, rawQuery string, v *Violation) {
	bad := func(msg string) (string, string, *Violation) {
		return "", "", &Violation{Code: CodeInvalidPath, Field: "request.path", Message: msg}
	}
	if raw == "" || raw[0] != '/' {
		return bad("path must start with '/'")
	}
	if strings.IndexByte(raw, '#') >= 0 {
		return bad("path must not carry a fragment")
	}
	p := raw
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		p, rawQuery = raw[:i], raw[i+1:]
	}
	simple := true
	for i := 1; i < len(p); i++ { // p[0] is '/'

		c := p[i]
		switch {
		case c == '%':
			simple = false
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return bad("invalid percent-encoding")
			}
			switch d := unhex(p[i+1])<<4 | unhex(p[i+2]); d {
			case '/':
				return bad("encoded '/' (%2F) is ambiguous")
			case '\\':
				return bad("encoded '\\' (%5C) is ambiguous")
			case 0:
				return bad("encoded NUL (%00)")
			}
			i += 2
		case c == '\\':
			return bad("'\\' in path is ambiguous")
		case c == ';':
			return bad("';' (path parameter) is ambiguous")
		case !pathChar(c):
			return bad("character " + quoteByte(c) + " not allowed in a path")
		case c == '.' && (p[i-1] == '/'):
			simple = false // possibly a dot segment
		case c == '/' && p[i-1] == '/':
			return bad("empty path segment ('//')")
		}
	}
	if simple {
		return p, rawQuery, nil
	}
	// Decode unreserved escapes first: %2E%2E is "..", and dot segments
	// are resolved on what the server will see.
	dec := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			dec = append(dec, c)
			continue
		}
		d := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(d) {
			dec = append(dec, d)
		} else {
			dec = append(dec, '%', upperHex(p[i+1]), upperHex(p[i+2]))
		}
		i += 2
	}
	segs := strings.Split(string(dec[1:]), "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			trailing = last
		case "..":
			if len(out) == 0 {
				return bad("'..' escapes the root")
			}
			out = out[:len(out)-1]
			trailing = last
		case "":
			// Literal "//" was refused above; an empty segment here is
			// the trailing slash.
			trailing = true
		default:
			out = append(out, s)
			trailing = false
		}
	}
	n := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		n += "/"
	}
	return n, rawQuery, nil
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// query decodes the raw query into one string per parameter. '+' means a
// space (HTML form encoding, which is what query strings use in practice).
// Refused: ';' (some servers split on it, others do not), characters
// outside RFC 3986, invalid percent-encoding, decoded invalid UTF-8 or NUL,
// an empty name, and a parameter given twice.
func (b *builder) query(raw string) *engine.Object {
	if raw == "" {
		return engine.NewObject(0)
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == ';':
			b.violate(CodeInvalidQuery, "request.query", "';' in query is ambiguous")
			return nil
		case c == '%' || c == '?':
		case !pathChar(c):
			b.violate(CodeInvalidQuery, "request.query", "character "+quoteByte(c)+" not allowed in a query")
			return nil
		}
	}
	type param struct{ k, v string }
	params := make([]param, 0, strings.Count(raw, "&")+1)
	for piece := range strings.SplitSeq(raw, "&") {
		if piece == "" {
			continue // "a=1&&b=2", a trailing '&': no parameter in any parser
		}
		k, v, _ := strings.Cut(piece, "=")
		dk, ok1 := queryUnescape(k)
		dv, ok2 := queryUnescape(v)
		if !ok1 || !ok2 {
			b.violate(CodeInvalidQuery, "request.query", "invalid percent-encoding, UTF-8 or NUL in query")
			return nil
		}
		if dk == "" {
			b.violate(CodeInvalidQuery, "request.query", "query parameter without a name")
			return nil
		}
		params = append(params, param{dk, dv})
	}
	// sort, not slices.Sort*Func: each struct type would instantiate its
	// own ~15 kB copy of the generic sort in the wasm filter (issue 3).
	sort.SliceStable(params, func(i, j int) bool { return params[i].k < params[j].k })
	obj := engine.NewObject(len(params))
	for i, p := range params {
		if i > 0 && params[i-1].k == p.k {
			if i < 2 || params[i-2].k != p.k { // report each name once
				b.violate(CodeRepeatedQueryParam, fieldName("query", p.k), "query parameter given more than once")
			}
			continue
		}
		obj.Set(p.k, engine.String(p.v))
	}
	return obj
}

func queryUnescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			out = append(out, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", false
			}
			d := unhex(s[i+1])<<4 | unhex(s[i+2])
			if d == 0 {
				return "", false
			}
			out = append(out, d)
			i += 2
		default:
			out = append(out, c)
		}
	}
	if !utf8.Valid(out) {
		return "", false
	}
	return string(out), true
}

// fieldName renders prefix.key, or prefix["key"] when key is not a plain
// identifier, the way strictjson renders JSON paths.
func fieldName(prefix, key string) string {
	if isIdent(key) {
		return prefix + "." + key
	}
	return prefix + "[" + strconv.Quote(key) + "]"
}

func isIdent(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (i > 0 && '0' <= c && c <= '9') {
			continue
		}
		return false
	}
	return true
}

func quoteByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		const hex = "0123456789ABCDEF"
		return "0x" + string([]byte{hex[c>>4], hex[c&15]})
	}
	return "'" + string(rune(c)) + "'"
}

// asciiEqualFold compares case-insensitively in ASCII only: Unicode folding
// (strings.EqualFold) would let "\u212a" (Kelvin sign) stand for 'k'.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
