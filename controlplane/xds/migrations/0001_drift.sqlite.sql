-- What each node last acknowledged or rejected (one row per node) and the
-- history of ACKs and NACKs. Times are Unix microseconds.
CREATE TABLE xds_nodes (
	node_id       TEXT PRIMARY KEY,
	tenant        TEXT NOT NULL,
	region        TEXT NOT NULL,
	role          TEXT NOT NULL,
	connected     INTEGER NOT NULL,
	acked_version TEXT NOT NULL,
	acked_at      BIGINT,
	nack_type     TEXT,
	nack_version  TEXT,
	nack_nonce    TEXT,
	nack_error    TEXT,
	nack_at       BIGINT,
	last_seen     BIGINT NOT NULL
);
CREATE INDEX xds_nodes_tenant ON xds_nodes (tenant);
CREATE TABLE xds_events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	node_id TEXT NOT NULL,
	tenant  TEXT NOT NULL,
	type    TEXT NOT NULL,
	kind    TEXT NOT NULL CHECK (kind IN ('ack', 'nack')),
	version TEXT NOT NULL,
	nonce   TEXT NOT NULL,
	error   TEXT NOT NULL,
	at      BIGINT NOT NULL
);
CREATE INDEX xds_events_node ON xds_events (node_id, id);
CREATE INDEX xds_events_at ON xds_events (at);
