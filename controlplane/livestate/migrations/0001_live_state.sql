CREATE TABLE live_state (
	tenant TEXT PRIMARY KEY,
	seq BIGINT NOT NULL,
	content_digest TEXT NOT NULL,
	issued_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	envelope BYTEA NOT NULL
)
