package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// fieldNames are the members of every object this package decodes
// (header, claims, act, JWKS, JWK).
var fieldNames = map[string]bool{
	"alg": true, "kid": true, "typ": true, "crit": true,
	"iss": true, "sub": true, "aud": true, "tenant": true, "org": true, "scope": true, "region": true,
	"exp": true, "nbf": true, "iat": true, "jti": true, "act": true,
	"keys": true, "kty": true, "crv": true, "x": true, "use": true, "key_ops": true, "d": true,
}

// checkKeys walks the JSON token stream and fails on an object that names
// the same key twice, or on a key that differs from one of fieldNames only
// in case. encoding/json keeps the last duplicate and matches field names
// case-insensitively; other JWT libraries do neither, so such input would
// mean different claims to different readers.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// One entry per open container: the keys seen so far for an object
	// (lower-cased key → key as written), nil for an array.
	var stack []map[string]string
	expectKey := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, map[string]string{})
				expectKey = true
			case '[':
				stack = append(stack, nil)
				expectKey = false
			case '}', ']':
				stack = stack[:len(stack)-1]
				expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
			}
			continue
		case string:
			if expectKey {
				keys := stack[len(stack)-1]
				fold := strings.ToLower(v)
				if prev, dup := keys[fold]; dup {
					if prev == v {
						return fmt.Errorf("duplicate key %q", v)
					}
					return fmt.Errorf("keys %q and %q differ only in case", prev, v)
				}
				if !fieldNames[v] && fieldNames[strings.ToLower(v)] {
					return fmt.Errorf("key %q must be spelled %q", v, strings.ToLower(v))
				}
				keys[fold] = v
				expectKey = false
				continue
			}
		}
		// A scalar value: inside an object the next token is a key again.
		expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
	}
}
