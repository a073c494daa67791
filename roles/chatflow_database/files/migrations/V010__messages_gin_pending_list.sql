-- V010: a GIN index buffers new entries in a pending list (fastupdate) that
-- every scan reads in full until VACUUM merges it.  Search asks
-- idx_messages_channel_fts once per channel of the user (channel_id = ANY
-- (...) in a bitmap scan), so the list was read ~60 times per search:
-- measured on 100,000 messages after 12,000 posts, 487 pending pages made one
-- full-text search 609 ms (29,644 buffers); merged, 0.6 ms (14 buffers).
-- That index takes new entries directly (+~0.3 ms per post, measured); the
-- trigram index, scanned once per search and costlier to update directly
-- (+~1 ms per post), keeps a short list (256 kB instead of 4 MB).
-- SET on an index takes a SHARE UPDATE EXCLUSIVE lock: writes go on.
ALTER INDEX idx_messages_channel_fts SET (fastupdate = off);
ALTER INDEX idx_messages_content_trigram SET (gin_pending_list_limit = 256);
SELECT gin_clean_pending_list('idx_messages_channel_fts'::regclass);
