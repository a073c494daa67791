-- V004: btree_gin (trusted, ships with PostgreSQL), so that one GIN index can
-- hold a B-tree column (channel_id) beside the text search vector (V005).
-- V004-V008 shape the indexes to the chat workload (docs/indexes_explained.md);
-- `make bench` measured them and tests/integration/test_query_plans.py holds them.
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;
