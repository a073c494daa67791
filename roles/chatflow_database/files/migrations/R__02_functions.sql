-- Repeatable: functions, replaced in place when this file changes.

-- One function keeps updated_at current on every table that has the column.
-- clock_timestamp(), not now(): an update later in the same transaction moves it too.
CREATE OR REPLACE FUNCTION set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

-- channels.type (seed 001) and channels.is_private (seed 000) are one fact:
-- a writer may give either, and the other follows.  type wins when both differ.
CREATE OR REPLACE FUNCTION channels_sync_type()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.type IS NOT DISTINCT FROM OLD.type
       AND NEW.is_private IS DISTINCT FROM OLD.is_private THEN
        NEW.type := CASE WHEN NEW.is_private THEN 'private' ELSE 'public' END;
    ELSIF NEW.type IS NULL THEN
        NEW.type := CASE WHEN NEW.is_private THEN 'private' ELSE 'public' END;
    END IF;
    NEW.is_private := NEW.type <> 'public';
    RETURN NEW;
END;
$$;

-- The app role cannot own the matview, so it refreshes it through this
-- function (EXECUTE is granted to the app role only, by the provisioning).
-- A SECURITY DEFINER function pins its search_path, so it names its schema.
CREATE OR REPLACE FUNCTION refresh_channel_stats()
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    REFRESH MATERIALIZED VIEW CONCURRENTLY public.channel_stats;
$$;
