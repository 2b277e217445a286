// Command filter is the Aegis proxy-wasm filter: an Envoy HTTP filter
// built with the standard Go toolchain for wasip1 as a reactor module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o build/aegis-filter.wasm ./filter
//
// This file is wiring only; behaviour lives in internal/plugin.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/aegis-mesh/aegis/filter/internal/plugin"
)

// main is empty: a reactor module is driven by the host through its
// exported proxy_on_* functions, not through main.
func main() {}

// init may not make host calls (Envoy runs it inside _initialize); setting
// the VM context is a plain assignment inside the SDK.
func init() {
	proxywasm.SetVMContext(plugin.NewVMContext())
}
