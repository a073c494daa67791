"""Reliability: what the scenario `reliability` left behind, and bad inputs.

Scenario reliability's own tests: its prepare step killed three runs on the fresh host, its side effect ran
a backup/restore drill, wrote canaries, broke the host in ~25 ways, killed a
repair run and repaired it with two concurrent runs, then stopped services.
The shared suite (molecule/shared: test_default, test_security, ...) proves
the host is whole again; these tests prove nothing was lost and each drift case is gone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from hostlib import DB, HOST_NAME, INPUTS, PROJECT, REPO, inventory_vars, run_site, secret
from tools.inputs import defaults

# --- nothing lost -------------------------------------------------------------


def test_canary_rows_survived(sh):
    rows = sh.admin_sql(
        "SELECT count(*) FROM audit_logs WHERE action = 'canary' AND resource_type LIKE 'reliability-%'"
    )
    assert rows == "50"


def test_canary_keys_survived(sh):
    for n in range(1, 21):
        assert sh.app_redis("GET", f"session:canary-{n}").stdout.strip() == f"alive-{n}"
    ttl = int(sh.app_redis("TTL", "presence:canary").stdout.strip())
    assert 0 < ttl <= 86400


def test_restore_drill_scratch_database_matches_the_backup(host):
    before = json.loads(host.check_output("cat /var/tmp/chatflow-drill-before.json"))
    scratch = json.loads(host.check_output("/usr/local/sbin/chatflow-backup fingerprint chatflow_mvp_restore"))
    # chatflow_meta's drift-check state changes on every run by design.
    assert {k: v for k, v in scratch.items() if not k.startswith("chatflow_meta.")} == {
        k: v for k, v in before.items() if not k.startswith("chatflow_meta.")
    }
    assert len(before) >= 11
    assert before["public.messages"]["rows"] >= 300


def _without_meta(fingerprint: dict) -> dict:
    # chatflow_meta's drift-check state changes on every run by design.
    return {k: v for k, v in fingerprint.items() if not k.startswith("chatflow_meta.")}


def _drill_rows(sh, port: int) -> dict[str, int]:
    out = sh.host.check_output(
        f"runuser -u postgres -- psql -XAt -p {port} -d {DB} -c "
        "\"SELECT regexp_replace(content, '-[0-9]+$', ''), count(*) FROM messages"
        " WHERE content LIKE 'pitr-%' GROUP BY 1\""
    )
    return {kind: int(n) for kind, n in (line.split("|") for line in out.splitlines())}


def test_pitr_scratch_cluster_is_the_restore_point(host, sh):
    """Restored to the named point: every row written before it, none after (the mistake undone)."""
    point = json.loads(host.check_output("cat /var/tmp/chatflow-pitr-point.json"))
    pgbr = defaults("chatflow_pgbackrest", overrides=inventory_vars())
    scratch_port = pgbr["chatflow_pgbackrest_scratch_port"]
    # The RPO drill restarted the host since, and the scratch cluster does not start with it (start.conf
    # manual): an operator starts it to look at it again.
    scratch = f"{INPUTS['chatflow_postgresql_version']} {pgbr['chatflow_pgbackrest_scratch_cluster']}"
    assert host.check_output(f"cat /etc/postgresql/{scratch.replace(' ', '/')}/start.conf").split()[-1] == "manual"
    host.check_output(f"pg_ctlcluster {scratch} status >/dev/null || pg_ctlcluster {scratch} start")
    scratch = json.loads(host.check_output(f"/usr/local/sbin/chatflow-backup fingerprint {DB} --port {scratch_port}"))
    assert _without_meta(scratch) == _without_meta(point)
    assert _drill_rows(sh, scratch_port) == {"pitr-before-backup": 200, "pitr-after-backup": 200}
    archive_mode = host.check_output(f"runuser -u postgres -- psql -XAt -p {scratch_port} -c 'SHOW archive_mode'")
    assert archive_mode == "off"


def test_pitr_live_restore_kept_the_data_directory_it_replaced(host, sh):
    version = INPUTS["chatflow_postgresql_version"]
    kept = host.check_output(f"ls -d /var/lib/postgresql/{version}/main.before-restore-* 2>/dev/null || true")
    assert len(kept.split()) == 1
    assert host.file(kept.strip()).user == "postgres"
    # The live cluster went on from the point on a timeline of its own.
    assert int(sh.admin_sql("SELECT timeline_id FROM pg_control_checkpoint()")) >= 2
    assert _drill_rows(sh, INPUTS["chatflow_postgresql_port"]) == {"pitr-before-backup": 200, "pitr-after-backup": 200}


def _drill_report(name: str) -> dict:
    """A report of tools/pitr_drill.py, kept by the side effect on this machine (the host was killed)."""
    return json.loads((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / f"pitr-{name}.json").read_text())


def test_archive_failure_is_visible_and_heals():
    """Archive unwritable: the status says failing, check fails, both logs say so, writes go on; then it heals."""
    report = _drill_report("archive-fault")
    assert report["failing_visible_after_seconds"] is not None, "chatflow-pitr status never said failing"
    assert report["failed_count_during"] > 0
    assert report["write_while_failing"] and report["server_up_while_failing"]
    assert report["check_while_failing"]["rc"] != 0
    assert report["logged"]["postgresql"] and report["logged"]["pgbackrest"], report["logged"]
    assert report["healed_after_seconds"] is not None, "the archive did not catch up once writable"
    assert not report["after"]["failing"] and report["after"]["segments_waiting"] == 0
    assert report["check_after"]["rc"] == 0, report["check_after"]


def test_killed_backup_leaves_a_repository_the_next_backup_and_verify_accept():
    report = _drill_report("killed-backup")
    left = report["left"]
    assert left["partial"] and not left["manifest_complete"], "the backup was not killed in the middle"
    assert left["unit"] == "failed" and left["backup_sessions"] == 0
    assert report["next_backup"]["rc"] == 0 and report["next_backup"]["last"]["type"] == "full"
    assert report["verify"]["rc"] == 0, report["verify"]["output"]
    assert report["repository_status"] == "ok"


def test_rpo_after_losing_the_host():
    """The host killed while a client wrote: the repository gave back every acknowledged row up to a point
    no further back than the archive timeout (plus the asynchronous push), and the host itself, started
    again, kept every acknowledged row."""
    report = _drill_report("rpo")
    timeout = INPUTS["chatflow_pgbackrest_archive_timeout_sec"]
    assert report["archive_timeout_seconds"] == timeout
    assert report["restored"] > 0 and report["holes_before_newest_restored"] == 0
    assert report["rpo_seconds"] <= timeout + 15, report
    assert report["acknowledged_missing_on_restarted_host"] == 0


def test_live_restore_kept_the_previous_database(sh):
    kept = sh.admin_sql(
        "SELECT datname FROM pg_database WHERE datname LIKE 'chatflow_mvp_before_restore_%'", db="postgres"
    )
    assert len(kept.split()) == 1


# --- migrations: killed one applied once, concurrent one applied once ---------


def test_each_migration_applied_exactly_once(sh):
    rows = sh.admin_sql(
        "SELECT version, success FROM chatflow_meta.schema_migrations WHERE version IS NOT NULL ORDER BY 1"
    )
    # The project's versions, then the drill's V901 (killed once) and V902 (two runs at once).
    project = sorted(
        int(p.name[1:].split("__")[0]) for p in (REPO / "roles/chatflow_database/files/migrations").glob("V*__*.sql")
    )
    assert rows.split() == [f"{v}|t" for v in (*project, 901, 902)]


def test_killed_migration_is_whole(sh):
    assert (
        sh.admin_sql("SELECT count(*), count(*) FILTER (WHERE note LIKE 'second half%') FROM drill_backfill")
        == "2000|1000"
    )


def test_concurrent_migration_ran_once(sh):
    assert sh.admin_sql("SELECT count(*) FROM drill_concurrent") == "1"


def test_no_migration_session_or_lock_left(sh):
    assert sh.admin_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0"
    assert sh.admin_sql("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'chatflow_shadow%'") == "0"


def test_dpkg_has_nothing_half_installed(host):
    assert host.check_output("dpkg --audit").strip() == ""


# --- every drift case repaired ------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["idx_users_status", "idx_messages_channel_fts", "idx_messages_content_trigram", "idx_channel_stats_channel_id"],
)
def test_dropped_indexes_are_back_and_valid(sh, name):
    state = sh.admin_sql(
        f"SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = '{name}'"
    )
    # Every one of them is defined by the migrations: missing is a failure.
    assert state == "t", f"{name}: {state or 'missing'}"


def test_extension_matview_trigger_and_constraint_are_back(sh):
    assert sh.admin_sql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'") == "1"
    assert sh.admin_sql("SELECT count(*) FROM pg_matviews WHERE matviewname = 'channel_stats'") == "1"
    assert sh.admin_sql("SELECT count(*) FROM pg_trigger WHERE tgname = 'trigger_update_channels_timestamp'") == "1"
    assert sh.admin_sql("SELECT count(*) FROM pg_constraint WHERE conname = 'channels_type_check'") == "1"


def test_grants_and_attributes_are_back(sh):
    limit = defaults("chatflow_database", overrides=inventory_vars())["chatflow_database_app_conn_limit"]
    assert sh.admin_sql("SELECT rolsuper, rolconnlimit FROM pg_roles WHERE rolname = 'chatflow_app'") == f"f|{limit}"
    assert sh.admin_sql("SELECT has_table_privilege('chatflow_app', 'audit_logs', 'DELETE')") == "f"
    assert sh.admin_sql("SELECT has_table_privilege('chatflow_app', 'audit_logs', 'UPDATE')") == "f"
    assert sh.admin_sql("SELECT has_table_privilege('chatflow_readonly', 'messages', 'SELECT')") == "t"


def test_row_level_security_is_back(sh):
    """A dropped policy, an altered one, RLS disabled on a table and BYPASSRLS given to the request role."""
    assert sh.admin_sql("SELECT count(*) FROM pg_policies WHERE policyname = 'messages_select'") == "1"
    qual = sh.admin_sql("SELECT qual FROM pg_policies WHERE policyname = 'notifications_select'")
    assert "app_user_id()" in qual, qual
    assert sh.admin_sql("SELECT relrowsecurity FROM pg_class WHERE relname = 'direct_messages'") == "t"
    request = INPUTS["chatflow_database_request_role"]
    assert sh.admin_sql(f"SELECT rolbypassrls FROM pg_roles WHERE rolname = '{request}'") == "f"


def test_drifted_password_is_back(host):
    password = secret("postgresql_chatflow_readonly")
    result = host.run(
        f"PGPASSWORD='{password}' psql -XAt -h localhost -U chatflow_readonly -d {DB}"
        " -c 'SELECT count(*) FROM messages'"
    )
    assert result.rc == 0, result.stderr


def test_alter_system_and_lost_handler_are_undone(sh, host):
    assert (
        host.check_output("cat /var/lib/postgresql/15/main/postgresql.auto.conf | grep -v '^#' || true").strip() == ""
    )
    assert sh.admin_sql("SHOW statement_timeout") == "0"
    # work_mem = '1MB' was appended, the file rewritten, the run killed before
    # its handler: the next runs had to notice the unloaded file.
    assert sh.admin_sql("SHOW work_mem") != "1MB"
    assert sh.admin_sql("SELECT count(*) FROM pg_file_settings WHERE name = 'work_mem' AND setting = '1MB'") == "0"
    assert sh.admin_sql("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'") == "0"


def test_redis_runtime_and_files_are_back(sh, host):
    assert sh.admin_redis("CONFIG", "GET", "maxmemory-policy").stdout.split()[1] == "volatile-lru"
    assert sh.admin_redis("CONFIG", "GET", "appendonly").stdout.split()[1] == "yes"
    assert sh.admin_redis("CONFIG", "GET", "maxmemory").stdout.split()[1] != "0"
    users = sh.admin_redis("ACL", "USERS").stdout.split()
    assert "intruder" not in users
    assert "intruder" not in host.file("/etc/redis/users.acl").content_string
    assert "NOPERM" in sh.app_redis("GET", "other:key").stdout + sh.app_redis("GET", "other:key").stderr


def test_the_cache_redis_goes_and_comes_back_with_its_input(host, sh):
    """chatflow_redis_cache_enabled false on a host that has the cache Redis: it is stopped and
    its files removed, REDIS_CACHE_URL points at the main Redis, which then takes cache:* keys;
    true again brings it back (the roles it concerns only, by their tags)."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    tags = ("--tags", "always,chatflow_redis,chatflow_firewall,chatflow_app_env")
    _report, off = run_site(inventory, *tags, "-e", '{"chatflow_redis_cache_enabled": false}')
    assert off.returncode == 0, off.stdout[-3000:]
    assert not host.service("redis-server@cache").is_running
    assert not host.file("/etc/redis/redis-cache.conf").exists
    assert sh.app("echo $REDIS_CACHE_PORT").stdout.strip() == str(INPUTS["chatflow_redis_port"])
    assert sh.app_redis("SET", "cache:off-probe", "1", "EX", "5", url="REDIS_CACHE_URL").stdout.strip() == "OK"
    _report, on = run_site(inventory, *tags)
    assert on.returncode == 0, on.stdout[-3000:]
    assert host.service("redis-server@cache").is_running
    assert sh.app("echo $REDIS_CACHE_PORT").stdout.strip() == str(INPUTS["chatflow_redis_cache_port"])
    assert "NOPERM" in sh.app_redis("SET", "cache:on-probe", "1", "EX", "5").stdout


def test_env_files_are_back(host):
    password = secret("postgresql_chatflow_app")
    for directory in (PROJECT, f"{PROJECT}/backend", f"{PROJECT}/tests"):
        env = host.file(f"{directory}/.env.database")
        assert env.exists
        assert env.mode == 0o600
        assert f"DB_PASSWORD={password}" in env.content_string


def test_services_firewall_and_backup_timer_are_back(host):
    for unit in ("postgresql@15-main", "redis-server", "chatflow-firewall", "chatflow-backup.timer"):
        assert host.service(unit).is_running, unit
        assert host.service(unit).is_enabled, unit
    assert "tcp dport" in host.check_output("nft list table inet chatflow")


def test_backup_sets_are_complete(host):
    sets = json.loads(host.check_output("/usr/local/sbin/chatflow-backup list"))
    assert sets, "no backup set"
    newest = sets[0]
    assert set(newest["files"]) == {"chatflow_mvp.dump", "globals.sql", "redis.rdb"}
    assert host.check_output("stat -c %a /var/backups/chatflow") == "700"
    assert host.run("ls -d /var/backups/chatflow/*.partial").rc != 0


# --- bad inputs: each fails in the preflight, names the variable, changes nothing


def _seed_password() -> str | None:
    seeds = REPO.parent / "shared" / "seeds"
    for path in sorted(seeds.glob("*.txt")) if seeds.exists() else []:
        match = re.search(r"CREATE USER chatflow_app WITH PASSWORD '([^']+)'", path.read_text(encoding="utf-8"))
        if match:
            return match.group(1)
    return None


BAD_INPUTS = {
    # kind: (variables, what the message must name)
    "tls_ciphers_weak": ({"chatflow_tls_ciphers": "ECDHE-RSA-AES128-SHA:AES256-SHA"}, "chatflow_tls_ciphers"),
    "port_out_of_range": ({"chatflow_postgresql_port": 80}, "chatflow_postgresql_port"),
    "port_not_a_number": ({"chatflow_redis_port": "six-three-seven-nine"}, "chatflow_redis_port"),
    "ports_collide": ({"chatflow_redis_port": 5432}, "chatflow_redis_port"),
    "cidr_syntax": ({"chatflow_postgresql_remote_cidrs": ["10.0.0.300/24"]}, "chatflow_postgresql_remote_cidrs"),
    "any_address_without_opt_in": (
        {"chatflow_postgresql_remote_cidrs": ["0.0.0.0/0"]},
        "chatflow_postgresql_allow_any_address",
    ),
    "redis_any_address": ({"chatflow_redis_remote_cidrs": ["::/0"]}, "chatflow_redis_allow_any_address"),
    "relative_path": ({"chatflow_app_env_project_dir": "my-mvp-slack"}, "chatflow_app_env_project_dir"),
    "backup_dir_root": ({"chatflow_backup_dir": "/"}, "chatflow_backup_dir"),
    "identifier": ({"chatflow_database_name": "chatflow-mvp; DROP"}, "chatflow_database_name"),
    "weak_password": (
        {"chatflow_database_app_password": "short1"},  # pragma: allowlist secret
        "chatflow_database_app_password",
    ),
    "single_class_password": ({"chatflow_redis_app_password": "a" * 40}, "chatflow_redis_app_password"),
    "shared_buffers_too_big": (
        {"chatflow_postgresql_shared_buffers_mb": 10_000_000},
        "chatflow_postgresql_shared_buffers_mb",
    ),
    "work_mem_too_big": ({"chatflow_postgresql_work_mem_mb": 10_000_000}, "chatflow_postgresql_work_mem_mb"),
    "redis_memory_too_big": ({"chatflow_redis_maxmemory_mb": 10_000_000}, "chatflow_redis_maxmemory_mb"),
    "pool_above_connection_limit": ({"chatflow_database_app_conn_limit": 10}, "chatflow_database_app_conn_limit"),
    "same_role_twice": ({"chatflow_database_app_role": "chatflow_readonly"}, "_app_role"),
    "eviction_policy": ({"chatflow_redis_maxmemory_policy": "allkeys-lru"}, "chatflow_redis_maxmemory_policy"),
    "cache_port_clash": ({"chatflow_redis_cache_port": 5432}, "chatflow_redis_cache_port"),
    "cache_keys_overlap": ({"chatflow_redis_cache_key_patterns": ["session:*"]}, "chatflow_redis_cache_key_patterns"),
    "request_bypasses_rls": (
        {"chatflow_database_rls_bypass_roles": ["chatflow_app", "chatflow_request"]},
        "chatflow_database_rls_bypass_roles",
    ),
    "socketio_namespace": ({"chatflow_redis_socketio_namespaces": ["chat"]}, "chatflow_redis_socketio_namespaces"),
    "bool_not_bool": ({"chatflow_backup_enabled": "perhaps"}, "chatflow_backup_enabled"),
    "calendar": ({"chatflow_backup_on_calendar": "every second tuesday"}, "chatflow_backup_on_calendar"),
    "keep_zero": ({"chatflow_backup_keep": 0}, "chatflow_backup_keep"),
    "sslmode": ({"chatflow_app_env_db_sslmode": "always"}, "chatflow_app_env_db_sslmode"),
    "key_type": ({"chatflow_tls_key_type": "DSA"}, "chatflow_tls_key_type"),
    "remote_without_tls": (
        {"chatflow_postgresql_remote_cidrs": ["10.9.0.0/24"], "chatflow_postgresql_ssl": False},
        "chatflow_postgresql_ssl",
    ),
    "trust_in_hba": (
        {
            "chatflow_postgresql_hba_extra": [
                {
                    "type": "host",
                    "database": "chatflow_mvp",
                    "user": "chatflow_app",
                    "address": "10.9.0.0/24",
                    "method": "trust",
                }
            ]
        },
        "chatflow_postgresql_hba_extra",
    ),
    "redis_bind_everything": ({"chatflow_redis_bind": ["0.0.0.0"]}, "chatflow_redis_bind"),
    "env_user_root": ({"chatflow_app_env_user": "root"}, "chatflow_app_env_user"),
    "migrations_target": ({"chatflow_database_migrations_target": "newest"}, "chatflow_database_migrations_target"),
    "other_postgresql_version": ({"chatflow_postgresql_version": 16}, "chatflow_postgresql_version"),
    "pooler_beyond_max_connections": (
        {"chatflow_pgbouncer_max_db_connections": 500},
        "chatflow_pgbouncer_max_db_connections",
    ),
    "pooler_tls_without_server_tls": ({"chatflow_postgresql_ssl": False}, "chatflow_pgbouncer_client_tls"),
    "setting_with_a_variable_of_its_own": (
        {"chatflow_postgresql_settings": {"work_mem": "64MB"}},
        "chatflow_postgresql_work_mem_mb",
    ),
    "pitr_retention_zero": ({"chatflow_pgbackrest_retention_full": 0}, "chatflow_pgbackrest_retention_full"),
    "pitr_schedule": (
        {"chatflow_pgbackrest_full_on_calendar": "every full moon"},
        "chatflow_pgbackrest_full_on_calendar",
    ),
    "pitr_repository_in_data_dir": (
        {"chatflow_pgbackrest_repo_path": "/var/lib/postgresql/15/main/backups"},
        "chatflow_pgbackrest_repo_path",
    ),
    "pitr_scratch_port_taken": ({"chatflow_pgbackrest_scratch_port": 6432}, "chatflow_pgbackrest_scratch_port"),
    "pitr_s3_endpoint_address": (
        {
            "chatflow_pgbackrest_repo_type": "s3",
            "chatflow_pgbackrest_s3_endpoint": "10.213.1.1",
            "chatflow_pgbackrest_s3_bucket": "chatflow-pitr",
            "chatflow_pgbackrest_s3_key": "k",
            "chatflow_pgbackrest_s3_key_secret": "s",  # pragma: allowlist secret
        },
        "chatflow_pgbackrest_s3_endpoint",
    ),
    "pitr_s3_without_keys": (
        {
            "chatflow_pgbackrest_repo_type": "s3",
            "chatflow_pgbackrest_s3_endpoint": "s3.example.test",
            "chatflow_pgbackrest_s3_bucket": "chatflow-pitr",
        },
        "chatflow_pgbackrest_s3_key",
    ),
    "parallel_workers_do_not_nest": (
        {"chatflow_postgresql_max_parallel_workers_per_gather": 16},
        "chatflow_postgresql_max_parallel_workers_per_gather",
    ),
    "monitoring_any_address": ({"chatflow_monitoring_cidrs": ["0.0.0.0/0"]}, "chatflow_monitoring_cidrs"),
    "monitoring_port_collision": (
        {
            "chatflow_monitoring_ports": {
                "node": 9100,
                "postgres": 6432,
                "redis": 9121,
                "pgbouncer": 9127,
                "mtail": 3903,
                "prometheus": 9090,
            }
        },
        "chatflow_monitoring_ports",
    ),
    "monitoring_threshold_out_of_range": (
        {"chatflow_monitoring_alert_connections_ratio": 8},
        "chatflow_monitoring_alert_connections_ratio",
    ),
    "monitoring_report_calendar": (
        {"chatflow_monitoring_pgbadger_on_calendar": "after every deploy"},
        "chatflow_monitoring_pgbadger_on_calendar",
    ),
    "restart_limit_never_stops_a_loop": (
        {"chatflow_common_restart_burst": 50, "chatflow_common_restart_interval_sec": 60},
        "chatflow_common_restart_interval_sec",
    ),
}


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """One ansible-playbook run of site.yml with one inventory host per bad
    input, all pointing at the provisioned container: each must stop in the
    preflight before any task changed anything."""
    cases = dict(BAD_INPUTS)
    seed = _seed_password()
    assert seed, "the seed documents (../shared/seeds) must be beside the project: one case uses their password"
    cases["seed_example_password"] = (
        {"chatflow_database_migrator_password": seed},
        "chatflow_database_migrator_password",
    )
    ephemeral = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", REPO / ".state"))
    # The repository's key is not where this host looks for it.
    cases["pitr_lost_key"] = (
        {"chatflow_common_secrets_dir": str(tmp_path_factory.mktemp("no-key"))},
        "chatflow_pgbackrest_cipher_pass",
    )
    hosts = {}
    for kind, (variables, _name) in cases.items():
        hosts[f"bad_{kind}"] = {
            "ansible_connection": "community.docker.docker",
            "ansible_host": HOST_NAME,
            "ansible_user": "root",
            **variables,
        }
    group_vars = {
        # Each host would fingerprint the same container first (read-only, and every case's inputs are
        # new, so a complete run follows): the preflights are what is tested.
        "chatflow_fingerprint_enabled": False,
        "chatflow_common_secrets_dir": str(ephemeral / "secrets"),
        "chatflow_database_secrets_dir": str(ephemeral / "secrets"),
        "chatflow_redis_secrets_dir": str(ephemeral / "secrets"),
        "chatflow_tls_ca_fetch_dir": "",
        "chatflow_database_migrations_dir": str(ephemeral / "migrations"),
    }
    inventory = tmp_path_factory.mktemp("bad-inputs") / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"chatflow_db": {"hosts": hosts, "vars": group_vars}}}}))
    report, _res = run_site(str(inventory), env={"ANSIBLE_FORKS": "10"})
    return cases, report


def test_at_least_fifteen_kinds_of_bad_input(bad_input_runs):
    cases, _report = bad_input_runs
    assert len(cases) >= 15


@pytest.mark.parametrize("kind", [*sorted(BAD_INPUTS), "seed_example_password", "pitr_lost_key"])
def test_bad_input_fails_before_any_change(bad_input_runs, kind):
    cases, report = bad_input_runs
    host_name = f"bad_{kind}"
    expected = cases[kind][1]
    assert report["stats"][host_name]["changed"] == 0
    assert report["stats"][host_name]["failures"] == 1
    failed_task, message = None, ""
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(host_name)
            if not result:
                continue
            assert not result.get("changed"), f"{task['task']['name']} changed something before the failure"
            if result.get("failed") or any(r.get("failed") for r in result.get("results", [])):
                failed_task = task["task"]["name"]
                message = json.dumps(result)
    assert failed_task is not None
    # The failing task is a preflight check (or the argument spec validation).
    assert re.search(r"Reject|Refuse|Validating arguments", failed_task), failed_task
    assert expected in message, f"{kind}: {failed_task}: {message[:600]}"
