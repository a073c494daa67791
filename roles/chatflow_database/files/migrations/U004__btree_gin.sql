-- Down of V004.
DROP EXTENSION IF EXISTS btree_gin;
