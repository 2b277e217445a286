package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aegis-mesh/aegis/edge/wal"
)

// verifyWALDir verifies an edge's audit WAL offline (aegis audit verify
// --dir DIR): framing, canonical events, seq continuity and every hash
// link. Exit 0 when the chain is intact, 1 naming the first broken link,
// 2 for bad usage.
func verifyWALDir(_ context.Context, args []string, io stdio) int {
	fs := flagSet("audit verify", "--dir DIR", `
Verify an edge's audit WAL offline: every record's frame and checksum,
canonical (JCS) events, seq continuity across segments, and each link
event_hash = sha256(prev_hash || JCS(event)). Prints a summary, or the
first broken link (segment, byte offset, seq) and exits 1.

A record cut short at the very end of the newest segment is a crash during
a write that was never acknowledged; it is reported, not counted as a
break, and the edge removes it at its next start.`, io)
	dir := fs.String("dir", "", "WAL directory (the edge's audit dir)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 0 || *dir == "" {
		fmt.Fprintln(io.err, "aegis audit verify: --dir DIR is required and takes no other arguments")
		return exitUsage
	}
	sum, err := wal.VerifyDir(*dir)
	var le *wal.LinkError
	switch {
	case errors.As(err, &le):
		if *asJSON {
			walPrintJSON(io, map[string]any{"ok": false, "segment": le.Segment, "offset": le.Offset, "seq": le.Seq, "problem": le.Problem})
		} else {
			fmt.Fprintf(io.out, "BROKEN: first broken link in %s at byte %d (seq %d): %s\n", le.Segment, le.Offset, le.Seq, le.Problem)
		}
		return exitFailure
	case err != nil:
		fmt.Fprintf(io.err, "aegis audit verify: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		walPrintJSON(io, map[string]any{"ok": true, "segments": sum.Segments, "records": sum.Records, "first_seq": sum.FirstSeq,
			"last_seq": sum.LastSeq, "head": hex.EncodeToString(sum.Head[:]), "torn_bytes": sum.TornBytes})
		return exitOK
	}
	fmt.Fprintf(io.out, "OK: %d records (seq %d..%d) in %d segments, head %x\n", sum.Records, sum.FirstSeq, sum.LastSeq, sum.Segments, sum.Head)
	if sum.TornBytes > 0 {
		fmt.Fprintf(io.out, "note: %d bytes of an unfinished write after the last record (a crash; removed at the next start)\n", sum.TornBytes)
	}
	return exitOK
}

func walPrintJSON(io stdio, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(io.out, string(b))
}
