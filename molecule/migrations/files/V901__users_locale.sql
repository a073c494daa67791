-- V901 (scenario only): the user's locale, for translated notifications.
ALTER TABLE users ADD COLUMN locale varchar(16) NOT NULL DEFAULT 'en';
CREATE INDEX idx_users_locale ON users (locale) WHERE locale <> 'en';
