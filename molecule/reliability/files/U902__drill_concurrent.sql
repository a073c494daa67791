DROP TABLE IF EXISTS drill_concurrent;
