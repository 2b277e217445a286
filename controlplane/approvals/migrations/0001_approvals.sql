-- Approval requests. At most one pending approval per (tenant, agent, tool,
-- params_digest): related requests are batched onto it (batched counts them).
CREATE TABLE approvals (
	id TEXT PRIMARY KEY,
	tenant TEXT NOT NULL,
	agent TEXT NOT NULL,
	chain TEXT NOT NULL,
	tool TEXT NOT NULL,
	params_digest TEXT NOT NULL,
	reasons TEXT NOT NULL,
	approvers TEXT NOT NULL,
	policy_revision BIGINT NOT NULL,
	decision_id TEXT NOT NULL,
	request_summary TEXT NOT NULL,
	requested_by TEXT NOT NULL,
	status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
	batched INTEGER NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	decided_at BIGINT,
	decided_by TEXT,
	note TEXT,
	override_jti TEXT,
	override_issued_at BIGINT
);
CREATE UNIQUE INDEX approvals_pending ON approvals (tenant, agent, tool, params_digest) WHERE status = 'pending';
CREATE INDEX approvals_queue ON approvals (tenant, status, batched, created_at);
CREATE INDEX approvals_expiry ON approvals (status, expires_at);

-- One row per redeemed override token: the primary key is what makes a
-- redemption happen exactly once across every replica.
CREATE TABLE override_redemptions (
	jti TEXT PRIMARY KEY,
	tenant TEXT NOT NULL,
	approval_id TEXT NOT NULL REFERENCES approvals (id),
	node TEXT NOT NULL,
	redeemed_at BIGINT NOT NULL
);
