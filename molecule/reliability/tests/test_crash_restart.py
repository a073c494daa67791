"""Crashes heal without an operator, and are seen.

kill -9 of the postmaster, of PgBouncer and of Redis (what the OOM killer does)
while a client writes: systemd starts each again (the roles' drop-ins), the restart
is counted (node_systemd_service_restart_total, which ChatflowServiceRestarted
reads), and every write the client saw committed is still there.  The time
until each served again is printed (and kept in the ephemeral directory).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path

from hostlib import inventory_vars, secret
from tools.inputs import defaults

M = defaults(
    "chatflow_common", "chatflow_postgresql", "chatflow_pgbouncer", "chatflow_redis", overrides=inventory_vars()
)
PG_UNIT = f"postgresql@{M['chatflow_postgresql_version']}-{M['chatflow_postgresql_cluster']}.service"
DATA = f"/var/lib/postgresql/{M['chatflow_postgresql_version']}/{M['chatflow_postgresql_cluster']}"

# The client: one short transaction every 20 ms, reconnecting after a failure;
# each committed id goes to the ack file, each failure's time to the log.
WRITER = r"""
import sys, time, psycopg2
dsn, ack, seconds, sql = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
end = time.time() + seconds
conn = None
with open(ack, "w", buffering=1) as out:
    while time.time() < end:
        try:
            if conn is None:
                conn = psycopg2.connect(dsn, connect_timeout=2)
            with conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
            conn.commit()
            out.write("ok %.3f %s\n" % (time.time(), row[0]))
        except Exception:
            out.write("fail %.3f\n" % time.time())
            try:
                conn.close()
            except Exception:
                pass
            conn = None
        time.sleep(0.02)
"""


def restarts(host, unit: str) -> int:
    return int(host.check_output(f"systemctl show -p NRestarts --value {unit}") or 0)


# The same for Redis: a SET of a new key every 20 ms; an acknowledged write is one answered OK.
REDIS_WRITER = r"""
ack=$1; end=$((SECONDS + $2)); user=$3; n=0
while [ $SECONDS -lt $end ]; do
  n=$((n + 1))
  if [ "$(timeout 1 redis-cli --user "$user" --no-auth-warning SET crash:probe:$n 1 2>/dev/null)" = OK ]; then
    echo "ok $(date +%s.%N) $n" >> "$ack"
  else
    echo "fail $(date +%s.%N)" >> "$ack"
  fi
  sleep 0.02
done
"""
ACK = "/tmp/crash_writer.ack"


def postgres_writer(host, dsn: str, sql: str, seconds: int, user: str = "postgres") -> None:
    host.check_output(f"cat > /tmp/crash_writer.py <<'EOF'\n{WRITER}\nEOF")
    host.check_output(
        f"runuser -u {user} -- nohup python3 /tmp/crash_writer.py {shlex.quote(dsn)} {ACK} {seconds} "
        f"{shlex.quote(sql)} >/dev/null 2>&1 &"
    )


def redis_writer(host, seconds: int) -> None:
    host.check_output(f"cat > /tmp/crash_writer.sh <<'EOF'\n{REDIS_WRITER}\nEOF")
    user = M["chatflow_redis_admin_user"]
    auth = shlex.quote(secret(f"redis_{user}"))
    host.check_output(f"REDISCLI_AUTH={auth} nohup bash /tmp/crash_writer.sh {ACK} {seconds} {user} >/dev/null 2>&1 &")


def run_writer(host, start, kill: str, *, seconds: int = 25) -> dict:
    """Write for `seconds` (start(host, seconds) starts the writer), run `kill` 3 s in, and
    return the outage measured by the client."""
    host.check_output(f"rm -f {ACK}")
    start(host, seconds)
    ack = ACK
    time.sleep(3)
    killed_at = float(host.check_output(f"date +%s.%N && {kill} >/dev/null").split()[0])
    time.sleep(seconds)
    lines = host.file(ack).content_string.splitlines()
    oks = [(float(p[1]), p[2]) for p in (line.split() for line in lines) if p[0] == "ok"]
    fails = [float(line.split()[1]) for line in lines if line.startswith("fail")]
    before = [t for t, _ in oks if t < killed_at]
    first_fail = min((t for t in fails if t > killed_at), default=None)
    assert before, "the client committed nothing before the kill"
    assert first_fail, "the client never noticed the kill"
    after = [t for t, _ in oks if t > first_fail]
    assert after, f"the client never committed again after the kill ({len(fails)} failures)"
    return {
        "killed_at": killed_at,
        "first_failure_after_s": round(first_fail - killed_at, 2),
        "served_again_after_s": round(after[0] - killed_at, 2),
        "failed_attempts": len(fails),
        "committed": [v for _, v in oks],
    }


def save(name: str, report: dict) -> None:
    printable = {k: v for k, v in report.items() if k != "committed"} | {"committed": len(report["committed"])}
    print(f"\n{name}: {json.dumps(printable)}")
    directory = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if directory:
        Path(directory, f"crash-{name}.json").write_text(json.dumps(printable), encoding="utf-8")


def test_killed_postmaster_restarts_and_keeps_every_committed_write(host, sh):
    assert M["chatflow_postgresql_restart_on_failure"], (
        "the scenario must keep restart on failure on: this drill proves it"
    )
    sh.admin_sql(
        "CREATE TABLE IF NOT EXISTS crash_probe (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())", db="postgres"
    )
    before = restarts(host, PG_UNIT)
    dsn = f"host=/var/run/postgresql port={M['chatflow_postgresql_port']} dbname=postgres user=postgres"
    sql = "INSERT INTO crash_probe DEFAULT VALUES RETURNING id"
    report = run_writer(
        host,
        lambda h, seconds: postgres_writer(h, dsn, sql, seconds),
        f"kill -9 $(head -1 {DATA}/postmaster.pid)",
    )
    assert restarts(host, PG_UNIT) == before + 1, "systemd did not restart the server exactly once"
    assert host.service(PG_UNIT).is_running
    ids = set(sh.admin_sql("SELECT id FROM crash_probe", db="postgres").split())
    lost = [i for i in report["committed"] if i not in ids]
    assert not lost, f"{len(lost)} committed writes are gone after the crash: {lost[:10]}"
    report["restarts_counted"] = restarts(host, PG_UNIT) - before
    save("postgresql", report)
    sh.admin_sql("DROP TABLE crash_probe", db="postgres")


def test_killed_pgbouncer_restarts_and_the_node_exporter_counts_it(host):
    # The scenario's inputs must run PgBouncer with its restart policy: this drill is what proves it.
    assert M["chatflow_pgbouncer_enabled"] and M["chatflow_pgbouncer_restart_on_failure"]
    before = restarts(host, "pgbouncer.service")
    password = secret(f"postgresql_{M['chatflow_database_app_role']}")
    dsn = (
        f"host=127.0.0.1 port={M['chatflow_pgbouncer_port']} dbname={M['chatflow_database_name']} "
        f"user={M['chatflow_database_app_role']} password={password} sslmode=disable"
    )
    report = run_writer(
        host, lambda h, seconds: postgres_writer(h, dsn, "SELECT txid_current()", seconds), "kill -9 $(pidof pgbouncer)"
    )
    assert restarts(host, "pgbouncer.service") == before + 1
    port = int(M["chatflow_monitoring_ports"]["node"])
    code = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    page = host.check_output(f"python3 -c {shlex.quote(code)}")
    m = re.search(r'^node_systemd_service_restart_total\{name="pgbouncer.service"\} (\S+)$', page, re.M)
    assert m and float(m.group(1)) >= 1, "node_exporter does not count PgBouncer's restart"
    save("pgbouncer", report)


def test_killed_redis_restarts_and_keeps_every_acknowledged_write(host, sh):
    """Debian's unit restarts Redis (Restart=always); with the append-only file every SET that was
    answered OK is there after the restart (the file is written before the reply is sent)."""
    assert M["chatflow_redis_appendonly"], "the scenario must keep the append-only file on: this drill proves it"
    unit = "redis-server.service"
    before = restarts(host, unit)
    report = run_writer(host, redis_writer, "kill -9 $(systemctl show -p MainPID --value redis-server)")
    assert restarts(host, unit) == before + 1, "systemd did not restart Redis exactly once"
    keys = set(sh.admin_redis("--scan", "--pattern", "crash:probe:*").stdout.split())
    lost = [n for n in report["committed"] if f"crash:probe:{n}" not in keys]
    assert not lost, f"{len(lost)} acknowledged writes are gone after the crash: {lost[:10]}"
    report["restarts_counted"] = restarts(host, unit) - before
    save("redis", report)
    sh.admin_redis(
        "EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end", "0", "crash:probe:*"
    )
