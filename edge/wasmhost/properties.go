package wasmhost

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// Property values are encoded as Envoy encodes them for proxy_get_property:
// strings as their bytes, integers as 8-byte little-endian, booleans as
// one byte.

func propInt(v int64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(v))
	return b
}

func propBool(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// property resolves a path (segments joined by NUL, as the SDK sends
// them). Filter state written with proxy_set_property comes first, then
// the request attributes Envoy provides, then the embedder's static ones.
func (in *instance) property(path string) ([]byte, bool) {
	s := in.currentStream()
	if s != nil {
		if v, ok := s.state[path]; ok {
			return v, true
		}
	} else if v, ok := in.rootState[path]; ok {
		return v, true
	}
	if v, ok := in.pool.cfg.Properties[path]; ok {
		return v, true
	}
	switch path {
	case "plugin_name":
		return []byte(in.pool.cfg.PluginName), true
	case "plugin_root_id":
		return []byte(in.pool.cfg.RootID), true
	case "plugin_vm_id":
		return []byte(in.pool.cfg.VMID), true
	}
	if s == nil || s.req == nil {
		return nil, false
	}
	r := s.req
	switch path {
	case "request\x00path":
		return []byte(requestPath(r)), true
	case "request\x00url_path":
		return []byte(r.URL.Path), true
	case "request\x00query":
		return []byte(r.URL.RawQuery), true
	case "request\x00host":
		return []byte(r.Host), true
	case "request\x00scheme":
		return []byte(s.scheme), true
	case "request\x00method":
		return []byte(r.Method), true
	case "request\x00protocol":
		return []byte(r.Proto), true
	case "request\x00id":
		return []byte(r.Header.Get("X-Request-Id")), true
	case "request\x00useragent":
		return []byte(r.UserAgent()), true
	case "request\x00referer":
		return []byte(r.Referer()), true
	case "request\x00time":
		return propInt(s.start.UnixNano()), true
	case "request\x00size":
		return propInt(int64(s.reqBytes)), true
	case "source\x00address":
		return []byte(r.RemoteAddr), true
	case "source\x00port":
		return portOf(r.RemoteAddr)
	case "destination\x00address":
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			return []byte(a.String()), true
		}
		return nil, false
	case "destination\x00port":
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			return portOf(a.String())
		}
		return nil, false
	case "connection\x00mtls":
		return propBool(r.TLS != nil && len(r.TLS.PeerCertificates) > 0), true
	case "connection\x00tls_version":
		if r.TLS == nil {
			return nil, false
		}
		return []byte(tlsVersion(r.TLS.Version)), true
	case "connection\x00requested_server_name":
		if r.TLS == nil {
			return nil, false
		}
		return []byte(r.TLS.ServerName), true
	case "response\x00code":
		if s.status == 0 {
			return nil, false
		}
		return propInt(int64(s.status)), true
	case "response\x00size":
		return propInt(int64(s.respBytes)), true
	}
	return nil, false
}

func portOf(hostport string) ([]byte, bool) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, false
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return nil, false
	}
	return propInt(int64(n)), true
}

func tlsVersion(v uint16) string {
	switch v {
	case 0x0301:
		return "TLSv1"
	case 0x0302:
		return "TLSv1.1"
	case 0x0303:
		return "TLSv1.2"
	case 0x0304:
		return "TLSv1.3"
	}
	return "unknown"
}

// proxy_get_property(path_ptr, path_size, value_ptr_ptr, value_size_ptr):
// NotFound for an unknown path.
func hostGetProperty(ctx context.Context, in *instance, s []uint64) abi.Status {
	path, ok := in.view(uint32(s[0]), uint32(s[1]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	v, found := in.property(string(path))
	if !found {
		return abi.StatusNotFound
	}
	return in.copyOut(ctx, v, uint32(s[2]), uint32(s[3]))
}

// proxy_set_property(path_ptr, path_size, value_ptr, value_size): filter
// state of the stream (or of the root context outside one). Envoy's
// request attributes are read-only: writing one is BadArgument.
func hostSetProperty(_ context.Context, in *instance, s []uint64) abi.Status {
	path, ok1 := in.str(uint32(s[0]), uint32(s[1]))
	val, ok2 := in.view(uint32(s[2]), uint32(s[3]))
	if !ok1 || !ok2 {
		return abi.StatusInvalidMemoryAccess
	}
	if path == "" {
		return abi.StatusBadArgument
	}
	for _, ro := range []string{"request\x00", "response\x00", "source\x00", "destination\x00", "connection\x00", "plugin_"} {
		if strings.HasPrefix(path, ro) {
			return abi.StatusBadArgument
		}
	}
	v := append([]byte(nil), val...)
	if st := in.currentStream(); st != nil {
		if st.state == nil {
			st.state = map[string][]byte{}
		}
		st.state[path] = v
		return abi.StatusOK
	}
	if in.rootState == nil {
		in.rootState = map[string][]byte{}
	}
	in.rootState[path] = v
	return abi.StatusOK
}
