"""The failure messages of docs/troubleshooting.md, provoked for real and matched against their quotes.

Each case makes the software fail the way an operator meets it (a refused
connection, a wrong password, a denied statement, a full disk, Redis without
or with the wrong credentials, a refused command) and checks that what it
printed matches the quote the guide gives for it (tools/doc_quotes.py: the
quote's text exactly, with placeholders for ids, paths and numbers). The
migration runner's own messages (checksum mismatch, held lock) are checked the
same way in tests/integration/test_pg_migrate.py.
"""

from __future__ import annotations

import sys

import pytest

from hostlib import REPO

sys.path.insert(0, str(REPO))
from tools.doc_quotes import quote_for, quotes_for

CASES = {
    # name: (how to provoke it as the app's OS user, a word of the quote it must match)
    "refused": ("psql -w -h localhost -p 5439 -U chatflow_app -d chatflow_mvp -c 'SELECT 1'", "Connection refused"),
    "auth failed": (
        "PGPASSWORD=not-the-password psql -h localhost -U chatflow_app -d chatflow_mvp -c 'SELECT 1'",
        "password authentication failed",
    ),
    "superuser over TCP": ("psql -h 127.0.0.1 -U postgres -d postgres -c 'SELECT 1'", "no pg_hba.conf entry"),
    "append-only audit": ('psql "$DATABASE_URL" -c "DELETE FROM audit_logs"', "permission denied for table"),
    "create in public": ('psql "$DATABASE_URL" -c "CREATE TABLE t (x int)"', "permission denied for schema public"),
    "alter a table": ('psql "$DATABASE_URL" -c "ALTER TABLE messages ADD COLUMN x int"', "must be owner"),
    "migration history": (
        'psql "$DATABASE_URL" -c "SELECT * FROM chatflow_meta.schema_migrations"',
        "permission denied for schema chatflow_meta",
    ),
    "statement timeout": (
        "psql \"$DATABASE_URL\" -c \"SET statement_timeout = '50ms'\" -c 'SELECT pg_sleep(1)'",
        "statement timeout",
    ),
    "redis without auth": ("redis-cli -h 127.0.0.1 -p 6379 PING", "NOAUTH"),
    "redis wrong password": ("redis-cli --user chatflow_app --pass not-it --no-auth-warning PING", "WRONGPASS"),
    "redis KEYS": ('redis-cli -u "$REDIS_URL" --no-auth-warning KEYS "*"', "run the 'keys' command"),
    "redis foreign key": ('redis-cli -u "$REDIS_URL" --no-auth-warning GET config:flags', "access one of the keys"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_message_is_quoted_as_printed(sh, case):
    command, word = CASES[case]
    result = sh.app(f"{command} 2>&1 || true")
    printed = result.stdout.strip()
    assert printed, f"{case}: nothing printed"
    found = quotes_for(printed)
    assert found, f"{case}: docs/troubleshooting.md quotes nothing that matches:\n{printed}"
    assert any(word in quote for quote in found), f"{case}: only other entries match ({found}):\n{printed}"


def test_a_full_disk_is_quoted_as_printed(host, sh):
    """A table in a tablespace on a 1 MB tmpfs fills it: PostgreSQL's own words for a full disk."""
    mount = "/mnt/chatflow-full-disk"
    host.check_output(f"mkdir -p {mount} && mount -t tmpfs -o size=1m tmpfs {mount} && chown postgres: {mount}")
    try:
        sh.admin_sql(f"CREATE TABLESPACE chatflow_full_disk LOCATION '{mount}'", db="postgres")
        result = host.run(
            "runuser -u postgres -- psql -X -d postgres -c "
            "'CREATE TABLE full_disk (x text) TABLESPACE chatflow_full_disk' -c "
            "'INSERT INTO full_disk SELECT repeat(md5(g::text), 20) FROM generate_series(1, 20000) g' 2>&1"
        )
        assert result.rc != 0
        quote = quote_for(result.stdout)
        assert quote and "No space left on device" in quote, result.stdout
    finally:
        host.run("runuser -u postgres -- psql -X -d postgres -c 'DROP TABLE IF EXISTS full_disk'")
        host.run("runuser -u postgres -- psql -X -d postgres -c 'DROP TABLESPACE IF EXISTS chatflow_full_disk'")
        host.run(f"umount {mount}; rmdir {mount}")
