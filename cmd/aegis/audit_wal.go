package main

import (
	"context"
	"fmt"
)

// verifyWALDir is a placeholder until its owner lands the real command.
func verifyWALDir(_ context.Context, _ []string, io stdio) int {
	fmt.Fprintln(io.err, "aegis: this command is not built yet")
	return exitFailure
}
