CREATE TABLE policy_heads (
	tenant TEXT PRIMARY KEY,
	last_version BIGINT NOT NULL,
	last_revision BIGINT NOT NULL,
	last_seq BIGINT NOT NULL,
	last_event BIGINT NOT NULL
);
CREATE TABLE policy_versions (
	tenant TEXT NOT NULL,
	version BIGINT NOT NULL,
	name TEXT NOT NULL,
	digest TEXT NOT NULL,
	sources TEXT NOT NULL,
	runtime_bundle BYTEA NOT NULL,
	archive_bundle BYTEA NOT NULL,
	budgets TEXT NOT NULL,
	submitted_by TEXT NOT NULL,
	submitted_at BIGINT NOT NULL,
	PRIMARY KEY (tenant, version)
);
CREATE TABLE policy_approvals (
	tenant TEXT NOT NULL,
	version BIGINT NOT NULL,
	approver TEXT NOT NULL,
	approved_at BIGINT NOT NULL,
	PRIMARY KEY (tenant, version, approver)
);
CREATE TABLE releases (
	tenant TEXT NOT NULL,
	seq BIGINT NOT NULL,
	revision BIGINT NOT NULL,
	version BIGINT NOT NULL,
	stage TEXT NOT NULL,
	regions TEXT NOT NULL,
	roles TEXT NOT NULL,
	replaces BIGINT NOT NULL,
	rollback BOOLEAN NOT NULL,
	publisher TEXT NOT NULL,
	approvers TEXT NOT NULL,
	key_id TEXT NOT NULL,
	bundle BYTEA NOT NULL,
	digest TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	PRIMARY KEY (tenant, seq)
);
CREATE INDEX releases_revision ON releases (tenant, revision);
CREATE TABLE policy_events (
	tenant TEXT NOT NULL,
	ord BIGINT NOT NULL,
	at BIGINT NOT NULL,
	kind TEXT NOT NULL,
	actor TEXT NOT NULL,
	version BIGINT NOT NULL,
	revision BIGINT NOT NULL,
	detail TEXT NOT NULL,
	PRIMARY KEY (tenant, ord)
)
