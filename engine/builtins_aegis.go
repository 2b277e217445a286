package engine

import (
	"sync"

	"github.com/aegis-mesh/aegis/dlp"
)

// dlpCache keeps compiled detector sets per Policy. Detector lists nearly
// always come from the bundle's data, so the same *Array arrives on every
// call: for an array no evaluation may still append to (gen 0), that
// pointer is the key, which costs nothing, where rendering the list as
// JSON for a key cost about a tenth of a payments decision. A list built
// during evaluation is found by its JSON text and its pointer is not kept.
type dlpCache struct {
	mu     sync.Mutex
	byPtr  map[*Array]*dlp.Set
	byText map[string]*dlp.Set
}

const dlpCacheLimit = 64

func newDLPCache() *dlpCache {
	return &dlpCache{byPtr: map[*Array]*dlp.Set{}, byText: map[string]*dlp.Set{}}
}

func (c *dlpCache) get(detectors *Array) (*dlp.Set, error) {
	frozen := detectors.gen == 0
	c.mu.Lock()
	set, ok := c.byPtr[detectors]
	c.mu.Unlock()
	if ok {
		return set, nil
	}
	key, err := ToJSON(detectors)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	set, ok = c.byText[string(key)]
	c.mu.Unlock()
	if !ok {
		specs, err := dlp.SpecsFromGo(ToGo(detectors))
		if err != nil {
			return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
		}
		if set, err = dlp.Compile(specs); err != nil {
			return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byText) >= dlpCacheLimit {
		clear(c.byText)
	}
	c.byText[string(key)] = set
	if frozen {
		if len(c.byPtr) >= dlpCacheLimit {
			clear(c.byPtr)
		}
		c.byPtr[detectors] = set
	}
	return set, nil
}

// bDLPRedact implements aegis.dlp.redact(text, detectors) →
// {"text": redacted, "hits": [detector names, sorted, unique]}.
func bDLPRedact(ev *evalState, args []Value) (Value, error) {
	text, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	detectors, ok := args[1].(*Array)
	if !ok {
		return nil, typeErr(2, args[1], "array")
	}
	set, err := ev.p.dlp.get(detectors)
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
