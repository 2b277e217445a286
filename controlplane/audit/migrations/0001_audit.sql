-- One row per producer chain (node id + the producer's chain id): the head
-- the next batch must continue from.
CREATE TABLE audit_chains (
	node_id TEXT NOT NULL,
	chain_id TEXT NOT NULL,
	tenant TEXT NOT NULL,
	head_seq BIGINT NOT NULL,
	head_hash TEXT NOT NULL,
	event_count BIGINT NOT NULL,
	checkpoint_seq BIGINT NOT NULL,
	updated_us BIGINT NOT NULL,
	PRIMARY KEY (node_id, chain_id)
);
CREATE INDEX audit_chains_tenant ON audit_chains (tenant);

-- Events as received: body is the canonical (JCS) form the hash covers;
-- the other columns are copies for queries.
CREATE TABLE audit_events (
	node_id TEXT NOT NULL,
	chain_id TEXT NOT NULL,
	seq BIGINT NOT NULL,
	tenant TEXT NOT NULL,
	id TEXT NOT NULL,
	time_us BIGINT NOT NULL,
	agent TEXT NOT NULL,
	tool TEXT NOT NULL,
	action TEXT NOT NULL,
	policy_revision BIGINT NOT NULL,
	cost_micro_usd BIGINT NOT NULL,
	hash TEXT NOT NULL,
	body TEXT NOT NULL,
	received_us BIGINT NOT NULL,
	PRIMARY KEY (node_id, chain_id, seq)
);
CREATE UNIQUE INDEX audit_events_id ON audit_events (tenant, id);
CREATE INDEX audit_events_time ON audit_events (tenant, time_us, id);

-- Spend per agent and UTC day, summed at ingest (live-state budgets).
CREATE TABLE audit_spend (
	tenant TEXT NOT NULL,
	agent TEXT NOT NULL,
	day TEXT NOT NULL,
	micro_usd BIGINT NOT NULL,
	PRIMARY KEY (tenant, agent, day)
);

-- Signed checkpoints of chain heads (evidence key).
CREATE TABLE audit_checkpoints (
	node_id TEXT NOT NULL,
	chain_id TEXT NOT NULL,
	seq BIGINT NOT NULL,
	tenant TEXT NOT NULL,
	hash TEXT NOT NULL,
	event_count BIGINT NOT NULL,
	time_us BIGINT NOT NULL,
	time_text TEXT NOT NULL,
	key_id TEXT NOT NULL,
	signature TEXT NOT NULL,
	PRIMARY KEY (node_id, chain_id, seq)
);
CREATE INDEX audit_checkpoints_tenant ON audit_checkpoints (tenant, time_us);

-- Integrity incidents: every refused batch that points at tampering or a
-- broken producer (gap, fork, reorder, bad signature, unknown node...).
CREATE TABLE audit_incidents (
	id TEXT PRIMARY KEY,
	tenant TEXT NOT NULL,
	node_id TEXT NOT NULL,
	chain_id TEXT NOT NULL,
	kind TEXT NOT NULL,
	expected_seq BIGINT NOT NULL,
	seq_first BIGINT NOT NULL,
	seq_last BIGINT NOT NULL,
	detail TEXT NOT NULL,
	at_us BIGINT NOT NULL
);
CREATE INDEX audit_incidents_tenant ON audit_incidents (tenant, at_us);
