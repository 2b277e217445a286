//go:build deps

// Package deps pins modules that packages still under construction will
// import, so that parallel work does not race on go.mod. Removed once every
// module is imported for real.
package deps

import (
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "github.com/open-policy-agent/opa/v1/compile"
	_ "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	_ "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	_ "github.com/tetratelabs/wazero"
	_ "go.yaml.in/yaml/v3"
	_ "github.com/go-jose/go-jose/v4"
)
