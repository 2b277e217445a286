package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/edge/wal"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

func writeWAL(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	w, err := wal.Open(dir, wal.Options{NodeID: "edge-1", Sync: wal.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]json.RawMessage, n)
	for i := range n {
		evs[i] = json.RawMessage(fmt.Sprintf(`{"id":"d%d","tenant":"acme","agent":"billing-agent","action":"allow"}`, i))
	}
	if _, _, err := w.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return dir
}

func TestAuditVerifyDir(t *testing.T) {
	good := writeWAL(t, 4)
	code, out, errOut := runCLI(t, "audit", "verify", "--dir", good)
	if code != exitOK || !strings.Contains(out, "OK: 4 records (seq 1..4)") {
		t.Fatalf("intact WAL: exit %d: %s %s", code, out, errOut)
	}

	// Edit one event (keeping its length) and fix nothing else: the CRC
	// names the damaged record, which complete records follow.
	edited := writeWAL(t, 4)
	seg := filepath.Join(edited, "00000000000000000001.wal")
	data, _ := os.ReadFile(seg)
	i := bytes.Index(data, []byte(`"d2"`))
	data[i+1] = 'x'
	os.WriteFile(seg, data, 0o600)
	code, out, _ = runCLI(t, "audit", "verify", "--dir", edited, "--json")
	var res struct {
		OK      bool   `json:"ok"`
		Seq     int64  `json:"seq"`
		Problem string `json:"problem"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if code != exitFailure || res.OK || res.Seq != 3 || !strings.Contains(res.Problem, "CRC") {
		t.Fatalf("edited WAL: exit %d %+v", code, res)
	}

	for _, args := range [][]string{{"audit", "verify", "--dir"}, {"audit", "verify", "--dir", good, "extra"}} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, _, _ := runCLI(t, "audit", "verify", "--dir", t.TempDir()); code != exitFailure {
		t.Errorf("empty dir: exit %d", code)
	}
}
