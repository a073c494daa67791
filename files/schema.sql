-- ============================================================================
-- ChatFlow MVP: PostgreSQL 15 schema (the single source of truth)
--
-- The 11 tables of the seed design, corrected so that the file runs and reruns
-- cleanly (IF NOT EXISTS / OR REPLACE everywhere), with seed 001's concepts
-- absorbed into them (see docs/tables_description.md for the mapping).
--
-- Run it as the schema owner (the provisioning does SET ROLE chatflow_owner):
--   psql -d chatflow_mvp -c 'SET ROLE chatflow_owner' -f schema.sql
-- It creates no roles and grants nothing: privileges are managed by the
-- chatflow_database role, so role names stay configurable.
-- ============================================================================

-- Extensions (both are trusted: the database owner may create them).
CREATE EXTENSION IF NOT EXISTS pg_trgm;   -- trigram (fuzzy) search
CREATE EXTENSION IF NOT EXISTS pgcrypto;  -- crypt()/gen_salt('bf') for bcrypt seed hashes

-- ----------------------------------------------------------------------------
-- 1. users
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         varchar(255) NOT NULL,
    username      varchar(50)  NOT NULL,
    password_hash varchar(255) NOT NULL,
    display_name  varchar(100),
    avatar_url    varchar(500),
    status        varchar(20)  NOT NULL DEFAULT 'offline',
    bio           text,
    last_seen     timestamptz,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    updated_at    timestamptz  NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    is_active     boolean      NOT NULL DEFAULT true,
    CONSTRAINT users_status_check CHECK (status IN ('online', 'offline', 'away', 'dnd')),
    CONSTRAINT users_email_not_blank CHECK (btrim(email) <> ''),
    CONSTRAINT users_username_not_blank CHECK (btrim(username) <> '')
);

-- Case-insensitive uniqueness: Alice@x and alice@x are the same account.
CREATE UNIQUE INDEX IF NOT EXISTS idx_users_email ON users (lower(email));
CREATE UNIQUE INDEX IF NOT EXISTS idx_users_username ON users (lower(username));
CREATE INDEX IF NOT EXISTS idx_users_status ON users (status) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_users_created_at ON users (created_at DESC);

-- ----------------------------------------------------------------------------
-- 2. workspaces
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS workspaces (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(100) NOT NULL,
    description text,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    is_active   boolean NOT NULL DEFAULT true,
    CONSTRAINT workspaces_name_not_blank CHECK (btrim(name) <> '')
);

-- Natural key: one owner has no two workspaces of the same name.  Its leading
-- column also serves the owner_id foreign key.
CREATE UNIQUE INDEX IF NOT EXISTS idx_workspaces_owner_name ON workspaces (owner_id, lower(name));
CREATE INDEX IF NOT EXISTS idx_workspaces_created_at ON workspaces (created_at DESC);

-- ----------------------------------------------------------------------------
-- 3. workspace_members
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS workspace_members (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         varchar(20) NOT NULL DEFAULT 'member',
    joined_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workspace_members_workspace_id_user_id_key UNIQUE (workspace_id, user_id),
    CONSTRAINT workspace_members_role_check CHECK (role IN ('owner', 'admin', 'moderator', 'member'))
);

CREATE INDEX IF NOT EXISTS idx_workspace_members_user_id ON workspace_members (user_id);
CREATE INDEX IF NOT EXISTS idx_workspace_members_role ON workspace_members (workspace_id, role)
    WHERE role <> 'member';

-- ----------------------------------------------------------------------------
-- 4. channels (seed 001's rooms: type public/private/direct)
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS channels (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         varchar(100) NOT NULL,
    description  text,
    creator_id   uuid REFERENCES users (id) ON DELETE SET NULL,
    type         varchar(10) NOT NULL,
    is_private   boolean NOT NULL DEFAULT false,
    is_archived  boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT channels_type_check CHECK (type IN ('public', 'private', 'direct')),
    CONSTRAINT channels_type_private_consistent CHECK (is_private = (type <> 'public')),
    CONSTRAINT channels_name_not_blank CHECK (btrim(name) <> '')
);

-- Channel names are unique per workspace, case-insensitively.  The leading
-- column serves the workspace_id foreign key and per-workspace listings.
CREATE UNIQUE INDEX IF NOT EXISTS idx_channels_workspace_name ON channels (workspace_id, lower(name));
CREATE INDEX IF NOT EXISTS idx_channels_creator_id ON channels (creator_id) WHERE creator_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_channels_workspace_type ON channels (workspace_id, type) WHERE NOT is_archived;
CREATE INDEX IF NOT EXISTS idx_channels_created_at ON channels (created_at DESC);

-- ----------------------------------------------------------------------------
-- 5. channel_members (seed 001's room_users: role, last_read_at)
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS channel_members (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    channel_id   uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         varchar(10) NOT NULL DEFAULT 'member',
    joined_at    timestamptz NOT NULL DEFAULT now(),
    last_read_at timestamptz,
    CONSTRAINT channel_members_channel_id_user_id_key UNIQUE (channel_id, user_id),
    CONSTRAINT channel_members_role_check CHECK (role IN ('owner', 'admin', 'member'))
);

-- "My channels" with the read watermark, straight from the index.
CREATE INDEX IF NOT EXISTS idx_channel_members_user_id ON channel_members (user_id, channel_id)
    INCLUDE (last_read_at);

-- ----------------------------------------------------------------------------
-- 6. messages (core)
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS messages (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    channel_id   uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    content      text NOT NULL,
    type         varchar(10) NOT NULL DEFAULT 'text',
    thread_id    uuid REFERENCES messages (id) ON DELETE CASCADE,
    edited_at    timestamptz,
    is_edited    boolean GENERATED ALWAYS AS (edited_at IS NOT NULL) STORED,
    edited_by_id uuid REFERENCES users (id) ON DELETE SET NULL,
    deleted_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    is_pinned    boolean NOT NULL DEFAULT false,
    CONSTRAINT messages_content_length CHECK (char_length(content) > 0 AND char_length(content) <= 4000),
    CONSTRAINT messages_type_check CHECK (type IN ('text', 'image', 'file', 'system'))
);

-- Channel history with keyset pagination: WHERE channel_id = $1 AND
-- (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT 50.
CREATE INDEX IF NOT EXISTS idx_messages_channel_created ON messages (channel_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_messages_user_id ON messages (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_messages_thread_id ON messages (thread_id, created_at) WHERE thread_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_messages_created_at ON messages (created_at DESC);
CREATE INDEX IF NOT EXISTS idx_messages_edited_by_id ON messages (edited_by_id) WHERE edited_by_id IS NOT NULL;
-- Full-text search: queries must use to_tsvector('english', content).
CREATE INDEX IF NOT EXISTS idx_messages_content_fts ON messages USING gin (to_tsvector('english', content));
-- Fuzzy search: content ILIKE '%...%', content % 'term', similarity().
CREATE INDEX IF NOT EXISTS idx_messages_content_trigram ON messages USING gin (content gin_trgm_ops);

-- ----------------------------------------------------------------------------
-- 7. reactions
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS reactions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      varchar(20) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reactions_message_id_user_id_emoji_key UNIQUE (message_id, user_id, emoji)
);

CREATE INDEX IF NOT EXISTS idx_reactions_user_id ON reactions (user_id);

-- ----------------------------------------------------------------------------
-- 8. notifications
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS notifications (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type               varchar(50) NOT NULL,
    actor_id           uuid REFERENCES users (id) ON DELETE SET NULL,
    related_message_id uuid REFERENCES messages (id) ON DELETE CASCADE,
    is_read            boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    read_at            timestamptz
);

-- A user's feed (newest first) and the unread badge.
CREATE INDEX IF NOT EXISTS idx_notifications_user_is_read ON notifications (user_id, is_read, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_notifications_created_at ON notifications (created_at DESC);
CREATE INDEX IF NOT EXISTS idx_notifications_actor_id ON notifications (actor_id) WHERE actor_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_notifications_related_message_id ON notifications (related_message_id)
    WHERE related_message_id IS NOT NULL;

-- ----------------------------------------------------------------------------
-- 9. direct_messages
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS direct_messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL,
    sender_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content         text NOT NULL,
    edited_at       timestamptz,
    deleted_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT direct_messages_not_self CHECK (sender_id <> recipient_id),
    CONSTRAINT direct_messages_content_length CHECK (char_length(content) > 0 AND char_length(content) <= 4000)
);

-- A conversation's history, newest first.
CREATE INDEX IF NOT EXISTS idx_direct_messages_conversation_id ON direct_messages (conversation_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_direct_messages_sender_id ON direct_messages (sender_id);
CREATE INDEX IF NOT EXISTS idx_direct_messages_recipient_id ON direct_messages (recipient_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_direct_messages_created_at ON direct_messages (created_at DESC);

-- ----------------------------------------------------------------------------
-- 10. audit_logs
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS audit_logs (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    action        varchar(100) NOT NULL,
    resource_type varchar(50) NOT NULL,
    resource_id   uuid,
    changes       jsonb,
    ip_address    inet,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_audit_logs_user_id ON audit_logs (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_audit_logs_action ON audit_logs (action);
CREATE INDEX IF NOT EXISTS idx_audit_logs_resource ON audit_logs (resource_type, resource_id);
CREATE INDEX IF NOT EXISTS idx_audit_logs_created_at ON audit_logs (created_at DESC);

-- ----------------------------------------------------------------------------
-- 11. files
-- ----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS files (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id  uuid REFERENCES messages (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename    varchar(255) NOT NULL,
    file_size   bigint,
    mime_type   varchar(100),
    file_url    varchar(500) NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT files_size_non_negative CHECK (file_size IS NULL OR file_size >= 0)
);

CREATE INDEX IF NOT EXISTS idx_files_message_id ON files (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_files_user_id ON files (user_id);

-- ============================================================================
-- Materialized view: channel activity summary (dashboard cache)
-- ============================================================================
CREATE MATERIALIZED VIEW IF NOT EXISTS channel_stats AS
SELECT
    c.id                      AS channel_id,
    c.name,
    count(m.id)               AS total_messages,
    count(DISTINCT m.user_id) AS active_users,
    max(m.created_at)         AS last_message_at
FROM channels c
LEFT JOIN messages m ON m.channel_id = c.id AND m.deleted_at IS NULL
WHERE NOT c.is_archived
GROUP BY c.id, c.name
WITH DATA;

-- Unique, so that REFRESH MATERIALIZED VIEW CONCURRENTLY works.
CREATE UNIQUE INDEX IF NOT EXISTS idx_channel_stats_channel_id ON channel_stats (channel_id);

-- ============================================================================
-- Functions and triggers
-- ============================================================================

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

CREATE OR REPLACE TRIGGER trigger_update_users_timestamp
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE OR REPLACE TRIGGER trigger_update_workspaces_timestamp
    BEFORE UPDATE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE OR REPLACE TRIGGER trigger_update_channels_timestamp
    BEFORE UPDATE ON channels
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

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

CREATE OR REPLACE TRIGGER trigger_channels_sync_type
    BEFORE INSERT OR UPDATE OF type, is_private ON channels
    FOR EACH ROW EXECUTE FUNCTION channels_sync_type();

-- The app role cannot own the matview, so it refreshes it through this
-- function (EXECUTE is granted to the app role only).
CREATE OR REPLACE FUNCTION refresh_channel_stats()
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    REFRESH MATERIALIZED VIEW CONCURRENTLY public.channel_stats;
$$;

REVOKE ALL ON FUNCTION refresh_channel_stats() FROM PUBLIC;
