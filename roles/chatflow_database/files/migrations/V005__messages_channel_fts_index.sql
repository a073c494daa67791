-- chatflow:no-transaction
-- V005: search runs inside the channels a user belongs to.  GIN over
-- (channel_id, tsvector) finds the rows that match both at once instead of
-- every match in the database, filtered afterwards; queries:
--   to_tsvector('english', content) @@ websearch_to_tsquery('english', $1)
--   AND channel_id = ANY (ARRAY(SELECT channel_id FROM channel_members WHERE user_id = $2))
-- A search without a channel condition uses it as well (V006 drops the old one).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_channel_fts
    ON messages USING gin (channel_id, to_tsvector('english', content));
