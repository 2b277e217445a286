CREATE FUNCTION aegis_policy_immutable() RETURNS trigger AS $$
BEGIN
	RAISE EXCEPTION 'aegis: % rows are immutable', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER policy_versions_immutable BEFORE UPDATE OR DELETE ON policy_versions FOR EACH ROW EXECUTE FUNCTION aegis_policy_immutable();
CREATE TRIGGER policy_approvals_immutable BEFORE UPDATE OR DELETE ON policy_approvals FOR EACH ROW EXECUTE FUNCTION aegis_policy_immutable();
CREATE TRIGGER releases_immutable BEFORE UPDATE OR DELETE ON releases FOR EACH ROW EXECUTE FUNCTION aegis_policy_immutable();
CREATE TRIGGER policy_events_immutable BEFORE UPDATE OR DELETE ON policy_events FOR EACH ROW EXECUTE FUNCTION aegis_policy_immutable()
