CREATE TABLE tenants (
	name TEXT PRIMARY KEY,
	created_at BIGINT NOT NULL,
	created_by TEXT NOT NULL,
	two_person BOOLEAN NOT NULL DEFAULT FALSE,
	approvals_required INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE api_tokens (
	jti TEXT PRIMARY KEY,
	subject TEXT NOT NULL,
	tenant TEXT NOT NULL,
	roles TEXT NOT NULL,
	issued_by TEXT NOT NULL,
	issued_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	revoked_at BIGINT
);
CREATE INDEX api_tokens_subject ON api_tokens (tenant, subject);
CREATE TABLE bootstrap (
	name TEXT PRIMARY KEY,
	done_at BIGINT NOT NULL
)
