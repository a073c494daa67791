"""chatflow.db.pg_sql_apply against a real PostgreSQL 15 started for the tests.

A throwaway cluster (initdb in a temporary directory, unix socket only, no
TCP) runs as the postgres OS user; the module is executed exactly as Ansible
runs it (a JSON argument file), with the project's schema and seed files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "collections/ansible_collections/chatflow/db/plugins/modules/pg_sql_apply.py"
BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
SEED_SETTINGS = {
    "chatflow.seed_password_alice": "AliceTestPassword123",
    "chatflow.seed_password_bob": "BobTestPassword12345",
    "chatflow.seed_password_charlie": "CharlieTestPassword1",
}

pytestmark = pytest.mark.skipif(not (BINDIR / "initdb").exists(), reason=f"no PostgreSQL server in {BINDIR}")


def as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@pytest.fixture(scope="module")
def cluster():
    tmp = Path(tempfile.mkdtemp(prefix="chatflow-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(
        as_postgres(
            str(BINDIR / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        as_postgres(
            str(BINDIR / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(tmp / "log"),
            "-w",
            "start",
            "-o",
            f"-k {sock} -c listen_addresses='' -p 55432",
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield sock
    finally:
        subprocess.run(
            as_postgres(str(BINDIR / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


def psql(sock: Path, sql: str, db: str = "chatflow_mvp") -> str:
    out = subprocess.run(
        [
            str(BINDIR / "psql"),
            "-h",
            str(sock),
            "-p",
            "55432",
            "-U",
            "postgres",
            "-d",
            db,
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.fixture
def db(cluster):
    """A fresh chatflow_mvp owned by chatflow_owner for each test."""
    psql(cluster, "DROP DATABASE IF EXISTS chatflow_mvp WITH (FORCE)", db="postgres")
    psql(
        cluster,
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chatflow_owner') "
        "THEN CREATE ROLE chatflow_owner NOLOGIN; END IF; END$$",
        db="postgres",
    )
    psql(cluster, "CREATE DATABASE chatflow_mvp OWNER chatflow_owner TEMPLATE template0", db="postgres")
    return cluster


def run_module(sock: Path, check: bool = False, **args) -> dict:
    params = {
        "login_db": "chatflow_mvp",
        "login_unix_socket": str(sock),
        "login_port": 55432,
        "login_user": "postgres",
        "_ansible_check_mode": check,
        "_ansible_diff": True,
        **args,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": params}, handle)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "collections"), *sys.path]))
    proc = subprocess.run(
        [sys.executable, str(MODULE), handle.name], capture_output=True, text=True, env=env, check=False
    )
    os.unlink(handle.name)
    result = json.loads(proc.stdout)
    result["rc"] = proc.returncode
    return result


def schema(sock: Path, **kw) -> dict:
    return run_module(
        sock, path=[str(ROOT / "files/schema.sql")], apply_role="chatflow_owner", state_key="schema", **kw
    )


def seed(sock: Path, **kw) -> dict:
    kw.setdefault("settings", SEED_SETTINGS)
    return run_module(
        sock, path=[str(ROOT / "files/seed.sql")], apply_role="chatflow_owner", skip_unchanged=False, **kw
    )


def test_apply_then_rerun_does_nothing(db):
    first = schema(db)
    assert first["rc"] == 0, first
    assert first["changed"] and first["catalog_changed"]
    assert psql(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "11"
    assert psql(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'messages'") == "chatflow_owner"
    second = schema(db)
    assert second["changed"] is False
    assert second["skipped_unchanged"] is True
    assert second["fingerprint"] == first["fingerprint"]


def test_the_bookkeeping_stays_out_of_public(db):
    schema(db)
    assert psql(db, "SELECT count(*) FROM chatflow_meta.sql_apply_state") == "1"
    assert psql(db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == "11"


def test_check_mode_reports_drift_and_writes_nothing(db):
    schema(db)
    psql(db, "DROP INDEX idx_users_status")
    dry = schema(db, check=True)
    assert dry["changed"] is True
    assert "CREATE INDEX IF NOT EXISTS idx_users_status" in dry["diff"]["after"]
    assert psql(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_users_status'") == "0"


def test_check_mode_on_an_empty_database_creates_nothing(db):
    dry = schema(db, check=True)
    assert dry["changed"] is True
    assert psql(db, "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'chatflow_meta')") == "0"


def test_seed_inserts_once_with_bcrypt_hashes(db):
    schema(db)
    first = seed(db)
    assert first["changed"] and first["rows_written"] == 12
    assert (
        psql(
            db,
            "SELECT count(*) FROM users WHERE password_hash = crypt('AliceTestPassword123', password_hash) "
            "AND username = 'alice'",
        )
        == "1"
    )
    again = seed(db)
    assert again["changed"] is False and again["rows_written"] == 0
    assert "AliceTestPassword123" not in json.dumps(again)


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


def test_two_concurrent_runs_apply_once(db):
    results = []
    threads = [threading.Thread(target=lambda: results.append(schema(db))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r["rc"] == 0 for r in results), results
    assert sorted(r["changed"] for r in results) == [False, True]


# Each case breaks the schema the way an operator or a failed job might, then
# checks that one run repairs it, keeps every row, and the next run is a no-op.
DRIFT_CASES = {
    "dropped index and trigger": (
        "DROP INDEX idx_messages_content_trigram; DROP TRIGGER trigger_update_users_timestamp ON users",
        {
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_messages_content_trigram'": "1",
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'trigger_update_users_timestamp'": "1",
        },
        [],
    ),
    "invalid index and disabled trigger": (
        "ALTER TABLE users DISABLE TRIGGER trigger_update_users_timestamp; "
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_messages_user_id'::regclass",
        {
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_messages_user_id'::regclass": "t",
            "SELECT tgenabled FROM pg_trigger WHERE tgname = 'trigger_update_users_timestamp'": "O",
        },
        ["REINDEX INDEX public.idx_messages_user_id"],
    ),
    "objects handed to another owner": (
        "ALTER TABLE messages OWNER TO postgres; ALTER MATERIALIZED VIEW channel_stats OWNER TO postgres; "
        "ALTER FUNCTION set_updated_at() OWNER TO postgres",
        {
            "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')": "chatflow_owner",
            "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'set_updated_at'": "chatflow_owner",
        },
        [
            "ALTER TABLE public.messages OWNER TO chatflow_owner",
            "ALTER MATERIALIZED VIEW public.channel_stats OWNER TO chatflow_owner",
            "ALTER ROUTINE set_updated_at() OWNER TO chatflow_owner",
        ],
    ),
}


@pytest.mark.parametrize("case", DRIFT_CASES, ids=list(DRIFT_CASES))
def test_drift_is_repaired_and_rows_kept(db, case):
    breakage, checks, repair_statements = DRIFT_CASES[case]
    schema(db)
    seed(db)
    psql(db, breakage)
    repaired = schema(db)
    assert repaired["rc"] == 0, repaired.get("msg")
    assert repaired["changed"] and repaired["catalog_changed"] and not repaired["skipped_unchanged"], repaired
    for statement in repair_statements:
        assert statement in repaired["repaired"], repaired["repaired"]
    for query, expected in checks.items():
        assert psql(db, query) == expected, query
    assert psql(db, "SELECT count(*) FROM users") == "3"
    assert psql(db, "SELECT count(*) FROM messages") == "1"
    assert schema(db)["changed"] is False
