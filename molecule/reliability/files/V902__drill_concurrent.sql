-- Added before two runs start at once: exactly one of them applies it, once.
CREATE TABLE drill_concurrent (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    applied_by text NOT NULL DEFAULT current_user,
    applied_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO drill_concurrent DEFAULT VALUES;
