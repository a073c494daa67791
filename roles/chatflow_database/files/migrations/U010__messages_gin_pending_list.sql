-- Down of V010.
ALTER INDEX idx_messages_channel_fts RESET (fastupdate);
ALTER INDEX idx_messages_content_trigram RESET (gin_pending_list_limit);
