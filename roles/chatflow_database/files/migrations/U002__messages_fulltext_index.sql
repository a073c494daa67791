-- chatflow:no-transaction
-- Down of V002: drop the full-text index without blocking writes.
DROP INDEX CONCURRENTLY IF EXISTS idx_messages_content_fts;
