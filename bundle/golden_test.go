package bundle

import (
	"testing"
)

// TestManifestCanonicalForm pins the exact signed bytes for a fixed
// manifest. A change here changes what every signature covers: it must be
// a deliberate format change, not a side effect.
func TestManifestCanonicalForm(t *testing.T) {
	m := testManifest()
	m.Format = Format
	m.Files = map[string]string{
		"plan.json": "0000000000000000000000000000000000000000000000000000000000000001",
		"data.json": "0000000000000000000000000000000000000000000000000000000000000002",
	}
	m.Release = &Release{Approvers: []string{"bob", "alice"}, Publisher: "ci", Stage: "canary"}
	got, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{
  "format": "aegis.bundle/v1",
  "kind": "runtime",
  "tenant": "acme",
  "name": "payments",
  "revision": 7,
  "created_at": "2026-11-01T12:00:00Z",
  "expires_at": "2026-12-01T12:00:00Z",
  "engine_version": "aegis-engine/1",
  "builtins": [
    "count",
    "regex.match"
  ],
  "entrypoints": [
    "aegis/decision"
  ],
  "files": {
    "data.json": "0000000000000000000000000000000000000000000000000000000000000002",
    "plan.json": "0000000000000000000000000000000000000000000000000000000000000001"
  },
  "release": {
    "approvers": [
      "bob",
      "alice"
    ],
    "publisher": "ci",
    "stage": "canary"
  },
  "policy": {
    "a": "<&>",
    "b": 1,
    "mcp": {
      "endpoints": [
        "/mcp"
      ]
    }
  }
}
`
	if string(got) != want {
		t.Fatalf("canonical manifest changed:\n%s\nwant:\n%s", got, want)
	}
}
