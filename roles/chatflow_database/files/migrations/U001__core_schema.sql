-- Down of V001: removes the whole ChatFlow schema, rows included.  The
-- repeatable objects built on the tables (triggers, the channel_stats view,
-- the functions) go with them; the extensions stay (other databases' objects
-- may use them, and they hold no data).
DROP MATERIALIZED VIEW IF EXISTS channel_stats;
DROP TABLE IF EXISTS files, audit_logs, direct_messages, notifications, reactions, messages,
    channel_members, channels, workspace_members, workspaces, users;
DROP FUNCTION IF EXISTS refresh_channel_stats();
DROP FUNCTION IF EXISTS channels_sync_type();
DROP FUNCTION IF EXISTS set_updated_at();
