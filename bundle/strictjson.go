package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// checkNoDuplicateKeys walks the JSON token stream and fails on an object
// that names the same key twice. encoding/json keeps the last value, other
// parsers keep the first: either way two readers could disagree about what
// was signed.
func checkNoDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// One entry per open container: the keys seen so far for an object,
	// nil for an array.
	var stack []map[string]bool
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
				stack = append(stack, map[string]bool{})
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
				if keys[v] {
					return fmt.Errorf("duplicate key %q", v)
				}
				keys[v] = true
				expectKey = false
				continue
			}
		}
		// A scalar value: inside an object the next token is a key again.
		expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
	}
}
