#!/usr/bin/env python3
"""Interrupt and overlap runs of site.yml against a local test container.

Used by the molecule scenario `reliability` (never against a real host: the
target must be a Docker container on this machine).

  chaos.py kill --host NAME --inventory INV --at POINT [--log FILE]
      starts `ansible-playbook site.yml`, waits for POINT and then kills the
      run the hard way: SIGKILL to ansible-playbook and everything it started
      here, and SIGKILL inside the container to the module it was running and
      that module's children (apt, dpkg, maintainer scripts), like a lost SSH
      session or a power cut of the controller.  Points:
        packages   while dpkg is unpacking/configuring PostgreSQL's packages
        config     right after postgresql.conf was written, before its handler
        migration  while a migration file is executing in PostgreSQL
      Prints what the kill left behind (dpkg's audit, the running migration,
      the unloaded configuration) and fails if the point was missed.

  chaos.py concurrent --host NAME --inventory INV [--runs 2] [--log-dir DIR]
      starts several runs of site.yml at the same moment and waits for all;
      prints each run's recap and fails unless every run succeeded.
"""

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What the run started inside the container: every `docker exec` session
# (parent pid 0 in the container's namespace, pid 1 being systemd) and all
# their descendants: the module's Python (piped, so its command line names
# nothing), sudo, apt, dpkg, maintainer scripts.  This script's own session
# is spared.
KILL_SESSIONS = r"""
self=$$
tree() { echo "$1"; for c in $(ps -o pid= --ppid "$1"); do tree "$c"; done; }
victims=""
for p in $(ps -eo pid=,ppid= | awk '$2 == 0 && $1 != 1 {print $1}'); do
  [ "$p" = "$self" ] && continue
  victims="$victims $(tree "$p")"
done
for v in $victims; do
  name=$(ps -o comm= -p "$v" 2>/dev/null) && kill -9 "$v" 2>/dev/null && echo "$name($v)"
done
true
"""
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def log(msg):
    print("[chaos] %s" % msg, flush=True)


def container_sh(host, script, check=False):
    return subprocess.run(
        ["docker", "exec", host, "sh", "-c", script], capture_output=True, text=True, check=check, timeout=60
    )


def psql(host, sql, db="chatflow_mvp"):
    res = container_sh(host, 'runuser -u postgres -- psql -XAt -d %s -c "%s"' % (db, sql))
    return res.stdout.strip() if res.returncode == 0 else "error: " + res.stderr.strip()


def require_container(host):
    res = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Running}}", host], capture_output=True, text=True, check=False
    )
    if res.stdout.strip() != "true":
        sys.exit("chaos.py only targets a running local container; %r is not one" % host)


class Run:
    """One ansible-playbook site.yml in its own process group, output captured."""

    def __init__(self, inventory, logfile, extra=()):
        self.lines = []
        self.logfile = open(logfile, "w", encoding="utf-8")  # noqa: SIM115 (closed in wait())
        cmd = ["ansible-playbook", str(REPO / "site.yml"), "-i", inventory, *extra]
        # Unbuffered: the kill points follow the task banners as they are printed.
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=env,
            cwd=REPO,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.logfile.write(line)
            self.logfile.flush()

    def seen(self, text):
        return any(text in line for line in self.lines)

    def tasks(self):
        return [line for line in self.lines if line.startswith("TASK [") or line.startswith("RUNNING HANDLER [")]

    def kill(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait()

    def wait(self):
        rc = self.proc.wait()
        self.reader.join(timeout=10)
        self.logfile.close()
        return rc

    def recap(self):
        for line in self.lines:
            match = RECAP.match(line)
            if match:
                return dict(zip(["ok", "changed", "unreachable", "failed"], map(int, match.groups()[1:]), strict=True))
        return None


def kill_in_container(host):
    res = container_sh(host, KILL_SESSIONS)
    return [line for line in res.stdout.splitlines() if line.strip()]


def wait_until(run, ready, timeout, poll=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(poll)
    return False


# apt calls dpkg once to unpack and again to configure.  The test-only hook
# (dpkg's own post-invoke, run after every dpkg call; apt's DPkg::Post-Invoke
# runs once, after the last) pauses between the two, so the kill lands
# reproducibly there: packages unpacked but not configured, what a lost
# session leaves behind.
PAUSE_HOOK = "/etc/dpkg/dpkg.cfg.d/99chatflow-chaos-pause"


def prepare_packages(host):
    container_sh(host, "echo 'post-invoke=sleep 4' > %s" % PAUSE_HOOK, check=True)


def cleanup_packages(host):
    container_sh(host, "rm -f %s" % PAUSE_HOOK, check=True)


# With display_skipped_hosts = false the default callback prints a task's
# banner with its first result, i.e. when the task is done: a banner seen here
# means that task has finished and the next one runs.
def point_packages(run, host):
    banner = "TASK [chatflow_postgresql : Stop the package from creating a cluster with the wrong locale]"
    if not wait_until(run, lambda: run.seen(banner), 600):
        return "the run never reached %r" % banner

    # Only while the pause hook sleeps: dpkg is then between two calls, so
    # what --audit reports stays as it is until the kill lands.  (Polled
    # during a dpkg call, the audit may see packages that are configured a
    # moment later, and the kill then finds nothing half done.)
    def half_installed():
        probe = "grep -qx sleep /proc/[0-9]*/comm 2>/dev/null && dpkg --audit"
        return container_sh(host, probe).stdout.strip() != ""

    if not wait_until(run, half_installed, 300, poll=0.2):
        return "no package was left half installed during %r" % banner
    return None


def point_config(run, host):
    # postgresql.conf is written (its banner is printed once it is done); its
    # handler is still pending: handlers run in the role's service step.
    banner = "TASK [chatflow_postgresql : Write postgresql.conf]"
    if not wait_until(run, lambda: run.seen(banner), 600, poll=0.05):
        return "the run never reached %r" % banner
    return None


def point_migration(run, host):
    def migrating():
        count = psql(
            host,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'chatflow.db.pg_migrate' AND query ~ 'pg_sleep'",
        )
        return count.isdigit() and int(count) > 0

    if not wait_until(run, migrating, 900, poll=0.2):
        return "no migration file was executing (a session of chatflow.db.pg_migrate running pg_sleep)"
    return None


def report_packages(host):
    audit = container_sh(host, "dpkg --audit || true").stdout.strip()
    states = container_sh(
        host, "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' 2>/dev/null | grep -v -E '^(ii|un|rc) ' || true"
    ).stdout.strip()
    left = {"dpkg_audit": audit.splitlines()[:6], "packages_not_installed": states.splitlines()}
    return left, bool(audit or states)


CONF_DIR = "/etc/postgresql/15/main"
VALIDATOR = "/usr/local/libexec/chatflow/pg_validate.py"


def report_config(host):
    # The kill landed when postgresql.conf is written but not in effect: the
    # server not started yet, or running without having loaded the file (the
    # role's own check, pg_validate.py loaded).
    state = container_sh(host, "systemctl is-active postgresql@15-main || true").stdout.strip()
    if state != "active":
        written = container_sh(host, "test -f %s/postgresql.conf" % CONF_DIR).returncode == 0
        return {"server": state, "postgresql.conf written": written}, written
    res = container_sh(
        host,
        "runuser -u postgres -- %s loaded --port 5432 %s/postgresql.conf %s/pg_hba.conf"
        % (VALIDATOR, CONF_DIR, CONF_DIR),
    )
    loaded = json.loads(res.stdout) if res.returncode == 0 else {}
    left = {"server": state, "not loaded": loaded.get("newer"), "pending_restart": loaded.get("pending_restart")}
    return left, bool(loaded.get("newer") or loaded.get("pending_restart"))


# The slow migration of molecule/reliability (V901__drill_backfill.sql).
DRILL_VERSION = 901


def report_migration(host):
    time.sleep(2)  # the server notices the lost client (client_connection_check_interval 1s)
    rows = psql(
        host,
        "SELECT coalesce(version::text, script) || ':' || success"
        " FROM chatflow_meta.schema_migrations ORDER BY version NULLS LAST, script",
    )
    running = psql(host, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chatflow.db.pg_migrate'")
    locks = psql(host, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    left = {"history": rows.replace("\n", " "), "migrator_sessions_left": running, "advisory_locks_left": locks}
    # Killed in the middle: the running file is not recorded, nothing holds on.
    recorded = any(r.startswith(f"{DRILL_VERSION}:") for r in rows.split())
    return left, not rows.startswith("error") and not recorded and running == "0" and locks == "0"


def nothing(_host):
    return None


POINTS = {
    "packages": (prepare_packages, point_packages, report_packages, cleanup_packages),
    "config": (nothing, point_config, report_config, nothing),
    "migration": (nothing, point_migration, report_migration, nothing),
}


def cmd_kill(args):
    require_container(args.host)
    prepare, wait_for, report, cleanup = POINTS[args.at]
    prepare(args.host)
    started = time.monotonic()
    run = Run(args.inventory, args.log or "/tmp/chaos-kill-%s.log" % args.at)
    try:
        missed = wait_for(run, args.host)
        if missed or run.proc.poll() is not None:
            run.kill()
            why = missed or "the run ended first"
            log("kill point %s MISSED: %s (run exit %s)" % (args.at, why, run.proc.returncode))
            return 1
        run.kill()
        killed = kill_in_container(args.host)
    finally:
        cleanup(args.host)
    elapsed = time.monotonic() - started
    last = run.tasks()[-1] if run.tasks() else ""
    left, interrupted = report(args.host)
    log("killed at %s after %.1f s, during %s" % (args.at, elapsed, last))
    log("killed in the container: %s" % ("; ".join(killed) or "nothing"))
    log("left behind: %s" % json.dumps(left))
    if not interrupted:
        log("the kill at %s left nothing half done: the point was missed" % args.at)
        return 1
    return 0


def failure_reason(line: str) -> str:
    """The stderr and msg of a task's `FAILED! => {...}` line (cut off in the line's first 400 characters)."""
    _, _, result = line.partition("=> ")
    try:
        parsed = json.loads(result)
    except ValueError:
        return "-"
    return json.dumps({k: parsed[k] for k in ("msg", "stderr") if parsed.get(k)})[:600]


def cmd_concurrent(args):
    require_container(args.host)
    log_dir = Path(args.log_dir or "/tmp")
    started = time.monotonic()
    runs = [Run(args.inventory, log_dir / ("chaos-concurrent-%d.log" % n)) for n in range(1, args.runs + 1)]
    codes = [run.wait() for run in runs]
    elapsed = time.monotonic() - started
    failed = 0
    for n, (run, code) in enumerate(zip(runs, codes, strict=True), 1):
        recap = run.recap()
        log("run %d: exit %d in parallel with the others, recap %s" % (n, code, recap))
        if code != 0 or not recap or recap["failed"] or recap["unreachable"]:
            failed += 1
            for line in run.lines:
                if line.startswith("fatal:") or "FAILED!" in line or line.startswith("[ERROR]"):
                    log("  run %d: %s" % (n, line[:400]))
                    log("  run %d: why: %s" % (n, failure_reason(line)))
    log("%d concurrent runs took %.1f s; %d failed" % (args.runs, elapsed, failed))
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    kill = sub.add_parser("kill")
    kill.add_argument("--host", required=True)
    kill.add_argument("--inventory", required=True)
    kill.add_argument("--at", required=True, choices=sorted(POINTS))
    kill.add_argument("--log")
    conc = sub.add_parser("concurrent")
    conc.add_argument("--host", required=True)
    conc.add_argument("--inventory", required=True)
    conc.add_argument("--runs", type=int, default=2)
    conc.add_argument("--log-dir")
    args = parser.parse_args()
    return cmd_kill(args) if args.command == "kill" else cmd_concurrent(args)


if __name__ == "__main__":
    sys.exit(main())
