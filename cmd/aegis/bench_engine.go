package main

import (
	"context"
	"fmt"
)

// runBenchEngine is a placeholder until its owner lands the real command.
func runBenchEngine(_ context.Context, _ []string, io stdio) int {
	fmt.Fprintln(io.err, "aegis: this command is not built yet")
	return exitFailure
}

// runBenchFilter is a placeholder until its owner lands the real command.
func runBenchFilter(_ context.Context, _ []string, io stdio) int {
	fmt.Fprintln(io.err, "aegis: this command is not built yet")
	return exitFailure
}

// runBenchEdge is a placeholder until its owner lands the real command.
func runBenchEdge(_ context.Context, _ []string, io stdio) int {
	fmt.Fprintln(io.err, "aegis: this command is not built yet")
	return exitFailure
}
