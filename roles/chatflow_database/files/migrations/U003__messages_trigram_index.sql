-- chatflow:no-transaction
-- Down of V003: drop the trigram index without blocking writes.
DROP INDEX CONCURRENTLY IF EXISTS idx_messages_content_trigram;
