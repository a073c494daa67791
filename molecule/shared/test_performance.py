"""Pooling and host-sized tuning as the provisioned host has them.

PgBouncer: loopback only, transaction pooling of 20, SCRAM from the server's
own secrets (no password in its files), the app reaching the database through
DATABASE_POOL_URL.  The server: its memory, WAL, planner and parallel settings
are what roles/chatflow_postgresql computed for this host (its defaults
rendered with the host's memory and CPUs; the formulas themselves are
unit-tested on fixed hosts in tests/unit/test_sizing.py).
"""

from __future__ import annotations

import re

import pytest

from hostlib import PROJECT, secret
from tools.inputs import defaults


def test_pgbouncer_runs_on_loopback_only(host):
    assert host.service("pgbouncer").is_running
    assert host.service("pgbouncer").is_enabled
    listening = host.check_output("ss -Htln 'sport = :6432'")
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()}
    assert addresses == {"127.0.0.1"}, listening


def test_pgbouncer_pools_twenty_connections_per_role_in_transaction_mode(host):
    ini = host.file("/etc/pgbouncer/pgbouncer.ini").content_string
    assert re.search(r"^pool_mode = transaction$", ini, re.M)
    assert re.search(r"^default_pool_size = 20$", ini, re.M)
    assert re.search(r"^auth_type = scram-sha-256$", ini, re.M)


def test_pgbouncer_auth_file_holds_scram_secrets_only(host):
    f = host.file("/etc/pgbouncer/userlist.txt")
    assert (f.user, f.group, f.mode) == ("root", "postgres", 0o640)
    lines = f.content_string.split("\n")
    entries = [line for line in lines if line]
    assert entries and all(re.fullmatch(r'"chatflow_[a-z]+" "SCRAM-SHA-256\$4096:\S+"', e) for e in entries), entries
    assert secret("postgresql_chatflow_app") not in f.content_string


def test_the_app_reaches_the_database_through_the_pool(sh, host):
    env = host.file(f"{PROJECT}/backend/.env.database").content_string
    assert "DB_POOLER=pgbouncer" in env
    assert re.search(r"^DATABASE_POOL_URL=postgresql://chatflow_app:[^@]+@localhost:6432/chatflow_mvp", env, re.M)
    # Through the pool the app is itself (same role, same limits), in a transaction of its own.
    result = sh.app('psql "$DATABASE_POOL_URL" -X -At -c "SELECT current_user, current_setting(\'statement_timeout\')"')
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "chatflow_app|30s"


def test_a_wrong_password_is_refused_by_the_pool(sh):
    result = sh.app(
        'PGPASSWORD=wrong psql "host=127.0.0.1 port=6432 dbname=chatflow_mvp user=chatflow_app" -X -c "SELECT 1"'
    )
    assert result.rc != 0
    assert "authentication failed" in result.stderr


@pytest.fixture(scope="module")
def computed(host):
    """The role's settings for this host: its defaults rendered with the facts
    Ansible gathers (memtotal_mb from /proc/meminfo, the CPUs)."""
    kb = int(re.search(r"MemTotal:\s+(\d+) kB", host.file("/proc/meminfo").content_string).group(1))
    facts = {"memtotal_mb": kb // 1024, "processor_vcpus": int(host.check_output("nproc"))}
    rendered = defaults("chatflow_postgresql", facts=facts)
    return {k.removeprefix("chatflow_postgresql_"): v for k, v in rendered.items()}


@pytest.fixture(scope="module")
def settings(sh):
    rows = sh.admin_sql(
        "SELECT name || '=' || setting || coalesce(unit, '') FROM pg_settings WHERE name IN ("
        "'shared_buffers', 'effective_cache_size', 'work_mem', 'maintenance_work_mem', 'max_wal_size', "
        "'min_wal_size', 'checkpoint_timeout', 'random_page_cost', 'effective_io_concurrency', 'jit', "
        "'max_parallel_workers', 'max_parallel_workers_per_gather', 'max_connections')"
    )
    return dict(line.split("=", 1) for line in rows.splitlines())


def test_memory_settings_are_what_the_role_computed_for_this_host(settings, computed):
    assert int(settings["shared_buffers"].removesuffix("8kB")) * 8 // 1024 == int(computed["shared_buffers_mb"])
    assert int(settings["effective_cache_size"].removesuffix("8kB")) * 8 // 1024 == int(
        computed["effective_cache_size_mb"]
    )
    assert int(settings["work_mem"].removesuffix("kB")) // 1024 == int(computed["work_mem_mb"])
    assert int(settings["maintenance_work_mem"].removesuffix("kB")) // 1024 == int(computed["maintenance_work_mem_mb"])
    assert int(settings["max_connections"]) == int(computed["max_connections"])


def test_wal_planner_and_parallel_settings(settings, computed):
    assert settings["max_wal_size"] == f"{computed['max_wal_size_mb']}MB"
    assert settings["min_wal_size"] == f"{computed['min_wal_size_mb']}MB"
    assert settings["checkpoint_timeout"] == f"{int(computed['checkpoint_timeout_min']) * 60}s"
    assert float(settings["random_page_cost"]) == float(computed["random_page_cost"])
    assert settings["effective_io_concurrency"] == str(computed["effective_io_concurrency"])
    assert settings["jit"] == ("on" if computed["jit"] else "off")
    assert settings["max_parallel_workers"] == str(computed["max_parallel_workers"])
    assert settings["max_parallel_workers_per_gather"] == str(computed["max_parallel_workers_per_gather"])
