-- Signing keys: one active key per (tenant, region); retired keys stay
-- published until publish_until, when every token they signed has expired.
-- The private key is sealed (AES-256-GCM under the operator's key-encryption
-- key, bound to tenant, region and kid); the database never holds it in clear.
CREATE TABLE token_keys (
	kid TEXT PRIMARY KEY,
	tenant TEXT NOT NULL,
	region TEXT NOT NULL,
	public_key TEXT NOT NULL,
	sealed_private TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	retired_at BIGINT,
	publish_until BIGINT
);
CREATE UNIQUE INDEX token_keys_active ON token_keys (tenant, region) WHERE retired_at IS NULL;
CREATE INDEX token_keys_tenant ON token_keys (tenant);

-- Revoked agents (no expiry) and token ids (kept until the token would have
-- expired anyway).
CREATE TABLE token_revocations (
	tenant TEXT NOT NULL,
	kind TEXT NOT NULL CHECK (kind IN ('agent', 'jti')),
	value TEXT NOT NULL,
	reason TEXT NOT NULL,
	revoked_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT,
	PRIMARY KEY (tenant, kind, value)
);

CREATE TABLE token_kill_switch (
	tenant TEXT PRIMARY KEY,
	enabled INTEGER NOT NULL,
	updated_by TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);
