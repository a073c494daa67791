-- chatflow:no-transaction
-- V006: idx_messages_channel_fts (V005) serves every full-text query; the
-- text-only index of V002 would only cost writes and space.
DROP INDEX CONCURRENTLY IF EXISTS idx_messages_content_fts;
