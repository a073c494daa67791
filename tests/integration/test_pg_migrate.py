"""chatflow.db.pg_migrate against a real PostgreSQL 15 (see pgtest.py), with the project's migrations."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import sys
import threading
from pathlib import Path

import psycopg2
import pytest
from pgtest import PORT, ROOT, fresh_database, psql, psql_file, run_module, table_checksums

sys.path.insert(0, str(ROOT))
from tools.doc_quotes import quote_for

sys.path.insert(0, str(ROOT / "tools"))
from seed_sql import SEED, seed_schema, seed_schema_fixed

MIGRATIONS = ROOT / "roles/chatflow_database/files/migrations"
# Generated per run: no password, not even a test one, is kept in git.
SEED_SETTINGS = {f"chatflow.seed_password_{name}": secrets.token_urlsafe(18) for name in ("alice", "bob", "charlie")}
VERSIONED = [
    "V001__core_schema.sql",
    "V002__messages_fulltext_index.sql",
    "V003__messages_trigram_index.sql",
    "V004__btree_gin.sql",
    "V005__messages_channel_fts_index.sql",
    "V006__drop_messages_content_fts.sql",
    "V007__messages_channel_live_index.sql",
    "V008__drop_messages_channel_created.sql",
    "V009__row_level_security.sql",
    "V010__messages_gin_pending_list.sql",
]
REPEATABLE = [
    "R__01_channel_stats.sql",
    "R__02_functions.sql",
    "R__03_triggers.sql",
    "R__04_privileges.sql",
    "R__05_row_level_security.sql",
]
LAST = len(VERSIONED)
TOTAL = len(VERSIONED) + len(REPEATABLE)


@pytest.fixture
def db(cluster):
    fresh_database(cluster)
    return cluster


@pytest.fixture
def mig(tmp_path) -> Path:
    """A copy of the project's migrations that a test may edit."""
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, target)
    return target


def migrate(sock: Path, path: Path = MIGRATIONS, check: bool = False, **kw) -> dict:
    kw.setdefault("apply_role", "chatflow_owner")
    return run_module("pg_migrate", sock, check=check, path=str(path), **kw)


def ok(result: dict) -> dict:
    assert result["rc"] == 0, result.get("msg")
    return result


def seed(sock: Path, path: Path = MIGRATIONS) -> None:
    """The project's seed rows, through the module's seed step."""
    ok(
        migrate(
            sock,
            path,
            seed={"seed.sql": (ROOT / "roles/chatflow_database/files/seed.sql").read_text()},
            seed_settings=SEED_SETTINGS,
        )
    )


def canary(sock: Path) -> None:
    """Rows in every table the repairs touch, beyond the seed."""
    psql(
        sock,
        "INSERT INTO direct_messages (conversation_id, sender_id, recipient_id, content) "
        "SELECT gen_random_uuid(), a.id, b.id, 'canary dm' FROM users a, users b "
        "WHERE a.username = 'alice' AND b.username = 'bob';"
        "INSERT INTO audit_logs (action, resource_type) VALUES ('canary', 'test');"
        "INSERT INTO files (user_id, filename, file_url) SELECT id, 'canary.txt', '/f/canary' FROM users "
        "WHERE username = 'alice';"
        "INSERT INTO reactions (message_id, user_id, emoji) SELECT m.id, u.id, '👍' FROM messages m, users u "
        "WHERE u.username = 'bob'",
    )


def count(sock: Path, sql: str) -> int:
    return int(psql(sock, sql))


# -- apply, rerun, bookkeeping ------------------------------------------------------


def test_apply_then_rerun_does_nothing(db):
    first = ok(migrate(db))
    assert first["changed"]
    assert [a["script"] for a in first["applied"]] == VERSIONED + REPEATABLE
    assert first["repeatables"] == REPEATABLE
    assert first["current_version"] == LAST and first["pending"] == []
    assert first["drift"] == [] and first["unmanaged"] == []
    assert count(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 11
    assert psql(db, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'") == "chatflow_owner"
    assert count(db, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'") == 50
    second = ok(migrate(db))
    assert second["changed"] is False
    assert second["applied"] == [] and second["drift"] == [] and second["drift_checked"] is False
    assert second["fingerprint"] == first["fingerprint"]


def test_tracking_table_records_each_file_outside_public(db):
    ok(migrate(db))
    rows = psql(
        db,
        "SELECT string_agg(concat_ws('|', key, version, type, script, length(checksum), success, "
        "applied_by, execution_ms >= 0, applied_at <= now()), E'\\n' ORDER BY type <> 'versioned', "
        "CASE WHEN type = 'versioned' THEN key::int END, key) FROM "
        "chatflow_meta.schema_migrations",
    ).splitlines()
    assert rows[:LAST] == [f"{n}|{n}|versioned|{name}|64|t|postgres|t|t" for n, name in enumerate(VERSIONED, 1)]
    assert [r.split("|")[0] for r in rows[LAST:]] == [
        "R:01_channel_stats",
        "R:02_functions",
        "R:03_triggers",
        "R:04_privileges",
        "R:05_row_level_security",
    ]
    # The checksum is sha256 of the file with line endings normalised.
    expected = hashlib.sha256((MIGRATIONS / VERSIONED[0]).read_bytes().replace(b"\r\n", b"\n")).hexdigest()
    assert psql(db, "SELECT checksum FROM chatflow_meta.schema_migrations WHERE key = '1'") == expected
    psql(
        db,
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'somebody') THEN CREATE ROLE "
        "somebody; END IF; END$$",
    )
    assert psql(db, "SELECT has_schema_privilege('somebody', 'chatflow_meta', 'USAGE')") == "f"
    assert psql(db, "SELECT has_table_privilege('somebody', 'chatflow_meta.schema_migrations', 'INSERT')") == "f"


def test_applied_by_is_recorded(db):
    ok(migrate(db, applied_by="ansible:operator@control"))
    assert psql(db, "SELECT DISTINCT applied_by FROM chatflow_meta.schema_migrations") == "ansible:operator@control"


def test_line_endings_do_not_count_as_a_change(db, mig):
    ok(migrate(db, mig))
    crlf = mig / VERSIONED[0]
    crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))
    assert ok(migrate(db, mig))["changed"] is False


def test_generated_schema_sql_builds_the_same_schema(db):
    """roles/chatflow_database/files/schema.sql run by psql on an empty database equals the migrations (no drift)."""
    run = psql_file(db, ROOT / "roles/chatflow_database/files/schema.sql", role="chatflow_owner")
    assert run.returncode == 0, run.stderr
    report = ok(migrate(db, baseline_version=LAST, drift="report", check=True))
    assert report["baselined"] == list(range(1, LAST + 1))
    assert report["drift"] == [], report["drift"]
    assert report["unmanaged"] == []


# -- check mode ------------------------------------------------------------------------


def test_check_mode_on_an_empty_database_writes_nothing(db):
    dry = ok(migrate(db, check=True))
    assert dry["changed"] is True
    assert [a["script"] for a in dry["applied"]] == VERSIONED + REPEATABLE
    assert dry["pending"] == VERSIONED
    assert "CREATE TABLE users" in dry["diff"]["after"]
    assert (
        count(db, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('chatflow_meta', 'chatflow_migrate_shadow')")
        == 0
    )
    assert (
        count(
            db, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'public'"
        )
        == 0
    )


def test_check_mode_lists_drift_and_pending_and_writes_nothing(db, mig):
    ok(migrate(db, mig))
    psql(db, "DROP INDEX idx_users_status")
    (mig / "V050__add_users_locale.sql").write_text("ALTER TABLE users ADD COLUMN locale text;\n")
    (mig / "R__03_triggers.sql").write_text((mig / "R__03_triggers.sql").read_text() + "\n-- touched\n")
    dry = ok(migrate(db, mig, check=True))
    assert dry["changed"] is True
    assert [a["script"] for a in dry["applied"]] == ["V050__add_users_locale.sql", "R__03_triggers.sql"]
    assert dry["pending"] == ["V050__add_users_locale.sql"]
    assert [(d["kind"], d["object"], d["problem"]) for d in dry["drift"]] == [("index", "idx_users_status", "missing")]
    assert dry["repaired"] == []
    assert count(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_users_status'") == 0
    assert count(db, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'locale'") == 0
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations") == TOTAL


# -- failures ---------------------------------------------------------------------------


def test_a_changed_applied_file_fails_unless_repair_is_asked(db, mig):
    ok(migrate(db, mig))
    before = table_checksums(db)
    path = mig / VERSIONED[0]
    path.write_text(path.read_text().replace("varchar(255) NOT NULL,", "varchar(320) NOT NULL,", 1))
    failed = migrate(db, mig)
    assert failed["rc"] != 0
    assert "V001__core_schema.sql was applied with checksum" in failed["msg"]
    assert "repair_checksums" in failed["msg"]
    assert quote_for(failed["msg"]), f"troubleshooting.md does not quote: {failed['msg']}"
    assert table_checksums(db) == before
    repaired = ok(migrate(db, mig, repair_checksums=True))
    assert repaired["checksum_repaired"] == [VERSIONED[0]] and repaired["changed"]
    assert ok(migrate(db, mig))["changed"] is False


def test_a_failing_file_leaves_no_trace_and_names_file_line_and_statement(db, mig):
    ok(migrate(db, mig))
    (mig / "V050__bad.sql").write_text(
        "CREATE TABLE first_ok (id int);\n\n-- a reference to nowhere\nALTER TABLE users\n    ADD COLUMN x "
        "int REFERENCES nowhere (id);\n"
    )
    failed = migrate(db, mig)
    assert failed["rc"] != 0 and failed["script"] == "V050__bad.sql"
    assert "V050__bad.sql line 4" in failed["msg"]  # where the statement starts
    assert 'relation "nowhere" does not exist' in failed["msg"]
    assert "ALTER TABLE users" in failed["msg"]
    assert count(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'first_ok'") == 0
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations WHERE key = '50'") == 0
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations") == TOTAL


def test_a_failing_no_transaction_file_leaves_no_invalid_index(db, mig):
    ok(migrate(db, mig))
    psql(db, "INSERT INTO audit_logs (action, resource_type) VALUES ('dup', 'x'), ('dup', 'x')")
    (mig / "V050__unique_action.sql").write_text(
        "-- chatflow:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY idx_audit_logs_action_unique ON "
        "audit_logs (action);\n"
    )
    failed = migrate(db, mig)
    assert failed["rc"] != 0 and "could not create unique index" in failed["msg"]
    assert count(db, "SELECT count(*) FROM pg_class WHERE relname = 'idx_audit_logs_action_unique'") == 0
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations WHERE key = '50'") == 0


def test_an_interrupted_no_transaction_file_is_run_again(db):
    ok(migrate(db, target="3"))
    # What a run killed during CREATE INDEX CONCURRENTLY leaves behind.
    psql(
        db,
        "UPDATE chatflow_meta.schema_migrations SET success = false WHERE key = '3';"
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_messages_content_trigram'::regclass",
    )
    again = ok(migrate(db, target="3"))
    assert [a["script"] for a in again["applied"]] == [VERSIONED[2]]
    assert (
        psql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_messages_content_trigram'::regclass") == "t"
    )
    assert psql(db, "SELECT success FROM chatflow_meta.schema_migrations WHERE key = '3'") == "t"
    assert ok(migrate(db, target="3"))["changed"] is False


def test_file_problems_are_reported_before_connecting(db, mig):
    (mig / "V2__duplicate.sql").write_text("SELECT 1;\n")
    failed = migrate(db, mig)
    assert failed["rc"] != 0 and "version 2 is also used by" in failed["msg"]
    (mig / "V2__duplicate.sql").unlink()
    (mig / "v5_lowercase.sql").write_text("SELECT 1;\n")
    failed = migrate(db, mig)
    assert failed["rc"] != 0 and "not a migration file name" in failed["msg"]
    assert count(db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'chatflow_meta'") == 0


def test_existing_tables_without_history_are_refused_without_a_baseline(db):
    psql(db, "CREATE TABLE users (id int)")
    failed = migrate(db)
    assert failed["rc"] != 0 and "baseline_version" in failed["msg"]
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations") == 0


# -- concurrency and the lock ----------------------------------------------------------


def test_two_concurrent_runs_apply_each_file_once(db):
    results = []
    threads = [threading.Thread(target=lambda: results.append(migrate(db))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r["rc"] == 0 for r in results), [r.get("msg") for r in results]
    assert sorted(len(r["applied"]) for r in results) == [0, TOTAL]
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations") == TOTAL


def test_a_held_lock_fails_after_lock_wait_naming_the_holder(db):
    holder = psycopg2.connect(host=str(db), port=PORT, user="postgres", dbname="chatflow_mvp")
    holder.autocommit = True
    try:
        cur = holder.cursor()
        cur.execute(
            "SELECT pg_advisory_lock(hashtext('chatflow.db.pg_migrate:chatflow_meta.schema_migrations')::bigint)"
        )
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        failed = migrate(db, lock_wait=1)
        assert failed["rc"] != 0
        assert "another migration run holds the migration lock" in failed["msg"]
        assert f"pid {pid}" in failed["msg"]
        assert quote_for(failed["msg"]), f"troubleshooting.md does not quote: {failed['msg']}"
    finally:
        holder.close()
    assert ok(migrate(db))["changed"]


# -- rollback ----------------------------------------------------------------------------


def test_rollback_to_a_version_and_forward_again(db):
    ok(migrate(db))
    seed(db)
    before = table_checksums(db)
    back = ok(migrate(db, state="rolled_back", target="1"))
    assert [r["script"] for r in back["rolled_back"]] == ["U" + v[1:] for v in reversed(VERSIONED[1:])]
    assert back["current_version"] == 1 and back["pending"] == VERSIONED[1:]
    assert count(db, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_messages_content_%'") == 0
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations WHERE key ~ '^[0-9]+$' AND key <> '1'") == 0
    assert table_checksums(db) == before
    assert ok(migrate(db, state="rolled_back", target="1"))["changed"] is False
    forward = ok(migrate(db))
    assert [a["script"] for a in forward["applied"]] == VERSIONED[1:] + REPEATABLE
    assert count(db, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_messages_content_%'") == 1
    assert count(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_messages_channel_fts'") == 1
    assert table_checksums(db) == before
    assert ok(migrate(db))["changed"] is False


def test_rollback_to_zero_and_rebuild(db):
    ok(migrate(db))
    back = ok(migrate(db, state="rolled_back", target="0"))
    assert len(back["rolled_back"]) == LAST
    assert (
        count(
            db,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = "
            "'public' AND relkind IN ('r', 'm')",
        )
        == 0
    )
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations") == 0
    assert len(ok(migrate(db))["applied"]) == TOTAL


def test_rollback_without_a_down_file_fails_before_changing_anything(db, mig):
    (mig / "V050__no_down.sql").write_text("CREATE TABLE extra (id int);\n")
    ok(migrate(db, mig))
    failed = migrate(db, mig, state="rolled_back", target="2")
    assert failed["rc"] != 0 and "no down file for V50 (V050__no_down.sql)" in failed["msg"]
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations WHERE key IN ('8', '50')") == 2


def test_rollback_in_check_mode_writes_nothing(db):
    ok(migrate(db))
    dry = ok(migrate(db, state="rolled_back", target="0", check=True))
    assert dry["changed"] and len(dry["rolled_back"]) == LAST
    assert count(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 11
    assert count(db, "SELECT count(*) FROM chatflow_meta.schema_migrations") == TOTAL


def test_migrate_to_a_target_leaves_the_rest_pending(db):
    first = ok(migrate(db, target="1"))
    assert [a["script"] for a in first["applied"]] == VERSIONED[:1] + REPEATABLE
    assert first["pending"] == VERSIONED[1:] and first["current_version"] == 1
    assert ok(migrate(db, target="1"))["changed"] is False


# -- drift repair ----------------------------------------------------------------------

# name: (breakage, {check query: expected}, {(kind, object)} expected in drift, data kept exactly)
DRIFT_CASES = {
    "dropped and invalid indexes": (
        "DROP INDEX idx_users_status; DROP INDEX idx_channel_stats_channel_id;"
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_messages_user_id'::regclass",
        {
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('idx_users_status', "
            "'idx_channel_stats_channel_id')": "2",
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_messages_user_id'::regclass": "t",
        },
        {("index", "idx_users_status"), ("index", "idx_messages_user_id"), ("index", "idx_channel_stats_channel_id")},
        True,
    ),
    "unique index replaced by a plain one": (
        "DROP INDEX idx_users_email; CREATE INDEX idx_users_email ON users (email)",
        {
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_users_email'": (
                "CREATE UNIQUE INDEX idx_users_email ON public.users USING btree (lower((email)::text))"
            )
        },
        {("index", "idx_users_email")},
        True,
    ),
    "primary key and unique constraint dropped": (
        "ALTER TABLE reactions DROP CONSTRAINT reactions_pkey;"
        "ALTER TABLE channel_members DROP CONSTRAINT channel_members_channel_id_user_id_key",
        {
            # Attached with USING INDEX: the index built concurrently now has the constraint's name.
            "SELECT string_agg(co.conname || '=' || i.relname, ',' ORDER BY co.conname) FROM pg_constraint co "
            "JOIN pg_class i ON i.oid = co.conindid WHERE co.conname IN ('reactions_pkey', "
            "'channel_members_channel_id_user_id_key')": "channel_members_channel_id_user_id_key="
            "channel_members_channel_id_user_id_key,reactions_pkey=reactions_pkey",
            "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_repair'": "0",
        },
        {
            ("constraint", "reactions.reactions_pkey"),
            ("constraint", "channel_members.channel_members_channel_id_user_id_key"),
        },
        True,
    ),
    "dropped and disabled triggers": (
        "DROP TRIGGER trigger_channels_sync_type ON channels;"
        "ALTER TABLE users DISABLE TRIGGER trigger_update_users_timestamp",
        {
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'trigger_channels_sync_type'": "1",
            "SELECT tgenabled FROM pg_trigger WHERE tgname = 'trigger_update_users_timestamp'": "O",
        },
        {("trigger", "channels.trigger_channels_sync_type"), ("trigger", "users.trigger_update_users_timestamp")},
        True,
    ),
    "extension dropped with its index": (
        "DROP EXTENSION pg_trgm CASCADE",
        {
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'": "1",
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_messages_content_trigram'": "1",
        },
        {("extension", "pg_trgm"), ("index", "idx_messages_content_trigram")},
        True,
    ),
    "matview dropped": (
        "DROP MATERIALIZED VIEW channel_stats",
        {
            "SELECT count(*) FROM channel_stats": "1",
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_channel_stats_channel_id'": "1",
        },
        {("view", "channel_stats")},
        False,
    ),
    "matview redefined": (
        "DROP MATERIALIZED VIEW channel_stats; CREATE MATERIALIZED VIEW channel_stats AS SELECT id AS "
        "channel_id FROM channels",
        {"SELECT total_messages FROM channel_stats": "1"},
        {("view", "channel_stats")},
        False,
    ),
    "constraints dropped": (
        "ALTER TABLE messages DROP CONSTRAINT messages_content_length;"
        "ALTER TABLE workspaces DROP CONSTRAINT workspaces_owner_id_fkey;"
        "ALTER TABLE users DROP CONSTRAINT users_status_check;"
        "ALTER TABLE users ADD CONSTRAINT users_status_check CHECK (status IS NOT NULL)",
        {
            "SELECT count(*) FROM pg_constraint WHERE conname IN ('messages_content_length', "
            "'workspaces_owner_id_fkey')": "2",
            # PostgreSQL may deparse the restored IN list with the casts moved; the values are what count.
            "SELECT pg_get_constraintdef(oid) ~ 'ANY.*online.*offline.*away.*dnd' FROM pg_constraint "
            "WHERE conname = 'users_status_check'": "t",
        },
        {
            ("constraint", "messages.messages_content_length"),
            ("constraint", "workspaces.workspaces_owner_id_fkey"),
            ("constraint", "users.users_status_check"),
        },
        True,
    ),
    "columns altered": (
        "ALTER TABLE users ALTER COLUMN status DROP NOT NULL, ALTER COLUMN status DROP DEFAULT;"
        "DROP MATERIALIZED VIEW channel_stats;"
        "ALTER TABLE messages ALTER COLUMN created_at TYPE timestamp;"
        "CREATE MATERIALIZED VIEW channel_stats AS SELECT c.id AS channel_id, c.name, count(m.id) AS total_messages, "
        "count(DISTINCT m.user_id) AS active_users, max(m.created_at) AS last_message_at FROM channels c "
        "LEFT JOIN messages m ON m.channel_id = c.id AND m.deleted_at IS NULL WHERE NOT c.is_archived GROUP "
        "BY c.id, c.name;"
        "CREATE UNIQUE INDEX idx_channel_stats_channel_id ON channel_stats (channel_id)",
        {
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'messages' AND column_name = "
            "'created_at'": "timestamp with time zone",
            "SELECT is_nullable || column_default FROM information_schema.columns WHERE table_name = 'users' "
            "AND column_name = 'status'": "NO'offline'::character varying",
        },
        {("column", "users.status"), ("column", "messages.created_at"), ("view", "channel_stats")},
        False,
    ),
    "column dropped": (
        "ALTER TABLE users DROP COLUMN bio",
        {"SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'bio'": "1"},
        {("column", "users.bio")},
        False,
    ),
    "table dropped": (
        "DROP TABLE files",
        {
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'files'": "3",
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'files'::regclass": "4",
        },
        {("table", "files")},
        False,
    ),
    "function body replaced": (
        "CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
        {"SELECT prosrc LIKE '%clock_timestamp()%' FROM pg_proc WHERE proname = 'set_updated_at'": "t"},
        {("function", "public.set_updated_at()")},
        True,
    ),
    "owners handed away": (
        "ALTER TABLE messages OWNER TO postgres; ALTER MATERIALIZED VIEW channel_stats OWNER TO postgres;"
        "ALTER FUNCTION set_updated_at() OWNER TO postgres",
        {
            "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')": "chatflow_owner",
            "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'set_updated_at'": "chatflow_owner",
        },
        {("table", "messages"), ("view", "channel_stats"), ("function", "public.set_updated_at()")},
        True,
    ),
    "privileges given to PUBLIC": (
        "GRANT ALL ON users TO PUBLIC; GRANT EXECUTE ON FUNCTION refresh_channel_stats() TO PUBLIC",
        {
            "SELECT has_table_privilege('somebody', 'users', 'SELECT')": "f",
            "SELECT has_function_privilege('somebody', 'refresh_channel_stats()', 'EXECUTE')": "f",
        },
        {("acl", "table public.users"), ("acl", "function public.refresh_channel_stats()")},
        True,
    ),
}


@pytest.mark.parametrize("case", DRIFT_CASES, ids=list(DRIFT_CASES))
def test_drift_is_repaired_and_rows_kept(db, case):
    breakage, checks, expected, exact = DRIFT_CASES[case]
    ok(migrate(db))
    seed(db)
    canary(db)
    psql(
        db,
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'somebody') THEN CREATE ROLE "
        "somebody; END IF; END$$",
    )
    psql(db, breakage)
    before = table_checksums(db)
    # A column type change rewrites the table: only when asked for (see the test after this one).
    repaired = ok(migrate(db, rewrite=case == "columns altered"))
    assert repaired["changed"] and repaired["drift_checked"], repaired
    found = {(d["kind"], d["object"]) for d in repaired["drift"]}
    assert expected <= found, repaired["drift"]
    assert repaired["repaired"] and repaired["applied"] == []
    for query, want in checks.items():
        assert psql(db, query) == want, query
    after = table_checksums(db)
    if exact:
        assert after == before
    else:  # the breakage itself changed a table's shape: every row is still there
        assert {t: after[t].split(":")[0] for t in before} == {t: v.split(":")[0] for t, v in before.items()}
    again = ok(migrate(db, force_drift_check=True))
    assert again["changed"] is False and again["drift"] == [], again["drift"]


def test_a_drifted_column_type_is_reported_not_rewritten_unless_asked(db):
    """A routine run never rewrites a table under an exclusive lock: the type change is
    reported (deferred, with its statement and a warning) on every run, the other repairs go
    ahead, and rewrite=true applies it."""
    ok(migrate(db))
    seed(db)
    canary(db)
    psql(
        db,
        "DROP MATERIALIZED VIEW channel_stats; ALTER TABLE messages ALTER COLUMN created_at TYPE timestamp;"
        "ALTER TABLE users ALTER COLUMN status DROP DEFAULT",
    )
    type_of = (
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'messages' AND column_name = 'created_at'"
    )
    routine = ok(migrate(db))
    assert psql(db, type_of) == "timestamp without time zone"
    assert [d["object"] for d in routine["deferred"]] == ["messages.created_at"]
    assert "exclusive lock" in routine["deferred"][0]["problem"]
    assert "exclusive lock" in json.dumps(routine.get("warnings", [])), routine.get("warnings")
    assert not any("TYPE" in s for s in routine["repaired"])
    assert psql(db, "SELECT column_default FROM information_schema.columns WHERE table_name = 'users' "
                    "AND column_name = 'status'") == "'offline'::character varying"  # fmt: skip
    assert psql(db, "SELECT count(*) FROM pg_matviews WHERE matviewname = 'channel_stats'") == "1"
    again = ok(migrate(db))
    assert [d["object"] for d in again["deferred"]] == ["messages.created_at"] and again["drift_checked"]
    asked = ok(migrate(db, rewrite=True))
    assert psql(db, type_of) == "timestamp with time zone"
    assert asked["deferred"] == [] and any("TYPE" in s for s in asked["repaired"])
    assert ok(migrate(db, force_drift_check=True))["drift"] == []


def test_drift_report_mode_changes_nothing(db):
    ok(migrate(db))
    psql(db, "DROP INDEX idx_users_status")
    report = ok(migrate(db, drift="report"))
    assert report["changed"] is False and report["repaired"] == []
    assert [(d["kind"], d["object"]) for d in report["drift"]] == [("index", "idx_users_status")]
    assert count(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_users_status'") == 0


def test_unmanaged_objects_are_reported_and_kept(db):
    ok(migrate(db))
    psql(
        db,
        "CREATE INDEX hotfix_messages_pinned ON messages (channel_id) WHERE is_pinned; CREATE TABLE scratch (id int)",
    )
    result = ok(migrate(db))
    assert result["changed"] is False
    assert set(result["unmanaged"]) == {"index hotfix_messages_pinned", "table scratch"}
    assert count(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'hotfix_messages_pinned'") == 1


# -- baseline: a database built by hand from the seed's SQL -------------------------------


@pytest.mark.skipif(not SEED.exists(), reason="../shared/seeds is not beside the project")
@pytest.mark.parametrize("variant", ["as written", "fixed only enough to run"])
def test_a_database_built_from_the_seed_sql_is_adopted(db, tmp_path, variant):
    sql = seed_schema() if variant == "as written" else seed_schema_fixed()
    script = tmp_path / "seed_schema.sql"
    script.write_text(sql)
    psql(db, "CREATE EXTENSION IF NOT EXISTS pgcrypto")  # gen_random_uuid is core; nothing else is assumed
    psql_file(db, script, stop_on_error=False)  # as pasted into psql: errors and all
    psql(
        db,
        "INSERT INTO users (email, username, password_hash) VALUES ('Kept@example.test', 'kept', 'x');"
        "INSERT INTO workspaces (name, owner_id) SELECT 'Kept WS', id FROM users;"
        "INSERT INTO audit_logs (action, resource_type, created_at) VALUES ('kept', 'test', '2026-01-02 03:04:05')",
    )
    rows_before = {t: v.split(":")[0] for t, v in table_checksums(db).items()}

    adopted = ok(migrate(db, baseline_version=1))
    assert adopted["baselined"] == [1] and adopted["changed"]
    assert [a["script"] for a in adopted["applied"]] == VERSIONED[1:] + REPEATABLE
    kinds = {d["kind"] for d in adopted["drift"]}
    assert {"column", "index"} <= kinds
    assert count(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 11
    rows_after = {t: v.split(":")[0] for t, v in table_checksums(db).items()}
    assert {t: n for t, n in rows_after.items() if t in rows_before} == rows_before
    assert psql(db, "SELECT created_at FROM audit_logs WHERE action = 'kept'") == "2026-01-02 03:04:05+00"
    assert psql(
        db, "SELECT data_type FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'created_at'"
    ) == ("timestamp with time zone")
    assert (
        psql(db, "SELECT indexdef LIKE 'CREATE UNIQUE INDEX%' FROM pg_indexes WHERE indexname = 'idx_users_email'")
        == "t"
    )
    assert psql(db, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'") == "chatflow_owner"
    assert "function public.update_user_timestamp()" in adopted["unmanaged"]
    # Now it is exactly what the migrations define, and stays so.
    check = ok(migrate(db, drift="report", force_drift_check=True, check=True))
    assert check["drift"] == [] and check["changed"] is False
    assert ok(migrate(db))["changed"] is False


# -- repair on a big live table ------------------------------------------------------------------


class Writers:
    """Clients inserting messages one at a time with lock_timeout = 200ms, as an app under load
    would; every statement that fails is kept."""

    def __init__(self, sock: Path, clients: int = 2):
        self.sock, self.clients = sock, clients
        self.stop_event = threading.Event()
        self.inserted, self.failures = 0, []
        self.threads = [threading.Thread(target=self.write, daemon=True) for _ in range(clients)]

    def write(self) -> None:
        conn = psycopg2.connect(host=str(self.sock), port=PORT, user="postgres", dbname="chatflow_mvp")
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SET lock_timeout = '200ms'")
        cur.execute("SELECT (SELECT id FROM channels LIMIT 1), (SELECT id FROM users LIMIT 1)")
        channel, user = cur.fetchone()
        while not self.stop_event.is_set():
            try:
                cur.execute(
                    "INSERT INTO messages (channel_id, user_id, content) VALUES (%s, %s, 'written during repair')",
                    (channel, user),
                )
                self.inserted += 1
            except psycopg2.Error as exc:
                self.failures.append(str(exc).strip().splitlines()[0])
        conn.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_a_repair_on_a_big_live_table_never_blocks_its_writers_nor_rewrites_it(db, mig):
    """1,000,000 messages generated in the database.  A routine run repairs a dropped index with
    CREATE INDEX CONCURRENTLY while writers with lock_timeout = 200ms insert without one failure,
    and leaves a drifted column type (which would rewrite the table) reported, not changed.  The
    same index built in a transaction, as the repair used to, makes those writers fail."""
    # The two GIN search indexes (and V010, which sets their options) are left out of this copy: on
    # two cores they take minutes to build over a million rows, and a B-tree proves the same.
    left_out = (
        "V003__messages_trigram_index.sql",
        "V005__messages_channel_fts_index.sql",
        "V010__messages_gin_pending_list.sql",
    )
    for name in left_out:
        (mig / name).write_text("SELECT 1;\n")
    ok(migrate(db, mig))
    seed(db, mig)
    psql(
        db,
        "INSERT INTO messages (channel_id, user_id, content) SELECT (SELECT id FROM channels LIMIT 1), "
        "(SELECT id FROM users LIMIT 1), 'message ' || g FROM generate_series(1, 1000000) g; ANALYZE messages",
    )
    assert int(psql(db, "SELECT count(*) FROM messages")) >= 1_000_000
    index, definition = psql(
        db,
        "SELECT indexname || '|' || indexdef FROM pg_indexes WHERE tablename = 'messages' "
        "AND indexdef LIKE '%(user_id)%' AND indexdef NOT LIKE '%UNIQUE%'",
    ).split("|")
    column_type = (
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'messages'::regclass "
        "AND attname = 'type'"
    )
    # The primary key goes with the foreign keys that reference it; a check constraint goes too.
    psql(
        db,
        f"DROP INDEX {index}; ALTER TABLE messages ALTER COLUMN type TYPE varchar(20);"
        "ALTER TABLE messages DROP CONSTRAINT messages_pkey CASCADE, DROP CONSTRAINT messages_content_length",
    )

    with Writers(db) as writers:
        repaired = ok(migrate(db, mig))
    assert writers.failures == [] and writers.inserted > 0, writers.failures[:3]
    done = repaired["repaired"]
    assert any(s.startswith(f"CREATE INDEX CONCURRENTLY {index} ") for s in done), done
    assert 'CREATE UNIQUE INDEX CONCURRENTLY "messages_pkey_repair" ON public.messages USING btree (id)' in done
    assert any(s.endswith('PRIMARY KEY USING INDEX "messages_pkey_repair"') for s in done), done
    assert any(s.endswith("NOT VALID") and "messages_content_length" in s for s in done), done
    assert psql(db, "SELECT bool_and(convalidated) FROM pg_constraint WHERE conrelid = 'messages'::regclass") == "t"
    assert (
        psql(db, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = 'messages'::regclass") != "0"
    )
    assert psql(db, f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{index}'::regclass") == "t"
    assert psql(db, column_type) == "character varying(20)"
    assert [d["object"] for d in repaired["deferred"]] == ["messages.type"]

    psql(db, f"DROP INDEX {index}")
    with Writers(db) as control:
        psql(db, f"BEGIN; {definition}; SELECT pg_sleep(1); COMMIT")
    assert any("lock timeout" in f for f in control.failures), "the control should block the writers"
