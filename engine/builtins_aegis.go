package engine

import (
	"sync"

	"github.com/aegis-mesh/aegis/dlp"
)

// dlpCache keeps compiled detector sets per Policy, keyed by the JSON text
// of the detectors operand. Policies pass the same constant list on every
// call, so the cache stays tiny; it is bounded all the same.
type dlpCache struct {
	mu sync.Mutex
	m  map[string]*dlp.Set
}

const dlpCacheLimit = 64

func newDLPCache() *dlpCache { return &dlpCache{m: map[string]*dlp.Set{}} }

func (c *dlpCache) get(detectors Value) (*dlp.Set, error) {
	key, err := ToJSON(detectors)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	set, ok := c.m[string(key)]
	c.mu.Unlock()
	if ok {
		return set, nil
	}
	specs, err := dlp.SpecsFromGo(ToGo(detectors))
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
	}
	set, err = dlp.Compile(specs)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
	}
	c.mu.Lock()
	if len(c.m) >= dlpCacheLimit {
		clear(c.m)
	}
	c.m[string(key)] = set
	c.mu.Unlock()
	return set, nil
}

// bDLPRedact implements aegis.dlp.redact(text, detectors) →
// {"text": redacted, "hits": [detector names, sorted, unique]}.
func bDLPRedact(ev *evalState, args []Value) (Value, error) {
	text, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	if _, ok := args[1].(*Array); !ok {
		return nil, typeErr(2, args[1], "array")
	}
	set, err := ev.p.dlp.get(args[1])
	if err != nil {
		return nil, err
	}
	out, hits := set.Redact(text)
	obj := NewObject(2)
	obj.Set("hits", stringArray(hits))
	if out == text {
		obj.Set("text", args[0])
	} else {
		obj.Set("text", stringValue(out))
	}
	return obj, nil
}
