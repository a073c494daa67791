"""The fingerprint's own checks (role chatflow_fingerprint, module chatflow.db.host_fingerprint).

Scenario `default` runs every role with the fingerprint off, so its host has
none of the other scenarios' planted drift: here the fingerprint is switched
on for a few runs of site.yml against it.

- What a converge changed on the host is covered by what the roles' manifests
  declare (the record names every declared file), by the packages, or by a
  short list of things that are not the roles' own writes (each commented).
- A rerun with nothing changed stops after the fingerprint.
- One drift alone: the rerun runs exactly the role that owns it.  Then one
  item of each role drifted at once: each role finds its own, the rerun runs
  them and those that follow them, and every drift is repaired.

Scenario default's own tests: the other scenarios' hosts carry their own
drift cases.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess

import pytest

from hostlib import HOST_NAME, INPUTS, PROJECT, inventory_vars, run_site
from tools.inputs import defaults

RECORD = "/var/lib/chatflow/fingerprint.json"
PGBACKREST = defaults("chatflow_pgbackrest", overrides=inventory_vars())
CONF_DIR = f"/etc/postgresql/{INPUTS['chatflow_postgresql_version']}/{INPUTS['chatflow_postgresql_cluster']}"
ENV_FILE = f"{PROJECT}/backend/{INPUTS['chatflow_app_env_file_name']}"
# The roles whose state another role's is derived from (their manifests' `follows`).
TLS_FOLLOWERS = {"chatflow_tls", "chatflow_postgresql", "chatflow_redis", "chatflow_pgbouncer", "chatflow_monitoring"}

# role -> (a drift of one item it owns, the roles the rerun must run, a check that it is repaired)
DRIFTS = {
    "chatflow_tls": (
        f"chmod 0600 {INPUTS['chatflow_tls_ca_cert_file']}",
        TLS_FOLLOWERS,
        f"test $(stat -c %a {INPUTS['chatflow_tls_ca_cert_file']}) = 644",
    ),
    "chatflow_firewall": ("nft delete table inet chatflow", {"chatflow_firewall"}, "nft list table inet chatflow"),
    "chatflow_postgresql": (
        f"echo '# drift' >> {CONF_DIR}/postgresql.conf",
        {"chatflow_postgresql", "chatflow_pgbouncer"},
        f"! grep -q '^# drift' {CONF_DIR}/postgresql.conf",
    ),
    "chatflow_redis": (
        "echo '# drift' >> /etc/redis/redis.conf",
        {"chatflow_redis"},
        "! grep -q '^# drift' /etc/redis/redis.conf",
    ),
    "chatflow_database": (
        "runuser -u postgres -- psql -X -q -d {db} -c 'DROP INDEX {index}'",
        {"chatflow_database", "chatflow_pgbouncer"},
        "test $(runuser -u postgres -- psql -X -Atq -d {db} -c "
        "\"SELECT count(*) FROM pg_indexes WHERE indexname = '{index}'\") = 1",
    ),
    # Debian's PgBouncer exporter is bound to PgBouncer (BindsTo): stopped with it, so its
    # owner runs too.  (A crash does not stop it: PgBouncer restarts without going inactive.)
    "chatflow_pgbouncer": (
        "systemctl stop pgbouncer",
        {"chatflow_pgbouncer", "chatflow_monitoring"},
        "systemctl is-active pgbouncer prometheus-pgbouncer-exporter",
    ),
    "chatflow_app_env": (f"chmod 0644 {ENV_FILE}", {"chatflow_app_env"}, f"test $(stat -c %a {ENV_FILE}) = 600"),
    "chatflow_backup": (
        "systemctl disable --now chatflow-backup.timer",
        {"chatflow_backup"},
        "systemctl is-enabled chatflow-backup.timer && systemctl is-active chatflow-backup.timer",
    ),
    "chatflow_pgbackrest": (
        "systemctl disable --now chatflow-pgbackrest-full.timer",
        {"chatflow_pgbackrest"},
        "systemctl is-enabled chatflow-pgbackrest-full.timer && systemctl is-active chatflow-pgbackrest-full.timer",
    ),
    "chatflow_monitoring": (
        "systemctl stop prometheus-node-exporter",
        {"chatflow_monitoring"},
        "systemctl is-active prometheus-node-exporter",
    ),
}

# The roles whose items a drift changes, where more than the role it is listed under.
DRIFT_OWNERS = {"chatflow_pgbouncer": {"chatflow_pgbouncer", "chatflow_monitoring"}}
# The drift run alone, end to end (cheap: one role, nothing follows it).
SINGLE = "chatflow_firewall"

# What a converge changes that is not a role's own write, so no manifest
# declares it as a file.  Patterns (fnmatch) with why each is covered.
NOT_THE_ROLES_WRITES = [
    # Written by the packages' maintainer scripts, dpkg, apt, ucf, ldconfig and
    # Python's byte-compilation: the packages are declared.
    "/etc/rc?.d/*",
    "/var/lib/systemd/deb-systemd-helper-enabled*",
    "/etc/systemd/system/redis.service",
    "/var/lib/ucf*",
    "/etc/postgresql-common/createcluster.conf",
    "/etc/postgresql-common/root.crt",
    "/etc/apt/apt.conf.d/02autoremove-postgresql",
    "/etc/ssl/certs*",
    "/etc/ssl/private/ssl-cert-snakeoil.key",
    # javascript-common (the JavaScript libraries of pgBadger's and Prometheus'
    # packages) enables its alias for a lighttpd that is not installed.
    "/etc/lighttpd/conf-enabled*",
    "/etc/ld.so.cache",
    "/etc/default/locale",
    "/var/backups/apt.extended_states*",
    "/var/lib/dpkg*",
    "/var/lib/apt*",
    "/var/cache*",
    "*/__pycache__*",
    # Users and groups: the app's user is the app-user command (getent); the
    # packages create postgres and redis.
    "/etc/passwd*",
    "/etc/group*",
    "/etc/shadow*",
    "/etc/gshadow*",
    "/etc/subuid*",
    "/etc/subgid*",
    # The generated locale: the locales command (localedef --list-archive).
    "/etc/locale.gen",
    "/usr/lib/locale/locale-archive",
    # A unit enabled: the units' enabled state is declared.
    "/etc/systemd/system/*.wants*",
    # What the services write at run time: data, logs, systemd's own state.
    "/var/lib/postgresql/*/*/*",
    "/var/lib/redis*",
    # Prometheus' time series, and the textfile metrics the timer writes.
    "/var/lib/prometheus/*",
    # pgBackRest's repository (backups and archived WAL) and its async spool.
    f"{PGBACKREST['chatflow_pgbackrest_repo_path']}/*",
    f"{PGBACKREST['chatflow_pgbackrest_spool_path']}/*",
    "/var/log*",
    "/var/lib/systemd*",
    "/var/tmp/systemd-private-*",
    "/run/*",
    # The container itself, and the tools that provision it.
    "/etc/machine-id",
    "/etc/mtab",
    "/etc/networks",
    "/usr/lib/systemd/system-generators",
    "/root/.ansible*",
    "/tmp*",
    # The fingerprint's record: the play's own bookkeeping.
    "/var/lib/chatflow*",
]


def site(*extra: str) -> dict:
    """One run of site.yml against this scenario's host with the fingerprint
    on; the JSON report."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    assert inventory, "MOLECULE_INVENTORY_FILE is not set: these tests run under molecule verify"
    report, res = run_site(inventory, "-e", "chatflow_fingerprint_enabled=true", *extra)
    assert res.returncode == 0, f"site.yml failed: {json.dumps(report['stats'])}\n{res.stderr[-2000:]}"
    return report


def roles_that_ran(report: dict) -> set[str]:
    """The ChatFlow roles with a task that was not skipped (the shared role and
    the fingerprint itself run on every run)."""
    ran = set()
    for play in report["plays"]:
        for task in play["tasks"]:
            role, sep, _name = task["task"]["name"].partition(" : ")
            if sep and any(not r.get("skipped") for r in task["hosts"].values()):
                ran.add(role)
    return ran - {"chatflow_common", "chatflow_fingerprint"}


def fingerprint_message(report: dict) -> str:
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith("Report whether the roles run"):
                return next(iter(task["hosts"].values()))["msg"]
    return ""


@pytest.fixture(scope="module")
def recorded(host):
    """The record of the provisioned state.  The idempotence step (fingerprint
    off) left one, and these tests run first (conftest.py); a run with the
    fingerprint on brings the record up to date all the same, should
    anything have moved since."""
    site()
    record = json.loads(host.check_output(f"cat {RECORD}"))
    assert record["complete_at"] > 0
    return record


def test_a_rerun_with_nothing_changed_stops_after_the_fingerprint(recorded):
    report = site()
    assert "Nothing changed since the last complete run" in fingerprint_message(report)
    assert roles_that_ran(report) == set()
    assert all(stats["changed"] == 0 for stats in report["stats"].values())


def test_every_item_belongs_to_a_role(recorded):
    owned = {key for key, owner in recorded["owners"].items() if owner}
    roles = {owner for owner in recorded["owners"].values() if owner}
    assert roles == set(DRIFTS), "every role of site.yml declares what it manages"
    # Only what no single role owns (the shared directories, dpkg's state) is left to a complete run.
    unowned = {key for key in recorded["items"] if key not in owned} - {"inputs"}
    assert unowned == {"file:/etc/chatflow", "file:/usr/local/libexec/chatflow", "command:dpkg-audit"}


def test_what_a_converge_changed_is_declared(host, recorded):
    started = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", HOST_NAME], capture_output=True, text=True, check=True
    ).stdout.strip()
    changed = host.check_output(
        f"find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -newermt '{started}' -print"
    ).splitlines()
    packaged = set(host.check_output("cat /var/lib/dpkg/info/*.list").splitlines())
    declared = {key[len("file:") :] for key in recorded["items"] if key.startswith("file:")}
    outside = [
        path
        for path in changed
        if path not in packaged
        and path not in declared
        and not any(d.startswith(path.rstrip("/") + "/") for d in declared)  # a parent of a declared path
        and not any(fnmatch.fnmatch(path, pattern) for pattern in NOT_THE_ROLES_WRITES)
    ]
    assert outside == [], "changed by the converge but declared by no role's manifest"


def plant(host, sh, role: str) -> str:
    """Drift one item of the role's; the command that checks it is repaired."""
    drift, _targets, repaired = DRIFTS[role]
    if role == "chatflow_database":
        index = sh.admin_sql(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE '%gin_trgm_ops%' LIMIT 1"
        )
        drift = drift.format(db=INPUTS["chatflow_database_name"], index=index)
        repaired = repaired.format(db=INPUTS["chatflow_database_name"], index=index)
    host.check_output(drift)
    return repaired


def test_a_drift_runs_exactly_the_roles_that_own_it(host, sh, recorded):
    """One drift alone, end to end: the rerun runs its role and no other.  (What a drift of each role
    runs is the manifests' `follows`: tests/unit/test_host_fingerprint.py checks it per role.)"""
    repaired = plant(host, sh, SINGLE)
    report = site()
    assert f"Targeted repair by {SINGLE} (drifted: {SINGLE})" in fingerprint_message(report)
    assert roles_that_ran(report) == DRIFTS[SINGLE][1] == {SINGLE}
    assert host.run(repaired).rc == 0, f"{SINGLE}: not repaired ({repaired})"


def test_every_drift_at_once_is_found_by_its_owner_and_repaired(host, sh, recorded):
    """One item of each role drifted, then one rerun: every role reports a drift of its own (ten
    drifts, ten owners: one attributed to the wrong role leaves its owner out), the rerun runs the
    roles that own them and those that follow, and every drift is repaired."""
    repaired = {role: plant(host, sh, role) for role in DRIFTS}
    report = site()
    targets = sorted(set().union(*(t for _drift, t, _check in DRIFTS.values())))
    owners = sorted(set().union(*(DRIFT_OWNERS.get(role, {role}) for role in DRIFTS)))
    message = fingerprint_message(report)
    assert f"Targeted repair by {', '.join(targets)} (drifted: {', '.join(owners)})" in message, message
    assert roles_that_ran(report) == set(targets)
    left = {role: check for role, check in repaired.items() if host.run(check).rc != 0}
    assert left == {}, "not repaired"
