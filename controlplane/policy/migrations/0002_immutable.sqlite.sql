CREATE TRIGGER policy_versions_no_update BEFORE UPDATE ON policy_versions BEGIN SELECT RAISE(ABORT, 'aegis: policy_versions rows are immutable'); END;
CREATE TRIGGER policy_versions_no_delete BEFORE DELETE ON policy_versions BEGIN SELECT RAISE(ABORT, 'aegis: policy_versions rows are immutable'); END;
CREATE TRIGGER policy_approvals_no_update BEFORE UPDATE ON policy_approvals BEGIN SELECT RAISE(ABORT, 'aegis: policy_approvals rows are immutable'); END;
CREATE TRIGGER policy_approvals_no_delete BEFORE DELETE ON policy_approvals BEGIN SELECT RAISE(ABORT, 'aegis: policy_approvals rows are immutable'); END;
CREATE TRIGGER releases_no_update BEFORE UPDATE ON releases BEGIN SELECT RAISE(ABORT, 'aegis: releases rows are immutable'); END;
CREATE TRIGGER releases_no_delete BEFORE DELETE ON releases BEGIN SELECT RAISE(ABORT, 'aegis: releases rows are immutable'); END;
CREATE TRIGGER policy_events_no_update BEFORE UPDATE ON policy_events BEGIN SELECT RAISE(ABORT, 'aegis: policy_events rows are immutable'); END;
CREATE TRIGGER policy_events_no_delete BEFORE DELETE ON policy_events BEGIN SELECT RAISE(ABORT, 'aegis: policy_events rows are immutable'); END
