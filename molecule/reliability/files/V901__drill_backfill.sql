-- The reliability drill's migration (molecule scenario reliability only): a
-- backfill slow enough to be killed in the middle.  A rerun must find it
-- either fully applied or not at all: 2000 rows, never 1000.
CREATE TABLE drill_backfill (
    id bigint PRIMARY KEY,
    note text NOT NULL
);
INSERT INTO drill_backfill (id, note) SELECT g, 'first half ' || g FROM generate_series(1, 1000) AS g;
SELECT pg_sleep(6);
INSERT INTO drill_backfill (id, note) SELECT g, 'second half ' || g FROM generate_series(1001, 2000) AS g;
