CREATE TABLE join_tokens (
	id TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL UNIQUE,
	tenant TEXT NOT NULL,
	region TEXT NOT NULL,
	role TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at BIGINT,
	used_by TEXT
);
CREATE TABLE nodes (
	node_id TEXT PRIMARY KEY,
	tenant TEXT NOT NULL,
	region TEXT NOT NULL,
	role TEXT NOT NULL,
	name TEXT NOT NULL,
	public_key BYTEA NOT NULL,
	join_token_id TEXT NOT NULL,
	enrolled_at BIGINT NOT NULL,
	disabled_at BIGINT
);
CREATE INDEX nodes_tenant ON nodes (tenant)
