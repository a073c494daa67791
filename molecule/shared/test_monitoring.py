"""Observability: the exporters, the log-derived counters, the alert rules and the reports.

Every expectation comes from the inputs (roles/chatflow_common's shared facts,
roles/chatflow_monitoring's defaults, the scenario's inventory): the ports,
the monitoring networks and the thresholds the rules must use.
"""

from __future__ import annotations

import os
import re
import shlex
import time
import urllib.parse
from pathlib import Path

import yaml

from hostlib import DB, HOST_NAME, inventory_vars, secret
from tools import browser
from tools.inputs import defaults

M = defaults("chatflow_common", "chatflow_postgresql", "chatflow_monitoring", overrides=inventory_vars())
PORTS = {name: int(port) for name, port in M["chatflow_monitoring_ports"].items()}
REMOTE = len(M["chatflow_monitoring_cidrs"]) > 0
# Exporters without TLS stay on loopback whatever the networks (the role's design).
LOOPBACK_ONLY = {"pgbouncer", "mtail"}
# How ss shows a socket bound to every address (IPv4 only, dual-stack, IPv6 only).
ANY_ADDRESS = {"0.0.0.0", "*", "[::]"}
CA = M["chatflow_tls_ca_cert_file"]
MONITOR = M["chatflow_database_monitor_role"]
RULES = "/etc/prometheus/chatflow.rules.yml"
# Prometheus' graph page with one expression in its table tab.
PROMETHEUS_GRAPH = "/classic/graph?g0.expr={expr}&g0.tab=1"


def scrape(host, name: str, path: str = "/metrics") -> str:
    """One exporter's page, fetched on the host as a Prometheus on loopback would (TLS with the CA when remote)."""
    tls = REMOTE and name not in LOOPBACK_ONLY
    url = f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{PORTS[name]}{path}"
    ctx = f"ssl.create_default_context(cafile={CA!r})" if tls else "None"
    code = f"import ssl,urllib.request;print(urllib.request.urlopen({url!r},context={ctx},timeout=20).read().decode())"
    return host.check_output(f"python3 -c {shlex.quote(code)}")


def value(page: str, metric: str, **labels: str) -> float | None:
    """The sum of a metric's samples whose labels include `labels` (None when there is none)."""
    found = None
    for line in page.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != metric:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found = (found or 0.0) + float(m.group(3))
    return found


def wait_for(fn, timeout: float = 30.0, step: float = 1.0):
    """fn() until it returns a truthy value, or its last value after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(step)


def test_exporters_listen_where_the_inputs_say(host):
    """The exporters listen on loopback only; with monitoring networks the TLS ones also on the host's addresses."""
    listening = host.check_output("ss -Hltn")
    for name, port in PORTS.items():
        if name == "prometheus" and not M["chatflow_monitoring_prometheus_enabled"]:
            assert f":{port} " not in listening, f"Prometheus is off but port {port} listens"
            continue
        addrs = set(re.findall(rf"(\S+):{port}\s", listening))
        assert addrs, f"nothing listens on {name}'s port {port}"
        if REMOTE and name not in LOOPBACK_ONLY:
            # Every address (the firewall admits the networks): Go binds 0.0.0.0 as one dual-stack
            # socket, which ss shows as "*".
            assert addrs and addrs <= ANY_ADDRESS, f"{name} listens on {addrs}, expected every address"
        else:
            assert addrs == {"127.0.0.1"}, f"{name} listens on {addrs}, expected loopback only"


def test_every_metric_the_alerts_use_is_exported(host):
    """Each metric named in the rendered rules is on some exporter's page (a rule on a missing metric never fires)."""
    rules = yaml.safe_load(host.file(RULES).content_string)
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    names = {n for e in exprs for n in re.findall(r"\b((?:pg|redis|pgbouncer|node|chatflow)_[a-z0-9_]+)\b", e)}
    pages = {name: scrape(host, name) for name in ("node", "redis", "mtail")}

    # After PostgreSQL restarted (an earlier test or drill), the exporter's first scrape finds its connection
    # broken (pg_up 0, no other series) and reconnects for the next: Prometheus sees one failed scrape.
    def connected():
        page = scrape(host, "postgres")
        return page if value(page, "pg_up") == 1 else None

    pages["postgres"] = wait_for(connected, timeout=45, step=3)
    assert pages["postgres"], "the PostgreSQL exporter did not reach PostgreSQL within 45 s"
    pages["pgbouncer"] = scrape(host, "pgbouncer") if M["chatflow_pgbouncer_enabled"] else ""
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", "\n".join(pages.values()), re.M))
    # Series that exist only once there is something to report.
    conditional = {"chatflow_replication_replay_lag_seconds"}
    if not M["chatflow_pgbackrest_enabled"]:
        conditional |= {"chatflow_pgbackrest_last_backup_timestamp_seconds", "chatflow_pgbackrest_info_ok"}
    missing = names - exported - conditional
    assert not missing, f"the rules use metrics no exporter serves: {sorted(missing)}"
    assert value(pages["postgres"], "pg_up") == 1
    assert value(pages["redis"], "redis_up") == 1


def test_every_redis_is_scraped_through_the_redis_exporter(host):
    """The main Redis, and the cache Redis (when the inputs have one) through /scrape?target=."""
    ports = [M["chatflow_redis_port"]] + ([M["chatflow_redis_cache_port"]] if M["chatflow_redis_cache_enabled"] else [])
    for port in ports:
        page = scrape(host, "redis", f"/scrape?target=redis://127.0.0.1:{port}")
        assert value(page, "redis_up") == 1, port
        assert value(page, "redis_memory_max_bytes") > 0, port


def test_failed_logins_are_counted_per_user_and_source(host):
    """A burst of failed logins moves the counters the burst alert reads, with the user and source named."""
    before = scrape(host, "mtail")
    user = f"guess_{int(time.time())}"
    for _ in range(3):
        host.run(
            f"PGPASSWORD=wrong psql 'host=127.0.0.1 port={M['chatflow_postgresql_port']} dbname={DB} user={user} "
            "sslmode=disable' -c 'SELECT 1'"
        )

    def moved():
        page = scrape(host, "mtail")
        now = value(page, "chatflow_postgresql_auth_failures_all_total") or 0
        was = value(before, "chatflow_postgresql_auth_failures_all_total") or 0
        return page if now - was >= 3 else None

    page = wait_for(moved)
    assert page, "three failed logins did not move chatflow_postgresql_auth_failures_all_total"
    assert value(page, "chatflow_auth_failures_total", service="postgresql", user=user, source="127.0.0.1") >= 3


def test_failed_logins_through_pgbouncer_are_counted(host):
    if not M["chatflow_pgbouncer_enabled"]:
        assert "pgbouncer.log" not in host.file("/etc/default/mtail").content_string
        return
    before = value(scrape(host, "mtail"), "chatflow_pgbouncer_auth_failures_all_total") or 0
    host.run(
        f"PGPASSWORD=wrong psql 'host=127.0.0.1 port={M['chatflow_pgbouncer_port']} dbname={DB} "
        f"user={M['chatflow_database_app_role']} sslmode=disable' -c 'SELECT 1'"
    )
    after = wait_for(
        lambda: (value(scrape(host, "mtail"), "chatflow_pgbouncer_auth_failures_all_total") or 0) > before or None
    )
    assert after, "a failed login through PgBouncer did not move chatflow_pgbouncer_auth_failures_all_total"


def monitor_sql(host, sql: str):
    """psql as the monitoring role over loopback, with its generated password."""
    pw = shlex.quote(secret(f"postgresql_{MONITOR}"))
    conn = f"host=127.0.0.1 port={M['chatflow_postgresql_port']} dbname={DB} user={MONITOR} sslmode=require"
    return host.run(f"PGPASSWORD={pw} psql {shlex.quote(conn)} -X -At -v ON_ERROR_STOP=1 -c {shlex.quote(sql)}")


def test_statement_statistics_count_what_ran(host, sh):
    """pg_stat_statements counts a statement the app ran, and the monitoring role reads it."""
    marker = f"chatflow_probe_{int(time.time())}"
    for _ in range(5):
        sh.app_sql(f"SELECT '{marker}' AS probe")
    # Constants are normalised away ($1): the statement's shape is counted.
    shape = monitor_sql(
        host, "SELECT sum(calls) FROM monitoring.pg_stat_statements WHERE query LIKE 'SELECT $1 AS probe%'"
    )
    assert shape.rc == 0, shape.stderr
    assert int(shape.stdout.strip() or 0) >= 5, shape.stdout
    assert monitor_sql(host, "SHOW track_io_timing").stdout.strip() == "on"


def test_the_monitoring_role_reads_statistics_not_chat_data(host, sh):
    denied = monitor_sql(host, "SELECT count(*) FROM messages")
    assert denied.rc != 0 and "permission denied" in denied.stderr, denied.stdout + denied.stderr
    roles = monitor_sql(
        host,
        f"SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m "
        f"JOIN pg_roles b ON b.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = '{MONITOR}'",
    )
    assert roles.stdout.strip() == "pg_monitor", roles.stdout
    app = sh.app_sql("SELECT count(*) FROM monitoring.pg_stat_statements")
    assert app.rc != 0 and "permission denied" in app.stderr, "the app role reads other sessions' statements"


def test_the_redis_monitor_user_runs_info_and_touches_no_key(sh):
    user = M["chatflow_redis_monitor_user"]
    assert sh.admin_redis("ACL", "DRYRUN", user, "INFO").stdout.strip() == "OK"
    for cmd in (
        ["GET", "session:x"],
        ["SET", "cache:x", "1"],
        ["KEYS", "*"],
        ["FLUSHALL"],
        ["CONFIG", "SET", "maxmemory", "1"],
    ):
        out = sh.admin_redis("ACL", "DRYRUN", user, *cmd).stdout
        assert out.strip() != "OK", f"{user} may run {cmd}"


def test_files_with_a_password_are_root_only(host):
    paths = ["/etc/default/prometheus-postgres-exporter", "/etc/default/prometheus-redis-exporter"]
    if M["chatflow_pgbouncer_enabled"]:
        paths.append("/etc/chatflow/monitoring/pgbouncer-exporter.env")
    for path in paths:
        f = host.file(path)
        assert f.exists and f.user == "root" and f.mode == 0o600, f"{path}: {f.user} {oct(f.mode)}"


def promtool_cases() -> list[dict]:
    """promtool test cases from the thresholds: each alert fires just past its threshold and stays silent below."""
    conn, role = (
        float(M["chatflow_monitoring_alert_connections_ratio"]),
        float(M["chatflow_monitoring_alert_role_connections_ratio"]),
    )
    waiting = int(M["chatflow_monitoring_alert_pgbouncer_waiting_clients"])
    logins = int(M["chatflow_monitoring_alert_failed_logins"])
    mem = float(M["chatflow_monitoring_alert_redis_memory_ratio"])
    days = float(M["chatflow_monitoring_alert_certificate_days"])
    lag = float(M["chatflow_monitoring_alert_replication_lag_sec"])
    disk = float(M["chatflow_monitoring_alert_disk_free_ratio"])
    # 100 connections allowed; "hot" uses one more than the threshold, "cool" one fewer.
    hot, cool = int(conn * 100) + 1, int(conn * 100) - 1
    rhot, rcool = int(role * 50) + 1, int(role * 50) - 1
    per_step = logins + 1  # failed logins per minute: the 5-minute increase passes the threshold at once
    return [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'pg_stat_activity_count{instance="hot"}', "values": f"{hot}x10"},
                {"series": 'pg_settings_max_connections{instance="hot"}', "values": "100x10"},
                {"series": 'pg_stat_activity_count{instance="cool"}', "values": f"{cool}x10"},
                {"series": 'pg_settings_max_connections{instance="cool"}', "values": "100x10"},
                {"series": 'chatflow_role_connections_connections{role="chatflow_app"}', "values": f"{rhot}x10"},
                {"series": 'chatflow_role_connections_conn_limit{role="chatflow_app"}', "values": "50x10"},
                {"series": 'chatflow_role_connections_connections{role="chatflow_request"}', "values": f"{rcool}x10"},
                {"series": 'chatflow_role_connections_conn_limit{role="chatflow_request"}', "values": "50x10"},
                {
                    "series": 'pgbouncer_waiting_clients{instance="p",database="busy",user="u"}',
                    "values": f"{waiting + 1}x10",
                },
                {
                    "series": 'pgbouncer_waiting_clients{instance="p",database="calm",user="u"}',
                    "values": f"{waiting}x10",
                },
                {"series": 'redis_memory_used_bytes{instance="full"}', "values": f"{int(mem * 1000) + 1}x10"},
                {"series": 'redis_memory_max_bytes{instance="full"}', "values": "1000x10"},
                {"series": 'redis_memory_used_bytes{instance="roomy"}', "values": f"{int(mem * 1000) - 1}x10"},
                {"series": 'redis_memory_max_bytes{instance="roomy"}', "values": "1000x10"},
                {"series": "chatflow_postgresql_auth_failures_all_total", "values": f"0+{per_step}x10"},
                {"series": "chatflow_pgbouncer_auth_failures_all_total", "values": "0x10"},
                {
                    "series": 'chatflow_replication_replay_lag_seconds{application_name="far"}',
                    "values": f"{lag + 1}x10",
                },
                {
                    "series": 'chatflow_replication_replay_lag_seconds{application_name="near"}',
                    "values": f"{max(lag - 1, 0)}x10",
                },
                {
                    "series": 'node_filesystem_avail_bytes{mountpoint="/full",fstype="ext4"}',
                    "values": f"{int(disk * 1000) - 1}x10",
                },
                {"series": 'node_filesystem_size_bytes{mountpoint="/full",fstype="ext4"}', "values": "1000x10"},
                {
                    "series": 'node_filesystem_avail_bytes{mountpoint="/roomy",fstype="ext4"}',
                    "values": f"{int(disk * 1000) + 1}x10",
                },
                {"series": 'node_filesystem_size_bytes{mountpoint="/roomy",fstype="ext4"}', "values": "1000x10"},
                # Certificates: one expiring a day inside the window, one a day outside it (time() starts at 0).
                {
                    "series": 'chatflow_tls_certificate_not_after_timestamp_seconds{file="soon"}',
                    "values": f"{int((days - 1) * 86400)}x10",
                },
                {
                    "series": 'chatflow_tls_certificate_not_after_timestamp_seconds{file="later"}',
                    "values": f"{int((days + 1) * 86400)}x10",
                },
                {
                    "series": 'node_systemd_service_restart_total{name="postgresql@15-main.service"}',
                    "values": "0 0 1 1 1 1 1 1 1 1 1",
                },
                {"series": 'node_systemd_service_restart_total{name="pgbouncer.service"}', "values": "0x10"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "6m",
                    "alertname": "ChatflowConnectionsNearMax",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "instance": "hot"}}],
                },
                {
                    "eval_time": "6m",
                    "alertname": "ChatflowRoleConnectionsNearLimit",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "role": "chatflow_app"}}],
                },
                {
                    "eval_time": "3m",
                    "alertname": "ChatflowPgbouncerClientsWaiting",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "instance": "p", "database": "busy"}}],
                },
                {
                    "eval_time": "6m",
                    "alertname": "ChatflowRedisMemoryNearMax",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "instance": "full"}}],
                },
                {
                    "eval_time": "5m",
                    "alertname": "ChatflowFailedLoginBurst",
                    "exp_alerts": [{"exp_labels": {"severity": "critical", "service": "postgresql"}}],
                },
                {
                    "eval_time": "5m",
                    "alertname": "ChatflowReplicationLag",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "application_name": "far"}}],
                },
                {
                    "eval_time": "6m",
                    "alertname": "ChatflowDiskNearlyFull",
                    "exp_alerts": [{"exp_labels": {"severity": "critical", "mountpoint": "/full", "fstype": "ext4"}}],
                },
                {
                    "eval_time": "1m",
                    "alertname": "ChatflowCertificateExpiring",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "file": "soon"}}],
                },
                {
                    "eval_time": "4m",
                    "alertname": "ChatflowServiceRestarted",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "name": "postgresql@15-main.service"}}],
                },
                # Silent: nothing crossed a threshold before "for" elapsed, or nothing happened.
                {"eval_time": "2m", "alertname": "ChatflowConnectionsNearMax", "exp_alerts": []},
                {"eval_time": "1m", "alertname": "ChatflowServiceRestarted", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "ChatflowBackupTooOld", "exp_alerts": []},
            ],
        },
        {
            # A backup that finished just inside the allowed age, then ages past it.
            "interval": "1h",
            "input_series": [
                {
                    "series": 'chatflow_pgbackrest_last_backup_timestamp_seconds{type="diff",instance="h"}',
                    "values": "0x40",
                },
                {"series": "chatflow_archiver_oldest_ready_age_seconds", "values": "0x40"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": f"{int(float(M['chatflow_monitoring_alert_backup_age_hours']))}h",
                    "alertname": "ChatflowBackupTooOld",
                    "exp_alerts": [],
                },
                {
                    "eval_time": f"{int(float(M['chatflow_monitoring_alert_backup_age_hours'])) + 1}h",
                    "alertname": "ChatflowBackupTooOld",
                    "exp_alerts": [{"exp_labels": {"severity": "critical", "instance": "h"}}],
                },
                {"eval_time": "5h", "alertname": "ChatflowWalArchiveDelayed", "exp_alerts": []},
            ],
        },
    ]


def test_alert_rules_fire_past_their_thresholds_and_stay_silent_below(host):
    """promtool test rules on the rendered rules file, with cases computed from the inputs' thresholds."""
    # The rendered rules without their annotations (promtool compares those
    # too; the behaviour under test is each expression, its "for" and labels).
    rules = yaml.safe_load(host.file(RULES).content_string)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    stripped = "/tmp/chatflow-rules-under-test.yml"
    host.check_output(f"cat > {stripped} <<'EOF'\n{yaml.safe_dump(rules, sort_keys=False)}EOF")
    tests = {"rule_files": [stripped], "evaluation_interval": "1m", "tests": promtool_cases()}
    path = "/tmp/chatflow-rules-test.yml"
    host.check_output(f"cat > {path} <<'EOF'\n{yaml.safe_dump(tests, sort_keys=False)}EOF")
    res = host.run(f"promtool test rules {path}")
    assert res.rc == 0, res.stdout + res.stderr


def test_prometheus_config_and_rules_pass_promtool(host):
    assert host.run(f"promtool check rules {RULES}").rc == 0
    res = host.run("promtool check config --syntax-only /etc/prometheus/prometheus.yml")
    assert res.rc == 0, res.stdout + res.stderr


def test_the_hosts_prometheus_scrapes_every_exporter(host):
    if not M["chatflow_monitoring_prometheus_enabled"]:
        assert not host.service("prometheus").is_running and not host.service("prometheus").is_enabled
        return

    def all_up():
        page = scrape(host, "prometheus", "/api/v1/targets")
        targets = yaml.safe_load(page)["data"]["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = wait_for(all_up, timeout=60, step=3)
    assert targets, scrape(host, "prometheus", "/api/v1/targets")
    jobs = {t["labels"]["job"] for t in targets}
    assert {"node", "postgres", "redis", "mtail"} <= jobs, jobs
    rules = yaml.safe_load(scrape(host, "prometheus", "/api/v1/rules"))["data"]["groups"]
    assert sum(len(g["rules"]) for g in rules) >= 15


def test_the_pgbadger_report_is_written_for_operators_only(host):
    if not M["chatflow_monitoring_pgbadger_enabled"]:
        assert not host.file("/etc/systemd/system/chatflow-pgbadger.timer").exists
        return
    report = f"{M['chatflow_monitoring_report_dir']}/pgbadger/index.html"
    res = host.run("systemctl start chatflow-pgbadger.service")
    assert res.rc == 0, host.run("journalctl -u chatflow-pgbadger --no-pager -n 20").stdout
    f, d = host.file(report), host.file(report.rsplit("/", 1)[0])
    assert f.exists and f.size > 10000
    assert d.group == M["chatflow_monitoring_report_group"] and d.mode == 0o750
    assert f.mode & 0o007 == 0, f"the report is world-readable: {oct(f.mode)}"
    assert "pgBadger" in f.content_string


def _prometheus_value(host, query: str) -> str | None:
    """The instant value of a PromQL query on the host's Prometheus (None while it has none)."""
    page = scrape(host, "prometheus", f"/api/v1/query?query={urllib.parse.quote(query)}")
    result = yaml.safe_load(page)["data"]["result"]
    return result[0]["value"][1] if result else None


def test_what_a_person_sees_in_the_report_and_the_graph(host, sh, tmp_path):
    """Something happens (statements slower than the log threshold, a burst of failed logins of a
    new user), then the pages an operator opens, rendered by headless Chromium, show it: the
    pgBadger report lists the statement, Prometheus' graph page the burst's count.  With
    CHATFLOW_SCREENSHOT_DIR set, the screenshots of both are written there (the docs' images)."""
    marker = f"chatflow_seen_{int(time.time())}"
    seconds = M["chatflow_postgresql_log_min_duration_statement_ms"] / 1000 + 0.2
    for _ in range(2):
        sh.admin_sql(f"SELECT pg_sleep({seconds}), '{marker}' AS probe")
    for _ in range(4):
        host.run(
            f"PGPASSWORD=wrong psql 'host=127.0.0.1 port={M['chatflow_postgresql_port']} dbname={DB} "
            f"user={marker} sslmode=disable' -c 'SELECT 1'"
        )
    shots = Path(os.environ.get("CHATFLOW_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    if not M["chatflow_monitoring_pgbadger_enabled"]:
        assert not host.file(f"{M['chatflow_monitoring_report_dir']}/pgbadger").exists
    else:
        assert host.run("systemctl start chatflow-pgbadger.service").rc == 0
        report = tmp_path / "pgbadger.html"
        report.write_bytes(host.file(f"{M['chatflow_monitoring_report_dir']}/pgbadger/index.html").content)
        dom = browser.render(report.as_uri(), shots / "pgbadger.png")
        assert marker in dom, "the rendered pgBadger report does not show the slow statement"
    if not M["chatflow_monitoring_prometheus_enabled"]:
        assert not host.service("prometheus").is_running
        return
    query = f'sum(chatflow_auth_failures_total{{user="{marker}"}})'
    count = wait_for(lambda: _prometheus_value(host, query), timeout=90, step=5)
    assert count == "4", f"Prometheus has {count!r} for {query}"
    path = PROMETHEUS_GRAPH.format(expr=urllib.parse.quote(query))
    scheme = "https" if REMOTE else "http"
    with browser.forward(HOST_NAME, PORTS["prometheus"]) as local:
        dom = browser.render(f"{scheme}://127.0.0.1:{local}{path}", shots / "prometheus.png")
    assert re.search(rf">\s*{count}\s*<", dom), f"the rendered graph page does not show {count} for {query}"
