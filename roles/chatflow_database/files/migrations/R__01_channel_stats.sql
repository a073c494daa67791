-- Repeatable: the channel activity summary (dashboard cache), rebuilt when
-- this file changes.  It holds no data of its own: dropping it loses nothing.
DROP MATERIALIZED VIEW IF EXISTS channel_stats;

CREATE MATERIALIZED VIEW channel_stats AS
SELECT
    c.id                      AS channel_id,
    c.name,
    count(m.id)               AS total_messages,
    count(DISTINCT m.user_id) AS active_users,
    max(m.created_at)         AS last_message_at
FROM channels c
LEFT JOIN messages m ON m.channel_id = c.id AND m.deleted_at IS NULL
WHERE NOT c.is_archived
GROUP BY c.id, c.name
WITH DATA;

-- Unique, so that REFRESH MATERIALIZED VIEW CONCURRENTLY works.
CREATE UNIQUE INDEX idx_channel_stats_channel_id ON channel_stats (channel_id);
