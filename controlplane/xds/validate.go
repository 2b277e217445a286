package xds

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// maxValidateDepth bounds nesting (messages plus unpacked Any levels) so a
// hostile or looping configuration cannot exhaust the stack.
const maxValidateDepth = 64

// ValidateDeep runs the protoc-gen-validate rules of msg and of every
// message packed in a google.protobuf.Any anywhere beneath it. Envoy's
// generated Validate stops at an Any (it checks at most the type URL), so a
// listener whose HTTP connection manager, or whose ECDS default_config,
// carries an invalid typed config would otherwise pass. An Any whose type is
// not linked into this binary is an error: what cannot be checked is not
// accepted. Errors name the field path, e.g.
// filter_chains[0].filters[0].typed_config<...HttpConnectionManager>.stat_prefix.
func ValidateDeep(msg proto.Message) error {
	if msg == nil {
		return errors.New("nil message")
	}
	return validateDeep(msg.ProtoReflect(), "", 0)
}

type validator interface{ ValidateAll() error }

type shallowValidator interface{ Validate() error }

// validateDeep validates m itself (its rules cover its non-Any subtree) and
// then walks it to find the Anys below.
func validateDeep(m protoreflect.Message, path string, depth int) error {
	if err := validateOne(m.Interface()); err != nil {
		return fmt.Errorf("%s: %w", orRoot(path), err)
	}
	return walk(m, path, depth)
}

func validateOne(m proto.Message) error {
	switch v := m.(type) {
	case validator:
		return v.ValidateAll()
	case shallowValidator:
		return v.Validate()
	}
	return nil // well-known types (StringValue, Struct, Duration…) have no rules
}

func walk(m protoreflect.Message, path string, depth int) error {
	if depth > maxValidateDepth {
		return fmt.Errorf("%s: nested more than %d levels", orRoot(path), maxValidateDepth)
	}
	if any, ok := m.Interface().(*anypb.Any); ok {
		inner, err := unpack(any)
		if err != nil {
			return fmt.Errorf("%s: %w", orRoot(path), err)
		}
		return validateDeep(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">", depth+1)
	}
	// Unknown fields mean the sender and this binary disagree about the
	// schema: the rules of fields we do not know could not be checked.
	if len(m.GetUnknown()) > 0 {
		return fmt.Errorf("%s: fields unknown to this binary", orRoot(path))
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := join(path, string(fd.Name()))
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = walk(l.Get(i).Message(), name+"["+strconv.Itoa(i)+"]", depth+1)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walk(mv.Message(), name+"["+k.String()+"]", depth+1)
				return err == nil
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			err = walk(v.Message(), name, depth+1)
		}
		return err == nil
	})
	return err
}

func unpack(a *anypb.Any) (proto.Message, error) {
	if a.GetTypeUrl() == "" {
		return nil, errors.New("typed config without a type URL")
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		return nil, fmt.Errorf("typed config %q: type not known to this binary: %w", a.GetTypeUrl(), err)
	}
	inner := mt.New().Interface()
	if err := proto.Unmarshal(a.GetValue(), inner); err != nil {
		return nil, fmt.Errorf("typed config %q: %w", a.GetTypeUrl(), err)
	}
	return inner, nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}
