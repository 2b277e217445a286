package wasmhost

import (
	"slices"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/abi"
)

// TestEnvTableMatchesEnvoy: the host registers exactly the env functions
// Envoy does, so a module linking here links there.
func TestEnvTableMatchesEnvoy(t *testing.T) {
	var got []string
	for _, f := range envFunctions() {
		got = append(got, f.name)
	}
	want := slices.Clone(abi.EnvFunctions)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("registered %v\nEnvoy      %v", got, want)
	}
}

// TestRestrictedListsAreRegistered walks Envoy's restricted-phase lists:
// every entry names a function this host registers.
func TestRestrictedListsAreRegistered(t *testing.T) {
	env, wasi := setOf(abi.EnvFunctions), setOf(abi.WASIFunctions)
	for phase, names := range abi.AllowedDuring {
		for _, n := range names {
			mod, fn, _ := strings.Cut(n, ".")
			if !(mod == abi.ModuleEnv && env[fn]) && !(mod == abi.ModuleWASI && wasi[fn]) {
				t.Errorf("phase %d allows %s, which is not registered", phase, n)
			}
		}
	}
	// Allocation is stricter than initialisation.
	init := setOf(abi.AllowedDuring[abi.PhaseInitialize])
	for _, n := range abi.AllowedDuring[abi.PhaseAllocate] {
		if !init[n] {
			t.Errorf("%s allowed while allocating but not while initialising", n)
		}
	}
}
