//go:build !wasm

package state

import (
	"testing"

	"github.com/aegis-mesh/aegis/internal/wasmdeps"
)

// TestWasmDependencies keeps the package fit for the wasip1 filter.
func TestWasmDependencies(t *testing.T) {
	wasmdeps.Check(t, "github.com/aegis-mesh/aegis/state")
}
