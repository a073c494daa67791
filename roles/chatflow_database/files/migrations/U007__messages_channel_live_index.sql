-- chatflow:no-transaction
-- Down of V007.
DROP INDEX CONCURRENTLY IF EXISTS idx_messages_channel_live;
