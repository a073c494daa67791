-- chatflow:no-transaction
-- V007: history pages and unread counts only read live messages.  A partial
-- index (deleted_at IS NULL) answers both without visiting the table: unread
-- counts become index-only scans (measured: 620 -> 231 buffers for a user in
-- 76 channels).  Replaces idx_messages_channel_created (V008); the lookups of
-- the channel_id foreign key (deleting a channel) use idx_messages_channel_fts.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_channel_live
    ON messages (channel_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
