-- chatflow:no-transaction
-- V008: idx_messages_channel_live (V007) serves the channel/time queries.
DROP INDEX CONCURRENTLY IF EXISTS idx_messages_channel_created;
