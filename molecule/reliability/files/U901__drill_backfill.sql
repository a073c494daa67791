DROP TABLE IF EXISTS drill_backfill;
