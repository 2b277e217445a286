-- Tenants other than the chain's own (audit_chains.tenant) that have
-- events on a chain: a shared gateway's chain carries the events of every
-- tenant it serves, and an export of one of them must find the chain.
CREATE TABLE audit_chain_tenants (
	tenant TEXT NOT NULL,
	node_id TEXT NOT NULL,
	chain_id TEXT NOT NULL,
	PRIMARY KEY (tenant, node_id, chain_id)
)
