-- chatflow:no-transaction
-- Down of V005.
DROP INDEX CONCURRENTLY IF EXISTS idx_messages_channel_fts;
