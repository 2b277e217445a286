package main

import (
	"context"
	"fmt"
)

// verifyEvidencePack is a placeholder until its owner lands the real command.
func verifyEvidencePack(_ context.Context, _ []string, io stdio) int {
	fmt.Fprintln(io.err, "aegis: this command is not built yet")
	return exitFailure
}

// runAuditExport is a placeholder until its owner lands the real command.
func runAuditExport(_ context.Context, _ []string, io stdio) int {
	fmt.Fprintln(io.err, "aegis: this command is not built yet")
	return exitFailure
}
