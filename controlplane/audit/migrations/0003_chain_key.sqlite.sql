-- The schema of 0003_chain_key.postgres.sql (which says why) in SQLite's
-- terms: chain_key is the table's INTEGER PRIMARY KEY (its rowid, given
-- on insert), and text already compares by bytes (BINARY). SQLite cannot
-- add such a column in place, so both tables are rebuilt.

CREATE TABLE audit_chains_v3 (
	chain_key INTEGER PRIMARY KEY,
	node_id TEXT NOT NULL,
	chain_id TEXT NOT NULL,
	tenant TEXT NOT NULL,
	head_seq BIGINT NOT NULL,
	head_hash TEXT NOT NULL,
	event_count BIGINT NOT NULL,
	checkpoint_seq BIGINT NOT NULL,
	updated_us BIGINT NOT NULL,
	UNIQUE (node_id, chain_id)
);
INSERT INTO audit_chains_v3 (node_id, chain_id, tenant, head_seq, head_hash, event_count, checkpoint_seq, updated_us)
	SELECT node_id, chain_id, tenant, head_seq, head_hash, event_count, checkpoint_seq, updated_us FROM audit_chains ORDER BY node_id, chain_id;
DROP TABLE audit_chains;
ALTER TABLE audit_chains_v3 RENAME TO audit_chains;
CREATE INDEX audit_chains_tenant ON audit_chains (tenant);

CREATE TABLE audit_events_v3 (
	chain_key BIGINT NOT NULL,
	seq BIGINT NOT NULL,
	time_us BIGINT NOT NULL,
	policy_revision BIGINT NOT NULL,
	cost_micro_usd BIGINT NOT NULL,
	received_us BIGINT NOT NULL,
	tenant TEXT NOT NULL,
	id TEXT NOT NULL,
	agent TEXT NOT NULL,
	tool TEXT NOT NULL,
	action TEXT NOT NULL,
	hash TEXT NOT NULL,
	body TEXT NOT NULL,
	PRIMARY KEY (chain_key, seq)
);
INSERT INTO audit_events_v3 (chain_key, seq, time_us, policy_revision, cost_micro_usd, received_us, tenant, id, agent, tool, action, hash, body)
	SELECT c.chain_key, e.seq, e.time_us, e.policy_revision, e.cost_micro_usd, e.received_us, e.tenant, e.id, e.agent, e.tool, e.action, e.hash, e.body
	FROM audit_events e LEFT JOIN audit_chains c ON c.node_id = e.node_id AND c.chain_id = e.chain_id;
DROP TABLE audit_events;
ALTER TABLE audit_events_v3 RENAME TO audit_events;
CREATE UNIQUE INDEX audit_events_id ON audit_events (tenant, id);
CREATE INDEX audit_events_time ON audit_events (tenant, time_us);
