package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/aegis-mesh/aegis/decide"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input"
	"github.com/aegis-mesh/aegis/policies"
)

// Compile loads and compiles the policy a test file names (relative to the
// test file) and returns a target running it on the plan engine.
func Compile(ctx context.Context, f *File) (Target, error) {
	path := f.Policy
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(f.Path), path)
	}
	ps, errs := policies.LoadPath(path)
	if len(errs) > 0 {
		return Target{}, errs
	}
	c, err := policies.Compile(ctx, ps, policies.Options{SkipWasm: true})
	if err != nil {
		return Target{}, err
	}
	d, err := NewDecider(c)
	if err != nil {
		return Target{}, err
	}
	return Target{Decider: d, Tenant: c.Tenant}, nil
}

// NewDecider loads a compiled policy into the plan engine.
func NewDecider(c *policies.Compiled) (*decide.Decider, error) {
	data, err := engine.FromJSON(c.Data)
	if err != nil {
		return nil, fmt.Errorf("data.json: %w", err)
	}
	p, err := engine.Load(c.Plan, data)
	if err != nil {
		return nil, fmt.Errorf("loading plan: %w", err)
	}
	opts := input.Options{MaxBodyBytes: int(c.MaxBodyBytes)}
	for _, e := range c.MCPEndpoints {
		opts.MCPEndpoints = append(opts.MCPEndpoints, input.MCPEndpoint{Server: e.Server, Host: e.Host, Path: e.Path})
	}
	return decide.New(p, opts), nil
}

// RequestCase reads a request written as JSON the way test tables write it
// ({"method", "url", "headers", "json" | "body"}) into a case with no
// expectations, for `aegis policy eval --request`.
func RequestCase(raw []byte) (*Case, error) {
	var r struct {
		Method  string            `json:"method"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
		JSON    json.RawMessage   `json:"json"`
		Body    *string           `json:"body"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("request: %w (fields: method, url, headers, json, body)", err)
	}
	if r.Method == "" || r.URL == "" {
		return nil, fmt.Errorf("request: method and url are required")
	}
	if r.JSON != nil && r.Body != nil {
		return nil, fmt.Errorf("request: json and body are mutually exclusive")
	}
	c := &Case{Name: "request"}
	c.Request.Method, c.Request.URL = r.Method, r.URL
	for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
		c.Request.Headers = append(c.Request.Headers, [2]string{k, r.Headers[k]})
	}
	if r.JSON != nil {
		c.Request.JSON, c.Request.HasBody = r.JSON, true
	}
	if r.Body != nil {
		c.Request.Body, c.Request.HasBody = []byte(*r.Body), true
	}
	return c, nil
}
