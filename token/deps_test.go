// Host-side check: it runs the go tool. Run under GOOS=wasip1 the
// package's own tests already prove it builds and works there.

//go:build !wasm

package token

import (
	"testing"

	"github.com/aegis-mesh/aegis/internal/wasmdeps"
)

// TestWasmDependencies keeps the package fit for the wasip1 filter.
func TestWasmDependencies(t *testing.T) {
	wasmdeps.Check(t, "github.com/aegis-mesh/aegis/token")
}
