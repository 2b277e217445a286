// Package report turns measured series into the three outputs every
// scenario has: a table for people, one JSON object for scripts (also
// written under bench/results/), and the file name both share.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aegis-mesh/aegis/bench/machine"
	"github.com/aegis-mesh/aegis/bench/measure"
)

// Report is one scenario's result.
type Report struct {
	Scenario string
	Started  time.Time
	Machine  machine.Info
	Plan     measure.Plan
	// Params are the scenario's inputs (policy, concurrency, ...).
	Params map[string]any
	// Series are printed in this order and appear in JSON under their names.
	Series []measure.Summary
	// fields are extra top-level JSON values (ratios, counts), in order.
	fields []field
	// Notes are printed under the table and kept in JSON: what was
	// measured where it is not obvious, and anything that went wrong.
	Notes []string
}

type field struct {
	name  string
	value any
}

// Set adds or replaces a top-level field.
func (r *Report) Set(name string, value any) {
	for i := range r.fields {
		if r.fields[i].name == name {
			r.fields[i].value = value
			return
		}
	}
	r.fields = append(r.fields, field{name, value})
}

// Get returns a field set with Set.
func (r *Report) Get(name string) (any, bool) {
	for _, f := range r.fields {
		if f.name == name {
			return f.value, true
		}
	}
	return nil, false
}

// MarshalJSON writes one flat-topped object: scenario, time, machine,
// plan, params, each series under its name, the fields, notes.
func (r *Report) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	put := func(k string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("field %s: %w", k, err)
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		key, _ := json.Marshal(k)
		b.Write(key)
		b.WriteByte(':')
		b.Write(raw)
		return nil
	}
	items := []field{
		{"scenario", r.Scenario},
		{"time", r.Started.UTC().Format(time.RFC3339)},
		{"machine", r.Machine},
		{"plan", r.Plan},
	}
	if len(r.Params) > 0 {
		items = append(items, field{"params", r.Params})
	}
	for _, s := range r.Series {
		items = append(items, field{s.Name, s})
	}
	items = append(items, r.fields...)
	if len(r.Notes) > 0 {
		items = append(items, field{"notes", r.Notes})
	}
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.name] {
			return nil, fmt.Errorf("report: field %q appears twice", it.name)
		}
		seen[it.name] = true
		if err := put(it.name, it.value); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// WriteTable prints the machine, the plan, one row per series (medians
// across runs, with the p99 range of the runs), the fields and the notes.
func (r *Report) WriteTable(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "aegis bench %s — %s\n", r.Scenario, r.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "plan: %d runs × %d timed operations after %d warm-up; percentiles are medians across runs (µs)\n",
		r.Plan.Runs, r.Plan.Requests, r.Plan.Warmup)
	if len(r.Params) > 0 {
		keys := make([]string, 0, len(r.Params))
		for k := range r.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%v", k, r.Params[k])
		}
		fmt.Fprintf(&b, "params: %s\n", strings.Join(parts, " "))
	}
	if len(r.Series) > 0 {
		b.WriteByte('\n')
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "series\tmin\tp50\tp90\tp99\tp99.9\tmax\tp99 runs (min–max)\t")
		for _, s := range r.Series {
			sp := s.Spread["p99_us"]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s–%s\t\n", s.Name, num(s.MinUS), num(s.P50US), num(s.P90US),
				num(s.P99US), num(s.P999US), num(s.MaxUS), num(sp.Min), num(sp.Max))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.fields) > 0 {
		b.WriteByte('\n')
		for _, f := range r.fields {
			raw, err := json.Marshal(f.value)
			if err != nil {
				return fmt.Errorf("field %s: %w", f.name, err)
			}
			fmt.Fprintf(&b, "%s: %s\n", f.name, raw)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func num(f float64) string {
	switch {
	case f >= 1000:
		return fmt.Sprintf("%.0f", f)
	case f >= 100:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2f", f)
	}
}

// BaseName is the file name shared by a report's JSON and PNG:
// <scenario>-<UTC time>, sortable and safe on every file system.
func (r *Report) BaseName() string {
	return r.Scenario + "-" + r.Started.UTC().Format("20060102T150405Z")
}

// Save writes the JSON (indented, for diffs) to dir/<BaseName>.json,
// creating dir, and returns the path.
func (r *Report) Save(dir string) (string, error) {
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding %s report: %w", r.Scenario, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	path := filepath.Join(dir, r.BaseName()+".json")
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// Ratio is a/b rounded to two decimals, or 0 when b is 0 (no division by
// zero in a report that a script reads).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return measure.Round2(a / b)
}
