"""chatflow.db.pg_sql_apply (the seed data) against a real PostgreSQL 15 (see pgtest.py)."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path

import pytest
from pgtest import ROOT, fresh_database, psql
from pgtest import run_module as _run_module

FILES = ROOT / "roles" / "chatflow_database" / "files"

# Generated per run: no password, not even a test one, is kept in git.
SEED_SETTINGS = {f"chatflow.seed_password_{name}": secrets.token_urlsafe(18) for name in ("alice", "bob", "charlie")}
ALICE = SEED_SETTINGS["chatflow.seed_password_alice"]


@pytest.fixture
def db(cluster):
    """A fresh chatflow_mvp owned by chatflow_owner for each test."""
    fresh_database(cluster)
    return cluster


def run_module(sock: Path, check: bool = False, **args) -> dict:
    return _run_module("pg_sql_apply", sock, check=check, **args)


def schema(sock: Path) -> None:
    """The schema, through the migration runner."""
    result = _run_module("pg_migrate", sock, path=str(FILES / "migrations"), apply_role="chatflow_owner")
    assert result["rc"] == 0, result.get("msg")


def seed(sock: Path, **kw) -> dict:
    kw.setdefault("settings", SEED_SETTINGS)
    return run_module(sock, path=[str(FILES / "seed.sql")], apply_role="chatflow_owner", skip_unchanged=False, **kw)


# An idempotent file of the kind pg_sql_apply is for: rerunnable statements.
IDEMPOTENT = """
CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v text NOT NULL);
CREATE INDEX IF NOT EXISTS kv_v ON kv (v);
INSERT INTO kv VALUES ('answer', '42') ON CONFLICT (k) DO NOTHING;
"""


@pytest.fixture
def kv_file(tmp_path) -> Path:
    path = tmp_path / "kv.sql"
    path.write_text(IDEMPOTENT)
    return path


def apply_kv(sock: Path, path: Path, **kw) -> dict:
    return run_module(sock, path=[str(path)], apply_role="chatflow_owner", state_key="kv", **kw)


def test_apply_then_rerun_is_skipped_by_the_record(db, kv_file):
    first = apply_kv(db, kv_file)
    assert first["rc"] == 0 and first["changed"] and first["catalog_changed"] and first["rows_written"] == 1
    assert psql(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'kv'") == "chatflow_owner"
    second = apply_kv(db, kv_file)
    assert second["changed"] is False and second["skipped_unchanged"] is True
    assert psql(db, "SELECT count(*) FROM chatflow_meta.sql_apply_state") == "1"


def test_check_mode_reports_drift_and_writes_nothing(db, kv_file):
    apply_kv(db, kv_file)
    psql(db, "DROP INDEX kv_v")
    dry = apply_kv(db, kv_file, check=True)
    assert dry["changed"] is True
    assert "CREATE INDEX IF NOT EXISTS kv_v" in dry["diff"]["after"]
    assert psql(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'kv_v'") == "0"
    repaired = apply_kv(db, kv_file)
    assert repaired["changed"] and psql(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'kv_v'") == "1"
    assert psql(db, "SELECT count(*) FROM kv") == "1"


def test_check_mode_on_an_empty_database_creates_nothing(db, kv_file):
    dry = apply_kv(db, kv_file, check=True)
    assert dry["changed"] is True
    assert psql(db, "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'chatflow_meta')") == "0"


def test_owners_invalid_indexes_and_disabled_triggers_are_repaired(db, kv_file):
    apply_kv(db, kv_file)
    psql(
        db,
        "ALTER TABLE kv OWNER TO postgres;UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'kv_v'::regclass",
    )
    repaired = apply_kv(db, kv_file)
    assert repaired["rc"] == 0, repaired.get("msg")
    assert "ALTER TABLE public.kv OWNER TO chatflow_owner" in repaired["repaired"]
    assert "REINDEX INDEX public.kv_v" in repaired["repaired"]
    assert psql(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'kv'") == "chatflow_owner"
    assert psql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'kv_v'::regclass") == "t"
    assert apply_kv(db, kv_file)["changed"] is False


def test_seed_inserts_once_with_bcrypt_hashes(db):
    schema(db)
    first = seed(db)
    assert first["changed"] and first["rows_written"] == 12
    assert (
        psql(
            db,
            f"SELECT count(*) FROM users WHERE password_hash = crypt('{ALICE}', password_hash) AND username = 'alice'",
        )
        == "1"
    )
    again = seed(db)
    assert again["changed"] is False and again["rows_written"] == 0
    assert ALICE not in json.dumps(first) and ALICE not in json.dumps(again)


def test_a_failing_file_leaves_no_trace_and_names_file_and_line(db, tmp_path):
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE TABLE first_ok (id int);\n\nCREATE TABLE broken (id int REFERENCES nowhere (id));\n")
    bad.chmod(0o644)
    result = run_module(db, path=[str(bad)], state_key="bad")
    assert result["rc"] != 0 and result["failed"]
    assert "bad.sql line 3" in result["msg"]
    assert 'relation "nowhere" does not exist' in result["msg"]
    assert "CREATE TABLE broken" in result["msg"]
    assert psql(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'first_ok'") == "0"


def test_invalid_setting_name_is_rejected_before_connecting(db):
    result = seed(db, settings={"no_dot": "some-value"})
    assert result["failed"] and "settings" in result["msg"] and "prefix.name" in result["msg"]


def test_two_concurrent_seed_runs_insert_once(db):
    schema(db)
    results = []
    threads = [threading.Thread(target=lambda: results.append(seed(db))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r["rc"] == 0 for r in results), results
    assert sorted(r["rows_written"] for r in results) == [0, 12]
    assert psql(db, "SELECT count(*) FROM users") == "3"
