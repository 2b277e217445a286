// Command initcall is a filter that makes a host call Envoy forbids while
// the module initialises (shared data from a package initialiser): the
// host must refuse to start it, as Envoy does.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/aegis-mesh/aegis/edge/wasmhost/internal/testfilter"
)

func main() {}

func init() {
	proxywasm.SetVMContext(testfilter.NewVMContext())
	_ = proxywasm.SetSharedData("too-early", []byte("x"), 0)
}
