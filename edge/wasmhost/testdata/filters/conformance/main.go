// Command conformance is the wasm build of the conformance test filter
// (package testfilter), loaded by the host's tests.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/testfilter"
)

func main() {}

func init() { proxywasm.SetVMContext(testfilter.NewVMContext()) }
