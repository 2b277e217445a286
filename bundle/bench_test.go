package bundle

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"
)

// BenchmarkOpenVerify opens and verifies a runtime-sized bundle (a 90 KB
// plan and a 20 KB data document), the work a node does per bundle update.
func BenchmarkOpenVerify(b *testing.B) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	plan := []byte(fmt.Sprintf(`{"static":{"strings":[%s]}}`, bytes.Repeat([]byte(`{"value":"tool.call"},`), 4000)))
	data := bytes.Repeat([]byte(`{"k":"v"}`), 2200)
	bundle, err := Build(testManifest(), []File{{Path: "plan.json", Data: plan}, {Path: "data.json", Data: data}}, BuildOptions{SigningKey: key})
	if err != nil {
		b.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	b.ReportAllocs()
	b.SetBytes(int64(len(plan) + len(data)))
	for b.Loop() {
		bn, err := Open(bundle, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if err := bn.Verify(pub, created); err != nil {
			b.Fatal(err)
		}
	}
}
