-- V001: the ChatFlow core schema, the 11 tables of the seed design with
-- seed 001's concepts absorbed (docs/tables_description.md has the mapping),
-- their constraints and their B-tree indexes.
--
-- Migration rules (chatflow.db.pg_migrate): never qualify our own objects
-- with a schema (the drift check builds them again in a shadow schema);
-- extensions go WITH SCHEMA public and their objects are written public.x.

-- Extensions (both trusted: the database owner may create them).
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;   -- trigram (fuzzy) search
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;  -- crypt()/gen_salt('bf') for bcrypt seed hashes

-- ----------------------------------------------------------------------------
-- 1. users
-- ----------------------------------------------------------------------------
CREATE TABLE users (
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
CREATE UNIQUE INDEX idx_users_email ON users (lower(email));
CREATE UNIQUE INDEX idx_users_username ON users (lower(username));
CREATE INDEX idx_users_status ON users (status) WHERE deleted_at IS NULL;
CREATE INDEX idx_users_created_at ON users (created_at DESC);

-- ----------------------------------------------------------------------------
-- 2. workspaces
-- ----------------------------------------------------------------------------
CREATE TABLE workspaces (
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
CREATE UNIQUE INDEX idx_workspaces_owner_name ON workspaces (owner_id, lower(name));
CREATE INDEX idx_workspaces_created_at ON workspaces (created_at DESC);

-- ----------------------------------------------------------------------------
-- 3. workspace_members
-- ----------------------------------------------------------------------------
CREATE TABLE workspace_members (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         varchar(20) NOT NULL DEFAULT 'member',
    joined_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workspace_members_workspace_id_user_id_key UNIQUE (workspace_id, user_id),
    CONSTRAINT workspace_members_role_check CHECK (role IN ('owner', 'admin', 'moderator', 'member'))
);

CREATE INDEX idx_workspace_members_user_id ON workspace_members (user_id);
CREATE INDEX idx_workspace_members_role ON workspace_members (workspace_id, role)
    WHERE role <> 'member';

-- ----------------------------------------------------------------------------
-- 4. channels (seed 001's rooms: type public/private/direct)
-- ----------------------------------------------------------------------------
CREATE TABLE channels (
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
CREATE UNIQUE INDEX idx_channels_workspace_name ON channels (workspace_id, lower(name));
CREATE INDEX idx_channels_creator_id ON channels (creator_id) WHERE creator_id IS NOT NULL;
CREATE INDEX idx_channels_workspace_type ON channels (workspace_id, type) WHERE NOT is_archived;
CREATE INDEX idx_channels_created_at ON channels (created_at DESC);

-- ----------------------------------------------------------------------------
-- 5. channel_members (seed 001's room_users: role, last_read_at)
-- ----------------------------------------------------------------------------
CREATE TABLE channel_members (
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
CREATE INDEX idx_channel_members_user_id ON channel_members (user_id, channel_id)
    INCLUDE (last_read_at);

-- ----------------------------------------------------------------------------
-- 6. messages (core)
-- ----------------------------------------------------------------------------
CREATE TABLE messages (
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
CREATE INDEX idx_messages_channel_created ON messages (channel_id, created_at DESC, id DESC);
CREATE INDEX idx_messages_user_id ON messages (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX idx_messages_thread_id ON messages (thread_id, created_at) WHERE thread_id IS NOT NULL;
CREATE INDEX idx_messages_created_at ON messages (created_at DESC);
CREATE INDEX idx_messages_edited_by_id ON messages (edited_by_id) WHERE edited_by_id IS NOT NULL;
-- The full-text and trigram indexes come in V002 and V003 (built CONCURRENTLY).

-- ----------------------------------------------------------------------------
-- 7. reactions
-- ----------------------------------------------------------------------------
CREATE TABLE reactions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      varchar(20) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reactions_message_id_user_id_emoji_key UNIQUE (message_id, user_id, emoji)
);

CREATE INDEX idx_reactions_user_id ON reactions (user_id);

-- ----------------------------------------------------------------------------
-- 8. notifications
-- ----------------------------------------------------------------------------
CREATE TABLE notifications (
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
CREATE INDEX idx_notifications_user_is_read ON notifications (user_id, is_read, created_at DESC);
CREATE INDEX idx_notifications_created_at ON notifications (created_at DESC);
CREATE INDEX idx_notifications_actor_id ON notifications (actor_id) WHERE actor_id IS NOT NULL;
CREATE INDEX idx_notifications_related_message_id ON notifications (related_message_id)
    WHERE related_message_id IS NOT NULL;

-- ----------------------------------------------------------------------------
-- 9. direct_messages
-- ----------------------------------------------------------------------------
CREATE TABLE direct_messages (
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
CREATE INDEX idx_direct_messages_conversation_id ON direct_messages (conversation_id, created_at DESC);
CREATE INDEX idx_direct_messages_sender_id ON direct_messages (sender_id);
CREATE INDEX idx_direct_messages_recipient_id ON direct_messages (recipient_id, created_at DESC);
CREATE INDEX idx_direct_messages_created_at ON direct_messages (created_at DESC);

-- ----------------------------------------------------------------------------
-- 10. audit_logs
-- ----------------------------------------------------------------------------
CREATE TABLE audit_logs (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    action        varchar(100) NOT NULL,
    resource_type varchar(50) NOT NULL,
    resource_id   uuid,
    changes       jsonb,
    ip_address    inet,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_audit_logs_user_id ON audit_logs (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX idx_audit_logs_action ON audit_logs (action);
CREATE INDEX idx_audit_logs_resource ON audit_logs (resource_type, resource_id);
CREATE INDEX idx_audit_logs_created_at ON audit_logs (created_at DESC);

-- ----------------------------------------------------------------------------
-- 11. files
-- ----------------------------------------------------------------------------
CREATE TABLE files (
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

CREATE INDEX idx_files_message_id ON files (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX idx_files_user_id ON files (user_id);
