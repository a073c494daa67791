-- chatflow:no-transaction
-- Down of V008: the full channel/time index of V001 again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_channel_created
    ON messages (channel_id, created_at DESC, id DESC);
