-- chatflow:no-transaction
-- V002: full-text search on messages; queries must use
-- to_tsvector('english', content) @@ websearch_to_tsquery('english', $1).
-- Built CONCURRENTLY so that adding it to a busy database does not block writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_content_fts
    ON messages USING gin (to_tsvector('english', content));
