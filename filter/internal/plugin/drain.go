package plugin

import (
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// drainCalls bounds how long a retired plugin ships its queue: this many
// control-plane call timeouts. Envoy keeps a plugin that answered false to
// proxy_on_done alive until it calls proxy_done, so the bound is ours.
const drainCalls = 3

// OnPluginDone implements types.PluginContext. The host retires this
// plugin (a configuration swap, a drain): queued audit events would be
// lost with the VM, so while a control plane is configured the plugin
// answers false, ships what it holds batch by batch, and calls
// proxywasm.PluginDone when the queue is empty, the control plane stops
// acknowledging, or the drain's time is up.
func (p *pluginContext) OnPluginDone() bool {
	if !p.started || p.cfg.ControlPlane.Cluster == "" || p.vm.chain == nil || p.vm.chain.Len() == 0 {
		return true
	}
	p.draining = true
	p.drainUntil = time.Now().Add(time.Duration(drainCalls*p.cfg.ControlPlane.TimeoutMs) * time.Millisecond)
	proxywasm.LogInfof("aegis: plugin retired: shipping %d queued audit events", p.vm.chain.Len())
	if p.inFlight {
		// The answer to the batch in flight continues the drain.
		return false
	}
	return !p.shipBatch()
}

// drainStep runs after each answer while draining: the next batch goes
// out while the last one made progress and time remains.
func (p *pluginContext) drainStep(progress bool, now time.Time) {
	if progress && now.Before(p.drainUntil) && p.vm.chain.Len() > 0 && p.shipBatch() {
		return
	}
	p.finishDrain()
}

// finishDrain tells the host that the plugin is done, once.
func (p *pluginContext) finishDrain() {
	if p.doneSent {
		return
	}
	p.doneSent = true
	if n := p.vm.chain.Len(); n > 0 {
		// Not counted as dropped: the chain belongs to the VM, and a
		// plugin started in the same VM ships them.
		proxywasm.LogWarnf("aegis: plugin retired with %d audit events the control plane did not acknowledge", n)
	} else {
		proxywasm.LogInfo("aegis: plugin retired: audit queue shipped")
	}
	proxywasm.PluginDone()
}
