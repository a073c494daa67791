"""The end state of the migrations scenario: the scenario's V901 applied, nothing drifted, every canary row kept."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import testinfra

HOST_NAME = os.environ.get("CHATFLOW_MIGRATIONS_HOST", "chatflow-molecule-migrations")
REPO_ROOT = Path(__file__).resolve().parents[3]
PROJECT_MIGRATIONS = REPO_ROOT / "roles/chatflow_database/files/migrations"


@pytest.fixture(scope="module")
def sql():
    host = testinfra.get_host(f"docker://{HOST_NAME}")

    def run(query: str) -> str:
        cmd = f"runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -At -d chatflow_mvp -c {shlex.quote(query)}"
        return host.check_output(cmd)

    return run


def test_the_history_holds_each_version_once_and_every_repeatable(sql):
    rows = sql(
        "SELECT string_agg(key || ':' || type || ':' || success, ',' ORDER BY type <> 'versioned', "
        "CASE WHEN type = 'versioned' THEN key::int END, key) FROM chatflow_meta.schema_migrations"
    )
    # The project's files (roles/chatflow_database/files/migrations) plus the story's V901.
    files = sorted(p.name for p in PROJECT_MIGRATIONS.glob("*.sql"))
    versions = [*sorted(int(re.match(r"V(\d+)__", f).group(1)) for f in files if f.startswith("V")), 901]
    repeatables = [re.match(r"R__(.+)\.sql", f).group(1) for f in files if f.startswith("R__")]
    versioned = "".join(f"{v}:versioned:true," for v in versions)
    assert rows == versioned + ",".join(f"R:{r}:repeatable:true" for r in repeatables)
    # The version the side effect rolled back to is the project's last.
    assert (
        'chatflow_migrate_target: "%d"' % versions[-2]
        in (REPO_ROOT / "molecule/migrations/side_effect.yml").read_text()
    )


def test_v901_is_in_place_after_rollback_and_forward(sql):
    assert sql("SELECT column_default FROM information_schema.columns WHERE column_name = 'locale'") == (
        "'en'::character varying"
    )
    assert sql("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_users_locale'") == "1"


def test_every_canary_row_survived(sql):
    assert sql("SELECT count(*) FROM audit_logs WHERE action = 'canary'") == "25"
    assert sql("SELECT count(*) FROM users") == "3"


def test_the_repairs_hold(sql):
    assert sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == "0"
    assert sql("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'") == "0"
    assert sql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'") == "1"
    assert sql("SELECT has_table_privilege('public', 'audit_logs', 'DELETE')") == "f"
    assert sql("SELECT count(*) FROM pg_constraint WHERE conname = 'messages_content_length'") == "1"


def test_no_shadow_schema_is_left_behind(sql):
    assert sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'chatflow_migrate_shadow'") == "0"
