"""Behaviour of a provisioned ChatFlow database host.

Each test exercises the thing itself (a connection, a query plan, a denied
command), not only the file that configures it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guide import run_in_netns
from hostlib import APP_USER, DB, HOST_NAME, INPUTS, PROJECT, inventory_vars
from tools.inputs import defaults

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "users",
    "workspaces",
    "workspace_members",
    "channels",
    "channel_members",
    "messages",
    "reactions",
    "notifications",
    "direct_messages",
    "audit_logs",
    "files",
}
ENV_DIRS = [PROJECT, f"{PROJECT}/backend", f"{PROJECT}/tests"]
REDIS = defaults("chatflow_redis", overrides=inventory_vars())
CACHE = INPUTS["chatflow_redis_cache_enabled"]


# --- services ---------------------------------------------------------------


@pytest.mark.parametrize("unit", ["postgresql@15-main", "redis-server"])
def test_service_running_and_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


# --- PostgreSQL cluster and database -----------------------------------------


def test_database_encoding_and_locale(sh):
    row = sh.admin_sql(
        f"SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = '{DB}'"
    )
    assert row == "UTF8|en_US.UTF-8|en_US.UTF-8"
    # The cluster itself was created with the locale, not only the database.
    template1 = sh.admin_sql("SELECT datcollate FROM pg_database WHERE datname = 'template1'", db="postgres")
    assert template1 == "en_US.UTF-8"
    assert sh.admin_sql("SHOW data_checksums") == "on"
    assert sh.admin_sql("SHOW server_version").startswith("15.")


def test_eleven_tables_seen_by_the_app(sh):
    result = sh.app_sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    assert result.rc == 0, result.stderr
    # A scenario that adds migrations of its own names their tables.
    extra = set(os.environ.get("CHATFLOW_TEST_EXTRA_TABLES", "").split())
    assert set(result.stdout.split()) == TABLES | extra


def test_indexes_exist_and_none_repeats_another(sh):
    names = set(sh.admin_sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'").split())
    assert len(names) >= 30
    for required in (
        "idx_messages_channel_fts",
        "idx_messages_content_trigram",
        "idx_users_email",
        "idx_users_username",
        "idx_channels_workspace_name",
        "idx_channel_stats_channel_id",
        "idx_messages_channel_live",
    ):
        assert required in names
    # A plain btree index whose columns are the leading columns of another
    # index on the same table is dead weight.
    redundant = sh.admin_sql(
        """
        SELECT a.indexrelid::regclass
          FROM pg_index a
          JOIN pg_index b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
          JOIN pg_class c ON c.oid = a.indexrelid
          JOIN pg_am am ON am.oid = c.relam
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND am.amname = 'btree' AND NOT a.indisunique
           AND a.indpred IS NULL AND a.indexprs IS NULL AND b.indexprs IS NULL
           AND a.indnatts <= b.indnatts
           AND (b.indkey::int2[])[0:a.indnatts - 1] = (a.indkey::int2[])
        """
    )
    assert redundant == ""


def test_unique_constraints_are_case_insensitive(sh):
    result = sh.app_sql(
        "BEGIN; INSERT INTO users (email, username, password_hash) "
        "VALUES ('ALICE@chatflow.local', 'alice2', 'x'); ROLLBACK"
    )
    assert result.rc != 0
    assert "idx_users_email" in result.stderr
    result = sh.app_sql(
        "BEGIN; INSERT INTO channels (workspace_id, name, type) "
        "SELECT workspace_id, 'GENERAL', 'public' FROM channels LIMIT 1; ROLLBACK"
    )
    assert result.rc != 0
    assert "idx_channels_workspace_name" in result.stderr


def test_channel_stats_refreshes_concurrently(sh):
    result = sh.app_sql("SELECT refresh_channel_stats(); SELECT total_messages FROM channel_stats LIMIT 1")
    assert result.rc == 0, result.stderr
    assert int(result.stdout.split()[-1]) >= 1


def test_pg_trgm_installed(sh):
    assert sh.admin_sql("SELECT extversion FROM pg_extension WHERE extname = 'pg_trgm'") != ""


@pytest.mark.parametrize(
    "where,index",
    [
        ("to_tsvector('english', content) @@ plainto_tsquery('english', 'welcome')", "idx_messages_channel_fts"),
        ("content ILIKE '%chatflow%'", "idx_messages_content_trigram"),
        ("content % 'Welcom to ChatFlow'", "idx_messages_content_trigram"),
    ],
)
def test_search_finds_the_message_through_its_index(sh, where, index):
    # With one seed row the planner would rightly scan; forbidding seq scans
    # shows that the index matches the query's expression and operator.
    plan = sh.app_sql(f"SET enable_seqscan = off; EXPLAIN SELECT id FROM messages WHERE {where}")
    assert plan.rc == 0, plan.stderr
    assert index in plan.stdout
    found = sh.app_sql(f"SELECT count(*) FROM messages WHERE {where}")
    assert int(found.stdout) >= 1


def test_update_moves_updated_at(sh):
    result = sh.app(
        'a=$(psql "$DATABASE_URL" -XAtc "SELECT updated_at FROM users WHERE username = \'bob\'"); '
        "psql \"$DATABASE_URL\" -XAtc \"UPDATE users SET bio = 'moved' WHERE username = 'bob'\" >/dev/null; "
        "psql \"$DATABASE_URL\" -XAtc \"SELECT updated_at > '$a'::timestamptz FROM users WHERE username = 'bob'\""
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "t"


# --- seed data ----------------------------------------------------------------


def test_seed_counts(sh):
    counts = sh.admin_sql(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM workspaces), "
        "(SELECT count(*) FROM channels), "
        "(SELECT count(*) FROM messages WHERE id = 'c0ffee00-0000-4000-8000-000000000001')"
    )
    assert counts == "3|1|1|1"


def test_welcome_message_has_a_real_rocket(sh):
    # U+1F680, four bytes in UTF-8: not the seed document's mojibake.
    row = sh.admin_sql(
        "SELECT content = 'Welcome to ChatFlow MVP! ' || U&'\\+01F680', octet_length(content) "
        "FROM messages WHERE id = 'c0ffee00-0000-4000-8000-000000000001'"
    )
    assert row == "t|29"


def test_seed_users_have_bcrypt_hashes(sh):
    hashes = sh.admin_sql("SELECT password_hash FROM users ORDER BY username").split()
    assert len(hashes) == 3
    for value in hashes:
        match = re.match(r"^\$2[aby]\$(\d\d)\$", value)
        assert match and int(match.group(1)) >= 10


# --- roles, privileges, access: see test_security.py ------------------------------


# --- the env file and the app's clients ----------------------------------------------


@pytest.mark.parametrize("directory", ENV_DIRS)
def test_env_file_is_private_to_the_app(host, directory):
    env = host.file(f"{directory}/.env.database")
    assert env.exists
    assert env.user == APP_USER
    assert env.mode == 0o600
    content = env.content_string
    for key in (
        "DATABASE_URL=postgresql://chatflow_app:",
        "DB_HOST=",
        "DB_PORT=5432",
        f"DB_NAME={DB}",
        "DB_USER=chatflow_app",
        "DB_PASSWORD=",
        "DB_POOL_MAX=20",
        "DB_STATEMENT_TIMEOUT=30000",
        "REDIS_URL=redis://chatflow_app:",
    ):
        assert key in content


def test_env_file_works_with_psycopg(sh):
    result = sh.app(
        "python3 -c \"import os, psycopg2; c = psycopg2.connect(os.environ['DATABASE_URL']); "
        "cur = c.cursor(); cur.execute('SELECT current_user, count(*) FROM users'); print(*cur.fetchone())\""
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == ["chatflow_app", "3"]


def test_env_file_parameters_connect_too(sh):
    result = sh.app(
        'PGPASSWORD="$DB_PASSWORD" psql -X -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" '
        '-Atc "SELECT current_user"',
        directory="tests",
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "chatflow_app"


def test_app_inserts_a_message_and_publishes_it(sh):
    channel = sh.app_sql("SELECT id FROM channels WHERE name = 'general'").stdout.strip()
    inserted = sh.app_sql(
        "INSERT INTO messages (channel_id, user_id, content) "
        f"SELECT '{channel}', id, 'hello from the test suite' FROM users WHERE username = 'bob' RETURNING id"
    )
    assert inserted.rc == 0, inserted.stderr
    assert re.match(r"^[0-9a-f-]{36}$", inserted.stdout.strip().splitlines()[0])
    published = sh.app_redis("PUBLISH", f"room:{channel}", "hello")
    assert published.rc == 0
    assert published.stdout.strip().isdigit()


def test_app_uses_its_key_prefixes_with_ttl(sh):
    assert sh.app_redis("SET", "session:test", "v", "EX", "60").stdout.strip() == "OK"
    assert sh.app_redis("GET", "session:test").stdout.strip() == "v"
    ttl = int(sh.app_redis("TTL", "session:test").stdout.strip())
    assert 0 < ttl <= 60


def test_redis_persistence_and_eviction(host):
    acl = host.file("/etc/redis/users.acl")
    assert acl.mode == 0o640 and acl.user == "redis"
    assert "nopass" not in acl.content_string
    conf = host.file("/etc/redis/redis.conf").content_string
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^maxmemory-policy volatile-lru$", conf, re.M)
    assert re.search(r"^protected-mode yes$", conf, re.M)
    assert host.file("/var/lib/redis/appendonlydir").is_directory


def _config(sh, port: int, *patterns: str) -> dict[str, str]:
    words = sh.admin_redis("CONFIG", "GET", *patterns, port=port).stdout.splitlines()
    return dict(zip(words[::2], words[1::2], strict=True))


def test_cache_entries_have_a_redis_of_their_own(host, sh):
    """REDIS_CACHE_URL: a second Redis (chatflow_redis_cache_enabled) with its own memory cap,
    an LRU over every key and no persistence; each server refuses the other's keys."""
    cache_port = int(sh.app("echo $REDIS_CACHE_PORT").stdout)
    cache_set = sh.app_redis("SET", "cache:probe", "1", "EX", "5", url="REDIS_CACHE_URL").stdout.strip()
    assert cache_set == "OK"
    if not CACHE:  # the cache entries live in the main Redis
        assert cache_port == INPUTS["chatflow_redis_port"]
        assert not host.service("redis-server@cache").is_running
        assert not host.file("/etc/redis/redis-cache.conf").exists
        return
    assert cache_port == INPUTS["chatflow_redis_cache_port"]
    assert host.service("redis-server@cache").is_running and host.service("redis-server@cache").is_enabled
    config = _config(sh, cache_port, "maxmemory*", "save", "appendonly")
    assert int(config["maxmemory"]) == REDIS["chatflow_redis_cache_maxmemory_mb"] * 1024 * 1024
    assert config["maxmemory-policy"] == REDIS["chatflow_redis_cache_maxmemory_policy"]
    assert config["save"] == "" and config["appendonly"] == "no"
    assert "NOPERM" in sh.app_redis("SET", "session:probe", "1", "EX", "5", url="REDIS_CACHE_URL").stdout
    assert "NOPERM" in sh.app_redis("SET", "cache:probe", "1", "EX", "5").stdout


FILL = """
import json, os, sys
import redis
from dotenv import load_dotenv

load_dotenv(".env.database")
main = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
cache = redis.Redis.from_url(os.environ["REDIS_CACHE_URL"])
probes = ("session:eviction-probe", "refresh:eviction-probe")
for key in probes:
    main.set(key, "kept", ex=3600)
count, value = int(sys.argv[1]), b"x" * 65536
for batch in range(0, count, 64):
    with cache.pipeline(transaction=False) as pipe:
        for n in range(batch, min(batch + 64, count)):
            pipe.set(f"cache:fill:{n}", value, ex=600)
        pipe.execute()
left = list(cache.scan_iter("cache:fill:*", count=1000))
for start in range(0, len(left), 500):
    cache.unlink(*left[start:start + 500])
print(json.dumps({"written": count, "left": len(left), "probes": [main.get(k) for k in probes]}))
"""


def _stats(sh, port: int) -> dict[str, int]:
    info = sh.admin_redis("INFO", port=port).stdout
    return {k: int(v) for k, v in re.findall(r"^(evicted_keys|used_memory|maxmemory):(\d+)\r?$", info, re.M)}


def test_a_full_cache_evicts_cache_entries_never_sessions(sh, local_dir):
    """Cache entries worth twice the cache's maxmemory: the cache evicts its own entries
    (allkeys-lru), the main Redis evicts nothing and its sessions and refresh tokens stay."""
    if not CACHE:
        return  # no cache Redis to fill: REDIS_CACHE_URL is the main one (the test above checks that)
    cache_port, main_port = INPUTS["chatflow_redis_cache_port"], INPUTS["chatflow_redis_port"]
    main_before, cache_before = _stats(sh, main_port), _stats(sh, cache_port)
    script = local_dir / "fill_cache.py"
    script.write_text(FILL)
    count = 2 * REDIS["chatflow_redis_cache_maxmemory_mb"] * 16  # 64 KiB entries: 16 per MiB
    out = json.loads(run_in_netns(HOST_NAME, [sys.executable, str(script), str(count)], local_dir).splitlines()[-1])
    main_after, cache_after = _stats(sh, main_port), _stats(sh, cache_port)
    evicted = cache_after["evicted_keys"] - cache_before["evicted_keys"]
    print(f"cache: wrote {count} x 64 KiB, {out['left']} left, evicted {evicted}; main evicted none")
    assert out["probes"] == ["kept", "kept"]
    assert evicted >= count - out["left"] > count // 3
    assert main_after["evicted_keys"] == main_before["evicted_keys"]


def test_deliverables_installed(host):
    for name in ("schema.sql", "seed.sql", "chatflow_mvp.ts"):
        installed = host.file(f"{PROJECT}/database/{name}")
        assert installed.user == APP_USER
        assert installed.content_string == (REPO / "roles/chatflow_database/files" / name).read_text()
    readme = host.file(f"{PROJECT}/database/README.md").content_string
    assert "schema.sql" in readme and "chatflow_mvp.ts" in readme


# --- the playbook itself -------------------------------------------------------------


def test_dry_run_on_provisioned_host_reports_nothing_and_leaks_no_secret():
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("needs molecule's inventory (runs in `molecule verify`)")
    started = time.monotonic()
    run = subprocess.run(
        ["ansible-playbook", str(REPO / "site.yml"), "-i", inventory, "--check", "--diff"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    recap = re.search(r"changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", run.stdout)
    assert recap and recap.groups() == ("0", "0", "0"), run.stdout[-3000:]
    secrets_dir = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"
    secrets = [p.read_text().split()[0] for p in secrets_dir.iterdir() if p.suffix != ".crt"]
    assert len(secrets) >= 6
    for secret in secrets:
        assert secret not in run.stdout and secret not in run.stderr
    print(f"check-mode rerun: {time.monotonic() - started:.1f}s")
