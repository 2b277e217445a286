// Package plugin holds the filter's proxy-wasm contexts (VM → plugin →
// HTTP stream, see the SDK's types package) and turns host callbacks into
// decisions.
//
// For now no policy bundle can be loaded, so every request is refused with
// a 403 "no_bundle" JSON reply: failing closed is the filter's default when
// it has no good bundle. Policy evaluation replaces this in the filter
// issue.
package plugin

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// NoBundleBody is the local reply body sent while no bundle is loaded. The
// error code follows the control-plane API's {"error","message"} shape.
const NoBundleBody = `{"error":"no_bundle","message":"no policy bundle is loaded; the request is denied"}`

// NewVMContext returns the filter's root context. It holds no state yet.
func NewVMContext() types.VMContext { return &vmContext{} }

type vmContext struct {
	types.DefaultVMContext
}

var _ types.VMContext = (*vmContext)(nil)

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
}

var _ types.PluginContext = (*pluginContext)(nil)

// OnPluginStart implements types.PluginContext. Host calls are allowed
// here (unlike in init); the plugin configuration can only be read here.
func (*pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	proxywasm.LogWarn("aegis: no policy bundle loaded, denying every request")
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (*pluginContext) NewHttpContext(uint32) types.HttpContext { return &httpContext{} }

type httpContext struct {
	types.DefaultHttpContext
}

var _ types.HttpContext = (*httpContext)(nil)

// OnHttpRequestHeaders implements types.HttpContext: deny before anything
// reaches the upstream.
func (*httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	headers := [][2]string{{"content-type", "application/json"}, {"cache-control", "no-store"}}
	if err := proxywasm.SendHttpResponse(403, headers, []byte(NoBundleBody), -1); err != nil {
		// The local reply failed; pausing still keeps the request from the
		// upstream, so the failure stays closed.
		proxywasm.LogCriticalf("aegis: sending the no_bundle reply: %v", err)
	}
	return types.ActionPause
}
