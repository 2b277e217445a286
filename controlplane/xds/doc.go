// Package xds is the control plane's fleet server: an ADS server (state of
// the world and delta, github.com/envoyproxy/go-control-plane) that gives
// every enrolled node its own snapshot (LDS/RDS/CDS for Envoy roles and the
// ECDS resource carrying the Aegis filter's configuration), records what
// each node ACKs and NACKs, and answers drift questions: which nodes do not
// run what was published, why, and how long publishing took to reach them.
//
// A node's tenant comes from its enrolled identity (Config.Identity, read
// from the connection), never from the node id or metadata it sends, and a
// node only ever receives its own tenant's configuration.
//
// See docs/xds.md for resource names, the versioning scheme and the API.
package xds
