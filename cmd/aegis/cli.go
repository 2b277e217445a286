package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	goio "io"
	"sort"
	"strings"
)

// stdio carries the streams a command may use, so that commands run
// in-process in tests exactly as they do from a shell.
type stdio struct {
	in  goio.Reader
	out goio.Writer
	err goio.Writer
}

// command is one leaf of the command tree. run returns the process exit code:
// 0 success, 1 the command ran and found a problem (a failed test, an invalid
// policy, a bad signature), 2 the invocation itself was wrong.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, io stdio) int
}

// group is a command with subcommands, such as "policy" or "token", or a
// command that takes flags directly, such as "edge" (run set, no commands).
type group struct {
	name     string
	summary  string
	commands []command
	run      func(ctx context.Context, args []string, io stdio) int
}

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func groups() []group {
	return []group{
		{name: "policy", summary: "validate, compile, test and evaluate policies", commands: policyCommands()},
		{name: "bundle", summary: "verify and inspect policy bundles", commands: bundleCommands()},
		{name: "keys", summary: "generate Ed25519 signing keys", commands: keysCommands()},
		{name: "token", summary: "mint agent tokens and print JWKS", commands: tokenCommands()},
		{name: "audit", summary: "verify audit WALs and evidence packs, export evidence", commands: auditCommands()},
		{name: "edge", summary: "run the edge data plane (proxy hosting the filter)", run: runEdge},
		{name: "controlplane", summary: "run the control plane (API, xDS, approvals, audit)", run: runControlplane},
		{name: "bench", summary: "measure decision latency and throughput against baselines", commands: benchCommands()},
	}
}

func run(ctx context.Context, args []string, io stdio) int {
	gs := groups()
	if len(args) == 0 || isHelp(args[0]) {
		printTopUsage(io.out, gs)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, g := range gs {
		if g.name != args[0] {
			continue
		}
		if g.run != nil {
			return g.run(ctx, args[1:], io)
		}
		if len(args) == 1 || isHelp(args[1]) {
			printGroupUsage(io.out, g)
			if len(args) == 1 {
				return exitUsage
			}
			return exitOK
		}
		for _, c := range g.commands {
			if c.name == args[1] {
				return c.run(ctx, args[2:], io)
			}
		}
		fmt.Fprintf(io.err, "aegis %s: unknown command %q\n\n", g.name, args[1])
		printGroupUsage(io.err, g)
		return exitUsage
	}
	fmt.Fprintf(io.err, "aegis: unknown command %q\n\n", args[0])
	printTopUsage(io.err, gs)
	return exitUsage
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

func printTopUsage(w goio.Writer, gs []group) {
	fmt.Fprintln(w, "aegis — runtime policy, identity and evidence for AI agent tool calls")
	fmt.Fprintln(w, "\nUsage:\n  aegis <command> <subcommand> [flags] [args]\n\nCommands:")
	for _, g := range gs {
		fmt.Fprintf(w, "  %-13s %s\n", g.name, g.summary)
	}
	fmt.Fprintln(w, "\nRun 'aegis <command> --help' for its subcommands, and 'aegis <command> <subcommand> --help' for flags.")
}

func printGroupUsage(w goio.Writer, g group) {
	fmt.Fprintf(w, "aegis %s — %s\n\nSubcommands:\n", g.name, g.summary)
	cs := append([]command(nil), g.commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
}

// flagSet builds a FlagSet whose usage text names the command, its
// positional arguments and a longer description.
func flagSet(name, argsUsage, description string, io stdio) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.err)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: aegis %s [flags] %s\n\n%s\n", name, argsUsage, strings.TrimSpace(description))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs parses flags that may appear before, between or after
// positional arguments ("compile dir -o out" and "compile -o out dir" both
// work), which the standard flag package alone does not allow.
// It returns the positional arguments, or an exit code when parsing stopped:
// exitOK for --help (usage already printed to stdout) and exitUsage otherwise.
func parseArgs(fs *flag.FlagSet, args []string, io stdio) ([]string, int, bool) {
	var positional []string
	for {
		// The flag package prints errors and usage itself while parsing;
		// silence it and print once, to the right stream, below.
		fs.SetOutput(goio.Discard)
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(io.out)
				fs.Usage()
				return nil, exitOK, false
			}
			fs.SetOutput(io.err)
			fmt.Fprintf(io.err, "aegis %s: %v\n\n", fs.Name(), err)
			fs.Usage()
			return nil, exitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, 0, true
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), 0, true
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// stringList is a repeatable string flag (--acting-for a --acting-for b).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
