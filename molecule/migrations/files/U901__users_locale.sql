-- Down of V901: the column and its index.
DROP INDEX IF EXISTS idx_users_locale;
ALTER TABLE users DROP COLUMN IF EXISTS locale;
