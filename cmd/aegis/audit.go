package main

import (
	"context"
	"fmt"
)

func auditCommands() []command {
	return []command{
		{name: "verify", summary: "verify an edge audit WAL (--dir) or an evidence pack offline", run: runAuditVerify},
		{name: "export", summary: "export a signed evidence pack for a tenant and time range", run: runAuditExport},
	}
}

// runAuditVerify dispatches on what is being verified: the WAL directory of an
// edge node (--dir DIR) or an evidence pack exported by the control plane
// (a positional path). Both name the first broken link they find.
func runAuditVerify(ctx context.Context, args []string, io stdio) int {
	for i, a := range args {
		switch {
		case a == "--dir" || a == "-dir":
			if i+1 >= len(args) {
				fmt.Fprintln(io.err, "aegis audit verify: --dir needs a directory")
				return exitUsage
			}
			return verifyWALDir(ctx, args, io)
		case len(a) > 6 && (a[:6] == "--dir=" || a[:5] == "-dir="):
			return verifyWALDir(ctx, args, io)
		}
	}
	return verifyEvidencePack(ctx, args, io)
}
