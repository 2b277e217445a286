package main

import (
	"context"
	"fmt"
)

// runBenchXDS is a placeholder until its owner lands the real command.
func runBenchXDS(_ context.Context, _ []string, io stdio) int {
	fmt.Fprintln(io.err, "aegis: this command is not built yet")
	return exitFailure
}
