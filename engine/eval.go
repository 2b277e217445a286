package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Policy is a loaded, validated and compiled plan. It is safe for
// concurrent use by multiple goroutines.
type Policy struct {
	strings []Value // static string constants, as values
	files   []string
	data    Value
	plans   map[string]*compiledPlan
	names   []string
	funcs   []*compiledFunc
	dyn     *dynNode

	now    func() time.Time
	strict bool

	regexes      *regexCache
	constRegexes map[string]*regexp.Regexp // constant patterns, compiled at Load
	dlp          *dlpCache
	gen          atomic.Uint64
	pool         sync.Pool // *evalState
}

// Option configures Load.
type Option func(*options)

type options struct {
	now            func() time.Time
	strict         bool
	regexCacheSize int
}

// WithClock sets the clock behind time.now_ns. The default is time.Now.
// The clock is read at most once per evaluation, as in OPA.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithStrictBuiltinErrors makes builtin errors (bad operand types, invalid
// patterns, ...) fail the evaluation instead of making the call undefined,
// like OPA's StrictBuiltinErrors.
func WithStrictBuiltinErrors(strict bool) Option {
	return func(o *options) { o.strict = strict }
}

// WithRegexCacheSize bounds the per-Policy cache of regular expressions
// built from non-constant patterns (default 128; 0 disables caching).
func WithRegexCacheSize(n int) Option {
	return func(o *options) { o.regexCacheSize = n }
}

// Load decodes, validates and compiles an OPA IR plan (plan.json). data is
// the base document seen as `data` by every evaluation; nil means an empty
// object. Errors are *Error.
func Load(planJSON []byte, data Value, opts ...Option) (*Policy, error) {
	o := options{now: time.Now, regexCacheSize: 128}
	for _, opt := range opts {
		opt(&o)
	}
	if data == nil {
		data = NewObject(0)
	}
	raw, err := decodePlan(planJSON)
	if err != nil {
		return nil, &Error{Code: CodeInvalidPlan, Message: err.Error()}
	}
	funcFrames, planFrames, err := validate(raw, builtinTable)
	if err != nil {
		return nil, err
	}
	p := &Policy{
		data:         data,
		plans:        make(map[string]*compiledPlan, len(raw.Plans.Plans)),
		now:          o.now,
		strict:       o.strict,
		regexes:      newRegexCache(o.regexCacheSize),
		constRegexes: map[string]*regexp.Regexp{},
		dlp:          newDLPCache(),
	}
	p.strings = make([]Value, len(raw.Static.Strings))
	for i, s := range raw.Static.Strings {
		p.strings[i] = stringValue(s.Value)
	}
	for _, f := range raw.Static.Files {
		p.files = append(p.files, f.Value)
	}
	c := &compiler{p: p, plan: raw, funcIdx: make(map[string]int, len(raw.Funcs.Funcs))}
	p.funcs = make([]*compiledFunc, len(raw.Funcs.Funcs))
	for i, f := range raw.Funcs.Funcs {
		c.funcIdx[f.Name] = i
		params := make([]int, len(f.Params))
		for j, l := range f.Params {
			params[j] = int(l)
		}
		p.funcs[i] = &compiledFunc{
			name: f.Name, index: i, params: params, ret: int(f.Return),
			nlocals: funcFrames[i], memo: len(f.Params) == 2, path: f.Path,
		}
	}
	p.dyn = buildDynTrie(p.funcs)
	// Bodies are compiled after every function header exists, because
	// call sites refer to callees by index.
	for i, f := range raw.Funcs.Funcs {
		c.use = countLocalUse(f.Blocks)
		p.funcs[i].body, p.funcs[i].nblocks = c.funcBody(f.Blocks)
	}
	for i, pl := range raw.Plans.Plans {
		c.use = countLocalUse(pl.Blocks)
		p.plans[pl.Name] = &compiledPlan{name: pl.Name, nlocals: planFrames[i], blocks: c.blocks(pl.Blocks)}
		p.names = append(p.names, pl.Name)
	}
	sort.Strings(p.names)
	p.pool.New = func() any { return &evalState{p: p} }
	return p, nil
}

// Entrypoints returns the plan names, sorted (for example "aegis/decision").
func (p *Policy) Entrypoints() []string {
	return append([]string(nil), p.names...)
}

// Eval runs one entrypoint and returns its result set, exactly as OPA's
// wasm/plan ABI defines it: a *Set whose elements are objects of the form
// {"result": <value>} (one per distinct result; the set is empty when the
// entrypoint is undefined). input may be nil for "no input". Errors are
// *Error with eval_* codes. Safe for concurrent use.
func (p *Policy) Eval(ctx context.Context, entrypoint string, input Value) (Value, error) {
	pl, ok := p.plans[entrypoint]
	if !ok {
		return nil, &Error{Code: CodeUnknownEntry, Message: fmt.Sprintf("unknown entrypoint %q", entrypoint)}
	}
	ev := p.pool.Get().(*evalState)
	defer p.release(ev)
	ev.reset(ctx, p.gen.Add(1))
	results := newSmallSet(ev.gen)
	ev.results = results
	frame := ev.pushFrame(pl.nlocals)
	frame[localInput] = input
	frame[localData] = p.data
	for _, b := range pl.blocks {
		r := runBlock(ev, frame, b)
		if r >= unwind || r > 0 {
			break
		}
	}
	if ev.err != nil {
		return nil, ev.err
	}
	results.gen = 0
	return results, nil
}

// EvalOne runs an entrypoint and returns the single `result` value, or
// (nil, false, nil) when the entrypoint is undefined. More than one result
// is an eval_conflict_error.
func (p *Policy) EvalOne(ctx context.Context, entrypoint string, input Value) (Value, bool, error) {
	rs, err := p.Eval(ctx, entrypoint, input)
	if err != nil {
		return nil, false, err
	}
	set := rs.(*Set)
	switch set.Len() {
	case 0:
		return nil, false, nil
	case 1:
		obj, ok := set.elems[0].(*Object)
		if !ok {
			return nil, false, internalErr(nil, "result set element is not an object")
		}
		v, ok := obj.Get("result")
		if !ok {
			return nil, false, internalErr(nil, "result set element has no \"result\" key")
		}
		return v, true, nil
	}
	return nil, false, &Error{Code: CodeConflictError, Message: fmt.Sprintf("entrypoint %q produced %d results", entrypoint, set.Len())}
}

func (p *Policy) release(ev *evalState) {
	ev.ctx, ev.results, ev.err, ev.ret = nil, nil, nil, nil
	ev.argv = [maxBuiltinArity]Value{}
	clear(ev.stack[:cap(ev.stack)])
	ev.stack = ev.stack[:0]
	for i := range ev.memo {
		clear(ev.memo[i])
	}
	ev.memo = ev.memo[:0]
	p.pool.Put(ev)
}

type memoEntry struct {
	done bool
	v    Value
}

// evalState is the per-evaluation machine state: a value stack holding the
// frames of active function calls, the memo tables, and scratch space.
// It is pooled per Policy and never shared between goroutines.
type evalState struct {
	p       *Policy
	ctx     context.Context
	done    <-chan struct{}
	gen     uint64
	stack   []Value
	memo    [][]memoEntry
	memoBuf [][]memoEntry // reusable tables, indexed by with-nesting depth
	results *Set
	ret     Value
	err     error
	steps   uint32
	depth   int
	argv    [maxBuiltinArity]Value

	nowNS Value // time.now_ns, fixed for the evaluation
}

const maxBuiltinArity = 8

func (ev *evalState) reset(ctx context.Context, gen uint64) {
	if ctx == nil {
		ctx = context.Background()
	}
	ev.ctx, ev.done, ev.gen, ev.steps, ev.nowNS, ev.depth = ctx, ctx.Done(), gen, 0, nil, 0
	ev.pushMemo()
}

func (ev *evalState) pushFrame(n int) []Value {
	base := len(ev.stack)
	if cap(ev.stack)-base < n {
		grown := make([]Value, base, 2*cap(ev.stack)+n)
		copy(grown, ev.stack)
		ev.stack = grown
	}
	ev.stack = ev.stack[:base+n]
	return ev.stack[base : base+n : base+n]
}

func (ev *evalState) popFrame(n int) {
	top := len(ev.stack)
	clear(ev.stack[top-n : top])
	ev.stack = ev.stack[:top-n]
}

func (ev *evalState) pushMemo() {
	n := len(ev.p.funcs)
	d := len(ev.memo)
	if d < len(ev.memoBuf) && len(ev.memoBuf[d]) == n {
		ev.memo = append(ev.memo, ev.memoBuf[d])
		return
	}
	t := make([]memoEntry, n)
	if d < len(ev.memoBuf) {
		ev.memoBuf[d] = t
	} else {
		ev.memoBuf = append(ev.memoBuf, t)
	}
	ev.memo = append(ev.memo, t)
}

func (ev *evalState) popMemo() {
	top := ev.memo[len(ev.memo)-1]
	clear(top)
	ev.memo = ev.memo[:len(ev.memo)-1]
}

func (ev *evalState) memoTop() []memoEntry { return ev.memo[len(ev.memo)-1] }

// fail records err and unwinds the evaluation.
//
//go:noinline
func (ev *evalState) fail(err *Error) int {
	if ev.err == nil {
		ev.err = err
	}
	return codeAbort
}

// tick is called once per loop iteration; every 256 steps it checks the
// context so that runaway evaluations can be cancelled.
func (ev *evalState) tick() bool {
	ev.steps++
	if ev.steps&0xff != 0 || ev.done == nil {
		return false
	}
	select {
	case <-ev.done:
		ev.fail(&Error{Code: CodeCancelled, Message: "evaluation cancelled: " + context.Cause(ev.ctx).Error()})
		return true
	default:
		return false
	}
}

// builtinError applies OPA's rules: by default a builtin error makes the
// call undefined; in strict mode (and for halting errors) it ends the
// evaluation.
func (ev *evalState) builtinError(name string, loc *Location, err error) int {
	var h haltError
	if errors.As(err, &h) {
		return ev.fail(withLocation(h.err, name, loc))
	}
	if !ev.p.strict {
		return 0
	}
	return ev.fail(withLocation(err, name, loc))
}

func withLocation(err error, name string, loc *Location) *Error {
	var e *Error
	if errors.As(err, &e) {
		out := *e
		if out.Location == nil {
			out.Location = loc
		}
		return &out
	}
	return &Error{Code: CodeBuiltinError, Message: name + ": " + err.Error(), Location: loc}
}

// haltError marks builtin errors that end evaluation even in non-strict
// mode (OPA's topdown.Halt).
type haltError struct{ err error }

func (h haltError) Error() string { return h.err.Error() }
func (h haltError) Unwrap() error { return h.err }
