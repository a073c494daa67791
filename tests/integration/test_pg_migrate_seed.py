"""chatflow.db.pg_migrate's seed (the project's seed.sql) against a real PostgreSQL 15 (see pgtest.py)."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path

import pytest
from pgtest import ROOT, fresh_database, psql, run_module

FILES = ROOT / "roles" / "chatflow_database" / "files"
SEED = {"seed.sql": (FILES / "seed.sql").read_text()}
USERS = ("alice", "bob", "charlie")
# The rows seed.sql writes on an empty schema: 3 users, 1 workspace, 3 members,
# 1 channel, 3 channel members, the welcome message.
SEED_ROWS = 12


def passwords() -> dict[str, str]:
    """Generated per call: no password, not even a test one, is kept in git."""
    return {f"chatflow.seed_password_{name}": secrets.token_urlsafe(18) for name in USERS}


@pytest.fixture
def db(cluster):
    """A fresh chatflow_mvp owned by chatflow_owner for each test."""
    fresh_database(cluster)
    return cluster


def migrate(sock: Path, settings: dict, check: bool = False, **kw) -> dict:
    kw.setdefault("seed", SEED)
    return run_module(
        "pg_migrate",
        sock,
        check=check,
        path=str(FILES / "migrations"),
        apply_role="chatflow_owner",
        seed_settings=settings,
        **kw,
    )


def ok(result: dict) -> dict:
    assert result["rc"] == 0, result.get("msg")
    return result


def hash_matches(sock: Path, user: str, password: str) -> bool:
    sql = f"SELECT password_hash = crypt('{password}', password_hash) FROM users WHERE username = '{user}'"
    return psql(sock, sql) == "t"


def test_seed_inserts_once_with_bcrypt_hashes(db):
    settings = passwords()
    first = ok(migrate(db, settings))
    assert first["changed"] and first["seed_rows"] == SEED_ROWS and first["seeded"] == ["seed.sql"]
    for user in USERS:
        assert hash_matches(db, user, settings[f"chatflow.seed_password_{user}"])
    assert psql(db, "SELECT left(password_hash, 7) FROM users WHERE username = 'bob'") == "$2a$12$"
    again = ok(migrate(db, settings))
    assert again["changed"] is False and again["seed_rows"] == 0 and again["seeded"] == ["seed.sql"]
    for secret in settings.values():
        assert secret not in json.dumps(first) and secret not in json.dumps(again)


def test_a_deleted_seed_user_comes_back(db):
    settings = passwords()
    ok(migrate(db, settings))
    psql(
        db,
        "DELETE FROM channel_members; DELETE FROM workspace_members WHERE user_id IN "
        "(SELECT id FROM users WHERE username = 'charlie'); DELETE FROM users WHERE username = 'charlie'",
    )
    back = ok(migrate(db, settings))
    assert back["changed"] and back["seed_rows"] == 1 + 1 + 3  # the user, its membership, 3 channel members
    assert psql(db, "SELECT count(*) FROM users") == "3"
    assert hash_matches(db, "charlie", settings["chatflow.seed_password_charlie"])


def test_a_changed_seed_password_applies_and_only_that_one(db):
    settings = passwords()
    ok(migrate(db, settings))
    alice_before = psql(db, "SELECT password_hash FROM users WHERE username = 'alice'")
    changed = dict(settings, **{"chatflow.seed_password_bob": secrets.token_urlsafe(18)})
    result = ok(migrate(db, changed))
    assert result["changed"] and result["seed_rows"] == 1
    assert hash_matches(db, "bob", changed["chatflow.seed_password_bob"])
    assert not hash_matches(db, "bob", settings["chatflow.seed_password_bob"])
    assert psql(db, "SELECT password_hash FROM users WHERE username = 'alice'") == alice_before


def test_check_mode_on_an_empty_database_counts_the_rows_and_writes_nothing(db):
    dry = ok(migrate(db, passwords(), check=True))
    assert dry["changed"] and dry["seed_rows"] == SEED_ROWS
    assert psql(db, "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'chatflow_meta')") == "0"


def test_without_seed_no_rows_are_written(db):
    result = ok(migrate(db, {}, seed=None))
    assert result["seeded"] == [] and result["seed_rows"] == 0
    assert psql(db, "SELECT count(*) FROM users") == "0"


def test_a_failing_seed_names_file_and_line_and_leaves_no_row(db):
    settings = passwords()
    ok(migrate(db, settings, seed=None))
    bad = {
        "bad.sql": "INSERT INTO audit_logs (action, resource_type) VALUES ('first', 'test');\n\n"
        "INSERT INTO nowhere VALUES (1);\n"
    }
    result = migrate(db, settings, seed=bad)
    assert result["rc"] != 0 and result["failed"]
    assert "bad.sql line 3" in result["msg"] and 'relation "nowhere" does not exist' in result["msg"]
    assert psql(db, "SELECT count(*) FROM audit_logs") == "0"


@pytest.mark.parametrize(
    "args,message",
    [
        ({"seed_settings": {"no_dot": "x"}}, "seed_settings: 'no_dot' is not a valid custom setting name"),
        ({"seed": {"../seed.sql": "SELECT 1;"}}, "seed: '../seed.sql' is not a file name ending in .sql"),
        ({"seed": {"empty.sql": "-- nothing\n"}}, "seed: empty.sql holds no statement"),
    ],
    ids=["setting name", "path as key", "empty file"],
)
def test_bad_seed_input_is_refused_before_connecting(db, args, message):
    result = migrate(db, args.pop("seed_settings", passwords()), **args)
    assert result["failed"] and message in result["msg"], result["msg"]
    assert psql(db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'chatflow_meta'") == "0"


def test_two_concurrent_runs_seed_once(db):
    settings = passwords()
    results = []
    threads = [threading.Thread(target=lambda: results.append(migrate(db, settings))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r["rc"] == 0 for r in results), [r.get("msg") for r in results]
    assert sorted(r["seed_rows"] for r in results) == [0, SEED_ROWS]
    assert psql(db, "SELECT count(*) FROM users") == "3"
