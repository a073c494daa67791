-- ============================================================================
-- ChatFlow MVP: development seed data (3 users, 1 workspace, 1 channel,
-- the welcome message).  Rerunnable: every row has a natural key and a real
-- ON CONFLICT target, so a second run inserts nothing.
--
-- No password is in this file.  Each user's password is read from a session
-- setting and stored as a bcrypt hash (cost 12, pgcrypto) when the user is
-- created, and again when the setting no longer matches the stored hash (a
-- changed seed password applies on the next run):
--   PGOPTIONS='-c chatflow.seed_password_alice=... -c chatflow.seed_password_bob=...
--              -c chatflow.seed_password_charlie=...' psql -d chatflow_mvp -f seed.sql
-- The provisioning generates these passwords on the control node
-- (.secrets/<host>/seed_user_<name>) and sets them for you.
-- ============================================================================

INSERT INTO users (email, username, display_name, status, password_hash)
SELECT v.email, v.username, v.display_name, v.status,
       crypt(current_setting('chatflow.seed_password_' || v.username), gen_salt('bf', 12))
FROM (VALUES
    ('alice@chatflow.local',   'alice',   'Alice Developer',  'online'),
    ('bob@chatflow.local',     'bob',     'Bob Backend',      'online'),
    ('charlie@chatflow.local', 'charlie', 'Charlie Frontend', 'away')
) AS v (email, username, display_name, status)
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE lower(u.username) = lower(v.username))
ON CONFLICT ((lower(username))) DO NOTHING;

-- A changed seed password replaces the hash; a matching one writes nothing.
UPDATE users u
SET password_hash = crypt(current_setting('chatflow.seed_password_' || lower(u.username)), gen_salt('bf', 12))
WHERE lower(u.username) IN ('alice', 'bob', 'charlie')
  AND u.password_hash <> crypt(current_setting('chatflow.seed_password_' || lower(u.username)), u.password_hash);

INSERT INTO workspaces (name, description, owner_id)
SELECT 'ChatFlow MVP Workspace', 'The team workspace of the ChatFlow MVP', u.id
FROM users u
WHERE lower(u.username) = 'alice'
ON CONFLICT (owner_id, (lower(name))) DO NOTHING;

INSERT INTO workspace_members (workspace_id, user_id, role)
SELECT w.id, u.id, v.role
FROM (VALUES ('alice', 'owner'), ('bob', 'admin'), ('charlie', 'member')) AS v (username, role)
JOIN users u ON lower(u.username) = v.username
JOIN users o ON lower(o.username) = 'alice'
JOIN workspaces w ON w.owner_id = o.id AND lower(w.name) = lower('ChatFlow MVP Workspace')
ON CONFLICT (workspace_id, user_id) DO NOTHING;

INSERT INTO channels (workspace_id, name, description, creator_id, type)
SELECT w.id, 'general', 'Company-wide announcements and chat', u.id, 'public'
FROM users u
JOIN workspaces w ON w.owner_id = u.id AND lower(w.name) = lower('ChatFlow MVP Workspace')
WHERE lower(u.username) = 'alice'
ON CONFLICT (workspace_id, (lower(name))) DO NOTHING;

INSERT INTO channel_members (channel_id, user_id, role)
SELECT c.id, u.id, v.role
FROM (VALUES ('alice', 'owner'), ('bob', 'member'), ('charlie', 'member')) AS v (username, role)
JOIN users u ON lower(u.username) = v.username
JOIN users o ON lower(o.username) = 'alice'
JOIN workspaces w ON w.owner_id = o.id AND lower(w.name) = lower('ChatFlow MVP Workspace')
JOIN channels c ON c.workspace_id = w.id AND lower(c.name) = 'general'
ON CONFLICT (channel_id, user_id) DO NOTHING;

-- The welcome message has a fixed id: that is its natural key.
INSERT INTO messages (id, channel_id, user_id, content, type)
SELECT 'c0ffee00-0000-4000-8000-000000000001'::uuid, c.id, u.id, 'Welcome to ChatFlow MVP! 🚀', 'text'
FROM users u
JOIN workspaces w ON w.owner_id = u.id AND lower(w.name) = lower('ChatFlow MVP Workspace')
JOIN channels c ON c.workspace_id = w.id AND lower(c.name) = 'general'
WHERE lower(u.username) = 'alice'
ON CONFLICT (id) DO NOTHING;
