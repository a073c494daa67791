#!/usr/bin/env python3
"""Drills of the WAL archive (pgBackRest) on a local test container: faults, and the RPO after losing the host.

Used by the molecule scenario `reliability` (never against a real host: the target must be a Docker container
on this machine, provisioned by site.yml).  Each command prints a JSON report; the scenario's tests assert on it.

  python3 -m tools.pitr_drill archive-fault --host NAME
      Makes the repository's archive unwritable (what a full disk or a lost mount does to the write), forces
      a WAL switch, and measures how long until the archiver shows `failing` (chatflow-pitr status,
      pg_stat_archiver), whether PostgreSQL still takes writes meanwhile, what `pgbackrest check` and the log
      say; then gives the write back and measures how long until the archive has caught up.

  python3 -m tools.pitr_drill killed-backup --host NAME
      Starts a full backup through its unit and SIGKILLs the unit as soon as the backup's directory appears
      in the repository; then the next backup through the same unit, and `pgbackrest verify`.

  python3 -m tools.pitr_drill rpo --host NAME --repository DIR --cipher-file FILE [--seconds 30]
      A client on the host writes rows in a loop, each acknowledged (committed) row reported to this script
      with its time; after --seconds the container is killed (SIGKILL to everything, like a power cut).  A
      fresh container from the same image, with only the repository DIR (a host directory the killed
      container had mounted: storage that outlives the host) mounted read-only and the cipher key from the
      control node, installs PostgreSQL and pgBackRest, restores the latest state and counts the
      acknowledged rows that are missing, with their time span.  The killed host is then started again and
      must have kept every acknowledged row (crash recovery).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

# The base image and the options of a systemd container, as the sandbox gets them.
from tools.hostctl import IMAGE, SYSTEMD_RUN_OPTS
from tools.hostctl import wait_systemd as systemd_up

LABEL = re.compile(r"^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$")
DB = "chatflow_mvp"
UNIT = "chatflow-pgbackrest@full.service"
CONFIG = "/etc/pgbackrest/pgbackrest.conf"
# The writer, run by python3 on the host as postgres: one committed row per line printed, with its time.
WRITER = r"""
import sys, time, psycopg2
run = sys.argv[1]
conn = psycopg2.connect(dbname=sys.argv[2])
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT (SELECT id FROM channels ORDER BY id LIMIT 1), (SELECT id FROM users ORDER BY id LIMIT 1)")
channel, user = cur.fetchone()
seq = 0
while True:
    seq += 1
    cur.execute("INSERT INTO messages (channel_id, user_id, content) VALUES (%s, %s, %s)",
                (channel, user, "rpo-%s-%d" % (run, seq)))
    print(seq, time.time(), flush=True)
    time.sleep(0.02)
"""


class Failure(Exception):
    pass


def log(msg: str) -> None:
    print("[pitr-drill] %s" % msg, file=sys.stderr, flush=True)


def sh(*argv: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise Failure("%s failed (rc %d): %s" % (" ".join(argv[:6]), res.returncode, (res.stderr or res.stdout)[-800:]))
    return res


def dexec(host: str, *argv: str, user: str | None = None, check: bool = True, stdin: str | None = None):
    prefix = ["docker", "exec", "-i", host] + (["runuser", "-u", user, "--"] if user else [])
    return sh(*prefix, *argv, check=check, stdin=stdin)


def psql(host: str, sql: str, db: str = DB, check: bool = True) -> str:
    return dexec(
        host, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql, user="postgres", check=check
    ).stdout.strip()


def status(host: str) -> dict:
    return json.loads(dexec(host, "/usr/local/sbin/chatflow-pitr", "status").stdout)


def wait_for(predicate, timeout: float, step: float = 1.0) -> float | None:
    """Seconds until predicate() held, or None after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return round(time.monotonic() - start, 1)
        time.sleep(step)
    return None


def switch_wal(host: str) -> str:
    """Write a WAL record (no table touched) and switch: a segment for the archiver."""
    return psql(
        host, "SELECT pg_logical_emit_message(false, 'chatflow-drill', 'x'); SELECT pg_walfile_name(pg_switch_wal())"
    ).splitlines()[-1]


# --- archive-fault ----------------------------------------------------------------------------------------


def pgbackrest_check(host: str, stanza: str) -> dict:
    res = dexec(host, "pgbackrest", "--stanza=" + stanza, "--archive-timeout=15", "check", user="postgres", check=False)
    return {"rc": res.returncode, "message": (res.stderr or res.stdout).strip()[-300:]}


def log_lines(host: str, since: str) -> dict:
    """What the logs said since the drill began: PostgreSQL's failed archive commands, pgBackRest's retries."""
    found = {}
    for name, logfile, pattern in (
        ("postgresql", "/var/log/postgresql/postgresql-15-main.log", "archive command failed"),
        ("pgbackrest", "/var/log/pgbackrest/*-archive-push-async.log", "could not push WAL file"),
    ):
        res = dexec(host, "sh", "-c", "grep -h -- '%s' %s" % (pattern, logfile), check=False)
        found[name] = [line for line in res.stdout.splitlines() if line[:23] >= since][-1:]
    return found


def cmd_archive_fault(args) -> dict:
    before = status(args.host)
    stanza, archive = before["stanza"], "%s/archive/%s" % (before["repository"], before["stanza"])
    failed_before = before["archiver"]["failed_count"]
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    dexec(args.host, "chmod", "-R", "a-w", archive)
    try:
        segment = switch_wal(args.host)
        visible = wait_for(lambda: status(args.host)["archiver"]["failing"], 90)
        write = psql(
            args.host,
            "INSERT INTO audit_logs (action, resource_type) VALUES ('drill', 'archive-fault') RETURNING 'written'",
            check=False,
        )
        during = status(args.host)
        check_failing = pgbackrest_check(args.host, stanza)
        logged = log_lines(args.host, since)
    finally:
        dexec(args.host, "chmod", "-R", "u+w", archive)
    switch_wal(args.host)
    healed = wait_for(lambda: not status(args.host)["archiver"]["failing"], 180, 2.0)
    after = status(args.host)
    return {
        "segment": segment,
        "failing_visible_after_seconds": visible,
        "failed_count_during": during["archiver"]["failed_count"] - failed_before,
        "write_while_failing": write == "written",
        "server_up_while_failing": psql(args.host, "SELECT 1", check=False) == "1",
        "check_while_failing": check_failing,
        "logged": logged,
        "healed_after_seconds": healed,
        "after": after["archiver"],
        "check_after": pgbackrest_check(args.host, stanza),
    }


# --- killed-backup ----------------------------------------------------------------------------------------


def backup_dirs(host: str, repo_backup: str) -> set[str]:
    res = dexec(host, "ls", "-1", repo_backup, check=False)
    return {name for name in res.stdout.split() if LABEL.match(name)}


def cmd_killed_backup(args) -> dict:
    before = status(args.host)
    repo_backup = "%s/backup/%s" % (before["repository"], before["stanza"])
    known = backup_dirs(args.host, repo_backup)
    dexec(args.host, "systemctl", "start", "--no-block", UNIT)
    seen = wait_for(lambda: backup_dirs(args.host, repo_backup) - known, 120, 0.05)
    dexec(args.host, "systemctl", "kill", "--signal=KILL", UNIT)
    wait_for(lambda: dexec(args.host, "systemctl", "is-active", UNIT, check=False).stdout.strip() != "active", 30, 0.5)
    partial = sorted(backup_dirs(args.host, repo_backup) - known)
    left = {
        "unit": dexec(args.host, "systemctl", "is-active", UNIT, check=False).stdout.strip(),
        "partial": partial,
        "manifest_complete": [
            p
            for p in partial
            if dexec(args.host, "test", "-e", "%s/%s/backup.manifest" % (repo_backup, p), check=False).returncode == 0
        ],
        "backup_sessions": int(
            psql(args.host, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgBackRest%'")
        ),
    }
    dexec(args.host, "systemctl", "reset-failed", UNIT, check=False)
    started = time.monotonic()
    rerun = dexec(args.host, "systemctl", "start", UNIT, check=False)
    verify = dexec(args.host, "pgbackrest", "--stanza=" + before["stanza"], "verify", user="postgres", check=False)
    after = status(args.host)
    return {
        "killed_after_seconds": seen,
        "left": left,
        "next_backup": {
            "rc": rerun.returncode,
            "seconds": round(time.monotonic() - started, 1),
            "last": after["last_backup"],
        },
        "verify": {"rc": verify.returncode, "output": (verify.stdout + verify.stderr).strip()[-500:]},
        "repository_status": after["repository_status"],
        "backups_before": before["backups"],
        "backups_after": after["backups"],
    }


# --- rpo --------------------------------------------------------------------------------------------------


def write_until_killed(host: str, seconds: float) -> tuple[list[tuple[int, float]], str]:
    """Run the writer on the host, kill the container after `seconds`; the acknowledged rows and the run's id."""
    run = uuid.uuid4().hex[:8]
    proc = subprocess.Popen(
        ["docker", "exec", "-i", host, "runuser", "-u", "postgres", "--", "python3", "-u", "-c", WRITER, run, DB],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    acked: list[tuple[int, float]] = []

    def read() -> None:
        for line in proc.stdout:
            seq, at = line.split()
            acked.append((int(seq), float(at)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(seconds)
    sh("docker", "kill", "--signal=KILL", host)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    if not acked:
        raise Failure("the writer acknowledged no row before the kill")
    return acked, run


def wait_systemd(name: str) -> None:
    if not systemd_up(name, timeout=90):
        raise Failure("systemd in %s did not come up" % name)


def start_rescue(name: str, repository: Path) -> None:
    sh("docker", "rm", "-f", name, check=False)
    sh(
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        name,
        "--memory",
        "1g",
        *SYSTEMD_RUN_OPTS,
        "-v",
        "%s:%s:ro" % (repository, RESCUE_REPO),
        IMAGE,
        "/lib/systemd/systemd",
    )
    wait_systemd(name)


# The repository, read-only on the rescue host (not /var/lib/pgbackrest, which the package wants to own).
RESCUE_REPO = "/mnt/pgbackrest"
RESCUE_CONF = """[global]
repo1-path={repo}
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass={key}
log-level-console=warn
process-max=2

[{stanza}]
pg1-path=/var/lib/postgresql/{major}/main
"""


def install_rescue(name: str, source: dict) -> None:
    """PostgreSQL and pgBackRest from Debian, and the cluster's locale (its databases need it to open)."""
    major, locale = source["major"], source["locale"]
    lang, _, charset = locale.partition(".")
    # The repository's files belong to the lost host's postgres: the same uid reads them (as over NFS).
    dexec(
        name,
        "sh",
        "-c",
        "groupadd -g {1} postgres && useradd -u {0} -g {1} -d /var/lib/postgresql -s /bin/bash -r postgres".format(
            *source["owner"]
        ),
    )
    dexec(
        name,
        "sh",
        "-c",
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends locales postgresql-%s pgbackrest >/dev/null 2>&1" % major,
    )
    if lang not in ("C", "POSIX"):
        dexec(name, "localedef", "-i", lang, "-f", charset or "UTF-8", locale)


def prepare_rescue(name: str, repository: Path, source: dict, out: dict) -> None:
    """The fresh host, started and given its packages while the client writes (a thread): out gets the
    seconds it took, or the error."""
    started = time.monotonic()
    try:
        start_rescue(name, repository)
        install_rescue(name, source)
        out["install_seconds"] = round(time.monotonic() - started, 1)
    except Failure as exc:
        out["error"] = str(exc)


def restore_on_rescue(name: str, source: dict, key: str) -> dict:
    """Restore the latest state from the repository, start, and wait for the promotion."""
    timings, major = {}, source["major"]
    dexec(
        name,
        "sh",
        "-c",
        "umask 077 && cat > /etc/pgbackrest.conf && chown postgres /etc/pgbackrest.conf",
        stdin=RESCUE_CONF.format(repo=RESCUE_REPO, key=key, stanza=source["stanza"], major=major),
    )
    dexec(
        name,
        "sh",
        "-c",
        f"pg_ctlcluster {major} main stop && rm -rf /var/lib/postgresql/{major}/main/* "
        f"&& echo 'hot_standby = off' > /etc/postgresql/{major}/main/conf.d/rescue.conf",
    )
    started = time.monotonic()
    dexec(name, "pgbackrest", "--stanza=" + source["stanza"], "restore", user="postgres")
    timings["restore_seconds"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    dexec(name, "pg_ctlcluster", major, "main", "start")
    promoted = wait_for(lambda: psql(name, "SELECT pg_is_in_recovery()", db="postgres", check=False) == "f", 300)
    if promoted is None:
        raise Failure("the restored cluster on %s did not finish its recovery" % name)
    timings["recovery_seconds"] = round(time.monotonic() - started, 1)
    return timings


def rows_of(host: str, run: str) -> set[int]:
    out = psql(host, "SELECT split_part(content, '-', 3) FROM messages WHERE content LIKE 'rpo-%s-%%'" % run)
    return {int(x) for x in out.split()}


def measure(acked: list[tuple[int, float]], restored: set[int]) -> dict:
    lost = [(seq, at) for seq, at in acked if seq not in restored]
    at = dict(acked)
    newest = max((seq for seq in restored if seq in at), default=0)
    return {
        "acknowledged": len(acked),
        "restored": len(restored),
        "lost_acknowledged": len(lost),
        "holes_before_newest_restored": sum(1 for seq, _ in acked if seq < newest and seq not in restored),
        "lost_span_seconds": round(lost[-1][1] - lost[0][1], 2) if lost else 0.0,
        # The window of acknowledged writes lost: from the newest restored to the last acknowledged.
        "rpo_seconds": round(acked[-1][1] - at[newest], 2) if newest else round(acked[-1][1] - acked[0][1], 2),
        "writes_seconds": round(acked[-1][1] - acked[0][1], 2),
    }


def restart_host(host: str) -> float:
    started = time.monotonic()
    sh("docker", "start", host)
    wait_systemd(host)
    if wait_for(lambda: psql(host, "SELECT 1", check=False) == "1", 120) is None:
        raise Failure("PostgreSQL on %s did not come back after the restart" % host)
    return round(time.monotonic() - started, 1)


def cmd_rpo(args) -> dict:
    source = {
        "stanza": status(args.host)["stanza"],
        "major": str(int(psql(args.host, "SHOW server_version_num")) // 10000),
        "locale": psql(args.host, "SELECT datcollate FROM pg_database WHERE datname = current_database()"),
        "owner": dexec(args.host, "sh", "-c", "echo $(id -u postgres) $(id -g postgres)").stdout.split(),
    }
    key = Path(args.cipher_file).read_text(encoding="utf-8").strip()
    if not key:
        raise Failure("the cipher key file %s is empty" % args.cipher_file)
    timeout = int(psql(args.host, "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'"))
    asynchronous = dexec(args.host, "grep", "-qx", "archive-async=y", CONFIG, check=False).returncode == 0
    rescue, prepared = args.host + "-rescue", {}
    preparing = threading.Thread(
        target=prepare_rescue, args=(rescue, Path(args.repository).resolve(), source, prepared), daemon=True
    )
    preparing.start()
    try:
        acked, run = write_until_killed(args.host, args.seconds)
        log("killed %s after %d acknowledged rows; restoring on a fresh container" % (args.host, len(acked)))
        preparing.join(timeout=600)
        if "install_seconds" not in prepared:
            raise Failure("the rescue container is not ready: %s" % prepared.get("error", "timed out"))
        timings = restore_on_rescue(rescue, source, key)
        report = measure(acked, rows_of(rescue, run))
    finally:
        if not args.keep_rescue:
            sh("docker", "rm", "-f", rescue, check=False)
    restart = restart_host(args.host)
    kept = rows_of(args.host, run)
    return {
        "archive_timeout_seconds": timeout,
        "archive_async": asynchronous,
        **report,
        **timings,
        "install_seconds": prepared["install_seconds"],
        "host_restart_seconds": restart,
        "acknowledged_missing_on_restarted_host": sum(1 for seq, _ in acked if seq not in kept),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, func in (("archive-fault", cmd_archive_fault), ("killed-backup", cmd_killed_backup), ("rpo", cmd_rpo)):
        cmd = sub.add_parser(name)
        cmd.add_argument("--host", required=True, help="the test container (never a real host)")
        cmd.set_defaults(func=func)
        if name == "rpo":
            cmd.add_argument("--repository", required=True, help="the host directory mounted as the repository")
            cmd.add_argument("--cipher-file", required=True, help="the repository's key on the control node")
            cmd.add_argument("--seconds", type=float, default=30.0, help="how long the client writes before the kill")
            cmd.add_argument("--keep-rescue", action="store_true", help="leave the rescue container for a look")
    args = parser.parse_args(argv)
    try:
        report = args.func(args)
    except Failure as exc:
        log(str(exc))
        return 1
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
