ALTER TABLE policy_versions ADD COLUMN delegates TEXT NOT NULL DEFAULT '{}'
