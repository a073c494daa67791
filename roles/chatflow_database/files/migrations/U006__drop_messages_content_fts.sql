-- chatflow:no-transaction
-- Down of V006: the text-only full-text index of V002 again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_content_fts
    ON messages USING gin (to_tsvector('english', content));
