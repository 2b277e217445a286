// Package envoyconfig checks Envoy configuration the way Envoy does before
// accepting it. go-control-plane's generated Validate methods stop at
// google.protobuf.Any, which is where nearly every interesting config lives
// (HTTP connection manager, filters, transport sockets), so ValidateDeep
// unpacks each Any and validates what is inside, recursively.
package envoyconfig

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// The typed configs Aegis's Envoy configs and xDS resources use must be
	// registered for Any to be unpacked (and for protojson to read them).
	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	_ "google.golang.org/protobuf/types/known/wrapperspb"
)

// maxDepth bounds the recursion through nested Any values; real configs
// nest a handful deep, a hostile one could nest forever.
const maxDepth = 32

type validatorAll interface{ ValidateAll() error }
type validator interface{ Validate() error }

// ValidateDeep validates m and every message packed in an Any anywhere
// inside it. An Any whose type is not registered in this binary is an error:
// an unknown typed config is exactly what Envoy would refuse.
func ValidateDeep(m proto.Message) error {
	return validateDeep(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().FullName()), 0)
}

func validateDeep(m protoreflect.Message, path string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: typed configs nested deeper than %d", path, maxDepth)
	}
	if err := validateOne(m.Interface()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return walk(m, path, depth)
}

func validateOne(m proto.Message) error {
	switch v := m.(type) {
	case validatorAll:
		return v.ValidateAll()
	case validator:
		return v.Validate()
	}
	return nil
}

// walk visits every set field of m, unpacking Any values.
func walk(m protoreflect.Message, path string, depth int) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		name := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = visit(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), depth)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = visit(mv.Message(), fmt.Sprintf("%s[%v]", name, k.Interface()), depth)
				return err == nil
			})
		default:
			err = visit(v.Message(), name, depth)
		}
		return err == nil
	})
	return err
}

func visit(m protoreflect.Message, path string, depth int) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: typed config %q: %w", path, a.GetTypeUrl(), err)
		}
		return validateDeep(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">", depth+1)
	}
	return walk(m, path, depth)
}
