-- Repeatable: triggers, replaced in place when this file changes.

CREATE OR REPLACE TRIGGER trigger_update_users_timestamp
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE OR REPLACE TRIGGER trigger_update_workspaces_timestamp
    BEFORE UPDATE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE OR REPLACE TRIGGER trigger_update_channels_timestamp
    BEFORE UPDATE ON channels
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE OR REPLACE TRIGGER trigger_channels_sync_type
    BEFORE INSERT OR UPDATE OF type, is_private ON channels
    FOR EACH ROW EXECUTE FUNCTION channels_sync_type();
