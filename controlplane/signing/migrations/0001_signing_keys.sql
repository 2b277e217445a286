CREATE TABLE signing_keys (
	purpose TEXT NOT NULL,
	key_id TEXT NOT NULL,
	public_key BYTEA NOT NULL,
	first_used BIGINT NOT NULL,
	PRIMARY KEY (purpose, key_id)
)
