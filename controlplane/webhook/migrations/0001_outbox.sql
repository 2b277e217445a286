-- Webhook deliveries waiting, done or given up: one row per event and
-- target, written when the event happens, so that a control plane that
-- stops (or a replica that dies) leaves nothing undelivered. A worker
-- claims a due row by setting lease_until; another replica takes it over
-- once the lease runs out.
CREATE TABLE webhook_outbox (
	id TEXT PRIMARY KEY,
	target TEXT NOT NULL,
	event TEXT NOT NULL,
	status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
	attempts INTEGER NOT NULL,
	created_at BIGINT NOT NULL,
	next_at BIGINT NOT NULL,
	lease_until BIGINT NOT NULL,
	done_at BIGINT,
	last_error TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_at);
