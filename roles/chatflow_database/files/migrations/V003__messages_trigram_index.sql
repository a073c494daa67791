-- chatflow:no-transaction
-- V003: fuzzy search on messages (content ILIKE '%...%', content % 'term',
-- similarity()).  The operator class belongs to pg_trgm, in schema public.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_content_trigram
    ON messages USING gin (content public.gin_trgm_ops);
