package main

func benchCommands() []command {
	return []command{
		{name: "engine", summary: "plan engine vs OPA (Go evaluator and wasm) on the same inputs", run: runBenchEngine},
		{name: "filter", summary: "the filter .wasm under the edge's wazero host, per request, by path", run: runBenchFilter},
		{name: "edge", summary: "HTTP load through the edge vs no filter, a plain proxy and ext_authz", run: runBenchEdge},
		{name: "xds", summary: "time for N simulated nodes to ACK a published bundle", run: runBenchXDS},
		{name: "audit", summary: "ingest N signed, chained audit events into Postgres", run: runBenchAudit},
	}
}
