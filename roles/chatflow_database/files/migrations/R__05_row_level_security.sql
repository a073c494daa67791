-- Repeatable: row-level security (seed 001), replaced in place when this file changes.
--
-- Who is subject to it: every role that reads or writes these tables except
-- their owner and the roles the provisioning gives BYPASSRLS
-- (chatflow_database_rls_bypass_roles: the trusted service side, chatflow_app,
-- and the reporting role).  The request role (chatflow_request,
-- DATABASE_REQUEST_URL) is; a request acting for user U runs, in each
-- transaction, before its queries:
--     SELECT set_config('app.user_id', '<U>', true);   -- or SET LOCAL app.user_id = '<U>'
-- The setting ends with the transaction, so a pooled connection (PgBouncer in
-- transaction mode) never carries it to the next request; missing or empty,
-- every policy below compares with NULL and the request sees nothing
-- user-scoped (fail closed).  docs/design.md has the matrix.
--
-- Speed: the policies compare with arrays computed once per query (an
-- InitPlan: `= ANY ((SELECT ...)::uuid[])`) by SECURITY DEFINER functions in
-- PL/pgSQL (their plans cached for the session) that read the memberships
-- themselves (no policy recursion), with uuid equality, which is leakproof, so
-- the app's own index conditions stay index conditions (an OR of two arrays
-- would not: the planner turns it into a BitmapOr and loses the ordered scan).
-- The messages policies, the hottest, read the member channels with a plain
-- subquery of channel_members instead (an InitPlan all the same): under that
-- table's own policy, whose first arm (user_id = the user) holds for every row
-- the subquery asks for, so its function is never called and the membership
-- costs one index-only scan, not a SECURITY DEFINER call (measured with
-- pgbench and prepared statements: 1.04-1.15x the unrestricted history, post
-- and reaction against 1.22-1.46x; docs/performance/rls.md).
-- So messages are readable through the table in the channels the user is a
-- member of; a public channel of its workspaces that it has not joined is
-- listed (channels) and previewed through channel_preview().  The
-- full-text and trigram operators are not leakproof: a policy would turn them
-- into filters, so search goes through search_messages() and
-- search_messages_fuzzy(), which check membership themselves and keep the
-- index conditions.

-- The functions name tables of the live schema at run time (their pinned
-- search_path): their bodies are not resolved when created, so that the drift
-- check's shadow copy of this file builds before the live one exists.
SET LOCAL check_function_bodies = off;

-- --- who the request acts for, and what that user belongs to --------------

-- NULL when app.user_id is missing or empty (a reused pooled connection).
CREATE OR REPLACE FUNCTION app_user_id()
RETURNS uuid
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT NULLIF(current_setting('app.user_id', true), '')::uuid
$$;

-- The workspaces the user belongs to.
CREATE OR REPLACE FUNCTION app_workspace_ids()
RETURNS uuid[]
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(workspace_id), '{}') FROM workspace_members WHERE user_id = app_user_id()
    );
END
$$;

-- The workspaces the user administers (owner or admin).
CREATE OR REPLACE FUNCTION app_admin_workspace_ids()
RETURNS uuid[]
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(workspace_id), '{}')
          FROM workspace_members
         WHERE user_id = app_user_id() AND role IN ('owner', 'admin')
    );
END
$$;

-- The channels the user is a member of (may post, searches).
CREATE OR REPLACE FUNCTION app_member_channel_ids()
RETURNS uuid[]
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(channel_id), '{}') FROM channel_members WHERE user_id = app_user_id()
    );
END
$$;

-- The public channels of the user's workspaces: the ones it may join, list
-- and preview without being a member.
CREATE OR REPLACE FUNCTION app_joinable_channel_ids()
RETURNS uuid[]
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(c.id), '{}')
          FROM channels c
          JOIN workspace_members wm ON wm.workspace_id = c.workspace_id
         WHERE wm.user_id = app_user_id() AND c.type = 'public'
    );
END
$$;

-- Whether the user may read a message (it is in one of its channels): one
-- probe for the reaction a user adds, cheaper to plan than a subquery on
-- messages under its own policy.
CREATE OR REPLACE FUNCTION app_can_read_message(message uuid)
RETURNS boolean
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN EXISTS (SELECT 1
                     FROM messages m
                     JOIN channel_members cm ON cm.channel_id = m.channel_id AND cm.user_id = app_user_id()
                    WHERE m.id = message);
END
$$;

-- The channels the user may manage: those where it is owner or admin, those
-- it created, and every channel of the workspaces it administers.
CREATE OR REPLACE FUNCTION app_admin_channel_ids()
RETURNS uuid[]
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    RETURN (
        SELECT coalesce(array_agg(id), '{}')
          FROM (SELECT channel_id AS id FROM channel_members WHERE user_id = app_user_id() AND role IN ('owner', 'admin')
                UNION
                SELECT id FROM channels WHERE creator_id = app_user_id()
                UNION
                SELECT c.id
                  FROM channels c
                  JOIN workspace_members wm ON wm.workspace_id = c.workspace_id
                 WHERE wm.user_id = app_user_id() AND wm.role IN ('owner', 'admin')) AS managed
    );
END
$$;

-- --- what the request role reaches only through functions -----------------

-- Full-text search in the user's channels (websearch syntax), newest first:
-- the query of tools/bench/workload.py's search_fulltext, with the index
-- condition on idx_messages_channel_fts intact.  tests/integration/
-- test_query_plans.py checks the plan of a call after six others, when the
-- cached plan is in use (a SQL function, planned generically at every call,
-- preferred a BitmapAnd with every message of the user's channels: 3.4x).
CREATE OR REPLACE FUNCTION search_messages(query text, max_rows integer DEFAULT 20)
RETURNS TABLE (id uuid, channel_id uuid, created_at timestamptz)
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
BEGIN
    -- Static: PL/pgSQL prepares it once per session (custom plans for the
    -- first calls, then the cached plan when it costs no more), as a prepared
    -- statement of the unrestricted query would be.
    RETURN QUERY
        SELECT m.id, m.channel_id, m.created_at
          FROM messages m
         WHERE to_tsvector('english', m.content) @@ websearch_to_tsquery('english', search_messages.query)
           AND m.channel_id = ANY (ARRAY(SELECT cm.channel_id FROM channel_members cm WHERE cm.user_id = app_user_id()))
           AND m.deleted_at IS NULL
         ORDER BY m.created_at DESC
         LIMIT least(search_messages.max_rows, 100);
END
$$;

-- Substring (ILIKE) search in the user's channels, newest first: the
-- trigram index condition on idx_messages_content_trigram intact.
CREATE OR REPLACE FUNCTION search_messages_fuzzy(pattern text, max_rows integer DEFAULT 20)
RETURNS TABLE (id uuid, channel_id uuid, created_at timestamptz)
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
BEGIN
    -- Static: PL/pgSQL prepares it once per session (custom plans for the
    -- first calls, then the cached plan when it costs no more), as a prepared
    -- statement of the unrestricted query would be.
    RETURN QUERY
        SELECT m.id, m.channel_id, m.created_at
          FROM messages m
         WHERE m.content ILIKE search_messages_fuzzy.pattern
           AND m.channel_id = ANY (ARRAY(SELECT cm.channel_id FROM channel_members cm WHERE cm.user_id = app_user_id()))
           AND m.deleted_at IS NULL
         ORDER BY m.created_at DESC
         LIMIT least(search_messages_fuzzy.max_rows, 100);
END
$$;

-- The unread count of each channel of the user: the query of
-- tools/bench/workload.py's unread_counts.  Under the policies its per-channel
-- count would test membership once per channel (an index scan per array
-- element): this runs it unrestricted for the user's own memberships only.
CREATE OR REPLACE FUNCTION my_unread_counts()
RETURNS TABLE (channel_id uuid, unread bigint)
LANGUAGE plpgsql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT cm.channel_id,
               (SELECT count(*) FROM messages m
                 WHERE m.channel_id = cm.channel_id
                   AND m.created_at > COALESCE(cm.last_read_at, '-infinity')
                   AND m.deleted_at IS NULL) AS unread
          FROM channel_members cm
         WHERE cm.user_id = app_user_id();
END
$$;

-- The latest messages of a channel the user may read without being a member
-- (public, in one of its workspaces), or of one it is a member of: what a
-- user sees before joining.  Members page through messages directly.
CREATE OR REPLACE FUNCTION channel_preview(channel uuid, max_rows integer DEFAULT 50)
RETURNS TABLE (id uuid, user_id uuid, content text, thread_id uuid, created_at timestamptz)
LANGUAGE sql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT m.id, m.user_id, m.content, m.thread_id, m.created_at
      FROM messages m
     WHERE m.channel_id = channel
       AND channel = ANY (app_joinable_channel_ids() || app_member_channel_ids())
       AND m.deleted_at IS NULL
     ORDER BY m.created_at DESC, m.id DESC
     LIMIT least(max_rows, 100)
$$;

-- channel_stats is a materialized view, which cannot carry policies: the
-- request role gets no privilege on it, only the rows of its readable channels.
-- Its columns spelled out (not SETOF channel_stats): the view stays free to be
-- dropped and rebuilt by R__01.
CREATE OR REPLACE FUNCTION my_channel_stats()
RETURNS TABLE (channel_id uuid, name varchar, total_messages bigint, active_users bigint,
               last_message_at timestamptz)
LANGUAGE sql
STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT s.channel_id, s.name, s.total_messages, s.active_users, s.last_message_at
      FROM channel_stats s
     WHERE s.channel_id = ANY (app_joinable_channel_ids() || app_member_channel_ids())
$$;

REVOKE ALL ON FUNCTION app_user_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_workspace_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_admin_workspace_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_member_channel_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_can_read_message(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION app_joinable_channel_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION channel_preview(uuid, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION my_unread_counts() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_admin_channel_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION search_messages(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION search_messages_fuzzy(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION my_channel_stats() FROM PUBLIC;

-- --- the policies: one or more per command, for PUBLIC ---------------------
-- (RLS itself is switched on per table by V009; a command without a policy is
-- denied to every role subject to it.)

DROP POLICY IF EXISTS users_select ON users;
CREATE POLICY users_select ON users FOR SELECT
    USING (id = (SELECT app_user_id())
           OR EXISTS (SELECT 1 FROM workspace_members wm
                       WHERE wm.user_id = users.id AND wm.workspace_id = ANY ((SELECT app_workspace_ids())::uuid[])));
DROP POLICY IF EXISTS users_update ON users;
CREATE POLICY users_update ON users FOR UPDATE
    USING (id = (SELECT app_user_id())) WITH CHECK (id = (SELECT app_user_id()));

DROP POLICY IF EXISTS workspaces_select ON workspaces;
CREATE POLICY workspaces_select ON workspaces FOR SELECT
    USING (id = ANY ((SELECT app_workspace_ids())::uuid[]));
DROP POLICY IF EXISTS workspaces_update ON workspaces;
CREATE POLICY workspaces_update ON workspaces FOR UPDATE
    USING (id = ANY ((SELECT app_admin_workspace_ids())::uuid[])) WITH CHECK (id = ANY ((SELECT app_admin_workspace_ids())::uuid[]));

DROP POLICY IF EXISTS workspace_members_select ON workspace_members;
CREATE POLICY workspace_members_select ON workspace_members FOR SELECT
    USING (workspace_id = ANY ((SELECT app_workspace_ids())::uuid[]));
DROP POLICY IF EXISTS workspace_members_insert ON workspace_members;
CREATE POLICY workspace_members_insert ON workspace_members FOR INSERT
    WITH CHECK (workspace_id = ANY ((SELECT app_admin_workspace_ids())::uuid[]));
DROP POLICY IF EXISTS workspace_members_update ON workspace_members;
CREATE POLICY workspace_members_update ON workspace_members FOR UPDATE
    USING (workspace_id = ANY ((SELECT app_admin_workspace_ids())::uuid[]))
    WITH CHECK (workspace_id = ANY ((SELECT app_admin_workspace_ids())::uuid[]));
DROP POLICY IF EXISTS workspace_members_delete ON workspace_members;
CREATE POLICY workspace_members_delete ON workspace_members FOR DELETE
    USING (user_id = (SELECT app_user_id()) OR workspace_id = ANY ((SELECT app_admin_workspace_ids())::uuid[]));

DROP POLICY IF EXISTS channels_select ON channels;
CREATE POLICY channels_select ON channels FOR SELECT
    USING (id = ANY ((SELECT app_member_channel_ids())::uuid[])
           OR (type = 'public' AND workspace_id = ANY ((SELECT app_workspace_ids())::uuid[]))
           OR creator_id = (SELECT app_user_id()));
DROP POLICY IF EXISTS channels_insert ON channels;
CREATE POLICY channels_insert ON channels FOR INSERT
    WITH CHECK (creator_id = (SELECT app_user_id()) AND workspace_id = ANY ((SELECT app_workspace_ids())::uuid[]));
DROP POLICY IF EXISTS channels_update ON channels;
CREATE POLICY channels_update ON channels FOR UPDATE
    USING (id = ANY ((SELECT app_admin_channel_ids())::uuid[]))
    WITH CHECK (workspace_id = ANY ((SELECT app_workspace_ids())::uuid[]));
DROP POLICY IF EXISTS channels_delete ON channels;
CREATE POLICY channels_delete ON channels FOR DELETE
    USING (id = ANY ((SELECT app_admin_channel_ids())::uuid[]));

DROP POLICY IF EXISTS channel_members_select ON channel_members;
CREATE POLICY channel_members_select ON channel_members FOR SELECT
    USING (user_id = (SELECT app_user_id()) OR channel_id = ANY ((SELECT app_member_channel_ids())::uuid[]));
DROP POLICY IF EXISTS channel_members_insert ON channel_members;
CREATE POLICY channel_members_insert ON channel_members FOR INSERT
    WITH CHECK ((user_id = (SELECT app_user_id()) AND channel_id = ANY ((SELECT app_joinable_channel_ids())::uuid[]))
                OR channel_id = ANY ((SELECT app_admin_channel_ids())::uuid[]));
DROP POLICY IF EXISTS channel_members_update ON channel_members;
CREATE POLICY channel_members_update ON channel_members FOR UPDATE
    USING (user_id = (SELECT app_user_id())) WITH CHECK (user_id = (SELECT app_user_id()));
DROP POLICY IF EXISTS channel_members_delete ON channel_members;
CREATE POLICY channel_members_delete ON channel_members FOR DELETE
    USING (user_id = (SELECT app_user_id()) OR channel_id = ANY ((SELECT app_admin_channel_ids())::uuid[]));

DROP POLICY IF EXISTS messages_select ON messages;
CREATE POLICY messages_select ON messages FOR SELECT
    USING (channel_id = ANY (ARRAY(SELECT cm.channel_id FROM channel_members cm WHERE cm.user_id = (SELECT app_user_id()))));
DROP POLICY IF EXISTS messages_insert ON messages;
CREATE POLICY messages_insert ON messages FOR INSERT
    WITH CHECK (user_id = (SELECT app_user_id())
                AND channel_id = ANY (ARRAY(SELECT cm.channel_id FROM channel_members cm
                                             WHERE cm.user_id = (SELECT app_user_id()))));
DROP POLICY IF EXISTS messages_update ON messages;
CREATE POLICY messages_update ON messages FOR UPDATE
    USING (user_id = (SELECT app_user_id())) WITH CHECK (user_id = (SELECT app_user_id()));
DROP POLICY IF EXISTS messages_delete ON messages;
CREATE POLICY messages_delete ON messages FOR DELETE
    USING (user_id = (SELECT app_user_id()) OR channel_id = ANY ((SELECT app_admin_channel_ids())::uuid[]));

DROP POLICY IF EXISTS reactions_select ON reactions;
CREATE POLICY reactions_select ON reactions FOR SELECT
    USING (EXISTS (SELECT 1 FROM messages m WHERE m.id = reactions.message_id));
DROP POLICY IF EXISTS reactions_insert ON reactions;
CREATE POLICY reactions_insert ON reactions FOR INSERT
    WITH CHECK (user_id = (SELECT app_user_id()) AND app_can_read_message(message_id));
DROP POLICY IF EXISTS reactions_delete ON reactions;
CREATE POLICY reactions_delete ON reactions FOR DELETE
    USING (user_id = (SELECT app_user_id()));

DROP POLICY IF EXISTS notifications_select ON notifications;
CREATE POLICY notifications_select ON notifications FOR SELECT
    USING (user_id = (SELECT app_user_id()));
DROP POLICY IF EXISTS notifications_update ON notifications;
CREATE POLICY notifications_update ON notifications FOR UPDATE
    USING (user_id = (SELECT app_user_id())) WITH CHECK (user_id = (SELECT app_user_id()));
DROP POLICY IF EXISTS notifications_delete ON notifications;
CREATE POLICY notifications_delete ON notifications FOR DELETE
    USING (user_id = (SELECT app_user_id()));

DROP POLICY IF EXISTS direct_messages_select ON direct_messages;
CREATE POLICY direct_messages_select ON direct_messages FOR SELECT
    USING (sender_id = (SELECT app_user_id()) OR recipient_id = (SELECT app_user_id()));
DROP POLICY IF EXISTS direct_messages_insert ON direct_messages;
CREATE POLICY direct_messages_insert ON direct_messages FOR INSERT
    WITH CHECK (sender_id = (SELECT app_user_id()));
DROP POLICY IF EXISTS direct_messages_update ON direct_messages;
CREATE POLICY direct_messages_update ON direct_messages FOR UPDATE
    USING (sender_id = (SELECT app_user_id())) WITH CHECK (sender_id = (SELECT app_user_id()));
DROP POLICY IF EXISTS direct_messages_delete ON direct_messages;
CREATE POLICY direct_messages_delete ON direct_messages FOR DELETE
    USING (sender_id = (SELECT app_user_id()));

-- Append-only for everyone but its owner (the grants): a request records its
-- own actions and reads none.
DROP POLICY IF EXISTS audit_logs_insert ON audit_logs;
CREATE POLICY audit_logs_insert ON audit_logs FOR INSERT
    WITH CHECK (user_id = (SELECT app_user_id()));

DROP POLICY IF EXISTS files_select ON files;
CREATE POLICY files_select ON files FOR SELECT
    USING (user_id = (SELECT app_user_id())
           OR EXISTS (SELECT 1 FROM messages m WHERE m.id = files.message_id));
DROP POLICY IF EXISTS files_insert ON files;
CREATE POLICY files_insert ON files FOR INSERT
    WITH CHECK (user_id = (SELECT app_user_id())
                AND (message_id IS NULL OR EXISTS (SELECT 1 FROM messages m WHERE m.id = files.message_id)));
DROP POLICY IF EXISTS files_delete ON files;
CREATE POLICY files_delete ON files FOR DELETE
    USING (user_id = (SELECT app_user_id()));
