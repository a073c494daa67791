-- Repeatable: privileges the schema itself defines.  Grants to the
-- application roles (their names are configurable) are made by the
-- provisioning (role chatflow_database), not here.

-- A function gets EXECUTE for PUBLIC when it is created: take it back.
REVOKE ALL ON FUNCTION refresh_channel_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION set_updated_at() FROM PUBLIC;
REVOKE ALL ON FUNCTION channels_sync_type() FROM PUBLIC;
