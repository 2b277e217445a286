ALTER TABLE policy_versions ADD COLUMN observe_bundle BYTEA
