package input

import (
	"strings"

	"github.com/aegis-mesh/aegis/engine"
)

// Strings boxed once as engine values: engine.String and Object.Set box a
// string into an interface on every call, an allocation each, and
// allocation is what a request costs most in the wasm filter (one thread;
// marking shows up as tail latency). boxedWords[i] holds the words of
// boxed[i].
const (
	// The keys of the document's fixed objects, each in order, for
	// engine.ObjectOf.
	documentKeys = iota
	agentKeys
	budgetKeys
	contextKeys
	requestKeys
	mcpKeys
	// Values that many requests carry.
	commonValues
)

var boxedWords = [...]string{
	documentKeys: "agent context mcp params request version",
	agentKeys:    "chain claims id region scope tenant",
	budgetKeys:   "spent_micro_usd_today spent_usd_today",
	contextKeys:  "budget intent override region state_seq time time_ns",
	requestKeys:  "body_type headers host method path query scheme",
	mcpKeys:      "batch id index kind method server tool",
	commonValues: "GET POST PUT PATCH DELETE HEAD OPTIONS http https " +
		BodyNone + " " + BodyJSON + " " + BodyOther + " " +
		KindRequest + " " + KindNotification + " " + KindResponse + " " + KindStream + " " + KindSessionEnd,
}

var (
	boxed        [len(boxedWords)][]engine.Value
	boxedHeaders []engine.Value // commonHeaders: a header's name is its key in request.headers
)

// init boxes in a loop: a package-level variable per slice costs 1-2 kB
// of initialisation code in the filter module.
func init() {
	for i, w := range boxedWords {
		boxed[i] = boxAll(strings.Fields(w))
	}
	boxedHeaders = boxAll(commonHeaders[:])
}

func boxAll(ss []string) []engine.Value {
	vs := make([]engine.Value, len(ss))
	for i, s := range ss {
		vs[i] = engine.String(s)
	}
	return vs
}

// str is engine.String without the allocation for common values.
func str(s string) engine.Value {
	return boxFrom(s, boxed[commonValues])
}

// headerKey is engine.String without the allocation for commonHeaders.
func headerKey(name string) engine.Value {
	return boxFrom(name, boxedHeaders)
}

//go:noinline
func boxFrom(s string, boxed []engine.Value) engine.Value {
	for _, v := range boxed {
		if b, _ := engine.AsString(v); b == s {
			return v
		}
	}
	return engine.String(s)
}

// optString is a string member that is left out when empty.
func optString(s string) engine.Value {
	if s == "" {
		return nil
	}
	return engine.String(s)
}
