package engine

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

func bJSONMarshal(_ *evalState, args []Value) (Value, error) {
	b, err := ToJSON(args[0])
	if err != nil {
		return nil, err
	}
	return stringValue(b), nil
}

func bJSONUnmarshal(_ *evalState, args []Value) (Value, error) {
	s, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	// OPA decodes with encoding/json: duplicate keys and invalid UTF-8 are
	// accepted as it accepts them.
	v, err := fromJSON([]byte(s), lenientJSON)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
	}
	return v, nil
}

func bJSONIsValid(_ *evalState, args []Value) (Value, error) {
	s, ok := args[0].(stringValue)
	if !ok {
		return valFalse, nil
	}
	// json.Valid in OPA: the grammar only, which the lenient reader checks.
	return Bool(jsonx.Valid([]byte(s), lenientJSON)), nil
}

//go:noinline
func encoder(f func(string) string) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 0)
		if err != nil {
			return nil, err
		}
		return stringValue(f(s)), nil
	}
}

//go:noinline
func decoder(f func(string) (string, error)) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 0)
		if err != nil {
			return nil, err
		}
		out, err := f(s)
		if err != nil {
			return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
		}
		return stringValue(out), nil
	}
}

var (
	bBase64Encode = encoder(func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) })
	bBase64Decode = decoder(func(s string) (string, error) {
		b, err := base64.StdEncoding.DecodeString(s)
		return string(b), err
	})
	bBase64URLEncode      = encoder(func(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) })
	bBase64URLEncodeNoPad = encoder(func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) })
	bBase64URLDecode      = decoder(func(s string) (string, error) {
		// Padding may be omitted (RFC 7515 Appendix C), as OPA accepts.
		if !strings.HasSuffix(s, "=") {
			switch len(s) % 4 {
			case 2:
				s += "=="
			case 3:
				s += "="
			case 1:
				return "", &Error{Code: CodeBuiltinError, Message: "illegal base64url string: " + s}
			}
		}
		b, err := base64.URLEncoding.DecodeString(s)
		return string(b), err
	})
	bHexEncode = encoder(func(s string) string { return hex.EncodeToString([]byte(s)) })
	bHexDecode = decoder(func(s string) (string, error) {
		b, err := hex.DecodeString(s)
		return string(b), err
	})
	bURLQueryEncode = encoder(url.QueryEscape)
	bURLQueryDecode = decoder(url.QueryUnescape)
)

func bBase64IsValid(_ *evalState, args []Value) (Value, error) {
	s, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	_, err = base64.StdEncoding.DecodeString(s)
	return Bool(err == nil), nil
}

func bURLQueryEncodeObject(_ *evalState, args []Value) (Value, error) {
	obj, err := argObject(args, 0)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, e := range obj.entries {
		k, ok := e.key.(stringValue)
		if !ok {
			return nil, typeErr(1, e.key, "string")
		}
		switch v := e.value.(type) {
		case stringValue:
			q.Set(string(k), string(v))
		case *Array, *Set:
			strs, err := stringElems([]Value{v}, 0)
			if err != nil {
				return nil, err
			}
			for _, s := range strs {
				q.Add(string(k), s)
			}
		default:
			return nil, typeErr(1, e.value, "string", "array", "set")
		}
	}
	return stringValue(q.Encode()), nil
}

func bURLQueryDecodeObject(_ *evalState, args []Value) (Value, error) {
	s, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	q, err := url.ParseQuery(s)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
	}
	out := NewObject(len(q))
	for k, vs := range q {
		arr := make([]Value, len(vs))
		for i, v := range vs {
			arr[i] = stringValue(v)
		}
		out.Set(k, arrayOf(arr))
	}
	return out, nil
}
