#!/usr/bin/python3
"""Point-in-time restore of the ChatFlow cluster from pgBackRest, and the archive's status.

Installed by the chatflow_pgbackrest role (its settings: /etc/pgbackrest/chatflow-pitr.conf); run as root,
usually through playbooks/restore.yml.

  chatflow-pitr status
      The newest backup, the newest archived WAL segment and how far behind the archive is (JSON).
  chatflow-pitr restore [--set LABEL] [--time TS | --xid N | --name POINT | --immediate] [--live --confirm DB]
      Without a target: replay every archived WAL segment (the latest state).  --set picks a backup
      (default the newest that the target allows); --immediate stops where that backup became consistent.
      Into the scratch cluster by default: dropped and created again, localhost only, never archiving.
      --live replaces the live cluster's data directory: the old one is kept beside it
      (<cluster>.before-restore-<time>) until the operator removes it.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path("/etc/pgbackrest/chatflow-pitr.conf")
LABEL = re.compile(r"^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$")
POINT = re.compile(r"^[A-Za-z0-9_.:-]{1,63}$")
WAL = re.compile(r"^[0-9A-F]{24}$")


class Failure(Exception):
    pass


def load_config() -> dict:
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(CONFIG, encoding="utf-8"):
        raise Failure("cannot read %s (written by the chatflow_pgbackrest role)" % CONFIG)
    return dict(parser["pitr"])


def run(argv: list[str], what: str, user: str | None = "postgres") -> str:
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise Failure("%s failed (rc %d): %s" % (what, res.returncode, (res.stderr or res.stdout).strip()))
    return res.stdout.strip()


def psql(port: str, sql: str) -> str:
    return run(["psql", "-XAtq", "-p", port, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql], "psql")


def data_dir(cfg: dict, cluster: str) -> Path:
    return Path("/var/lib/postgresql") / cfg["version"] / cluster


def segment_number(name: str | None) -> int | None:
    """A WAL file name's position in the log (16 MB segments), its timeline left out."""
    if not name or not WAL.match(name[:24]):
        return None
    return int(name[8:16], 16) * 0x100 + int(name[16:24], 16)


def pgbackrest(cfg: dict, *args: str) -> str:
    return run(["pgbackrest", "--stanza=" + cfg["stanza"], *args], "pgbackrest " + args[-1])


# --- status -------------------------------------------------------------------


def archiver(cfg: dict) -> dict:
    row = psql(
        cfg["port"],
        "SELECT row_to_json(a) FROM (SELECT last_archived_wal, last_archived_time, last_failed_wal,"
        " last_failed_time, failed_count, archived_count, pg_walfile_name(pg_current_wal_lsn()) AS current_wal,"
        " round(extract(epoch FROM now() - last_archived_time)) AS archived_age_seconds,"
        " coalesce(last_failed_time > last_archived_time OR (last_failed_time IS NOT NULL"
        " AND last_archived_time IS NULL), false) AS failing FROM pg_stat_archiver) a",
    )
    stats = json.loads(row)
    current, archived = segment_number(stats["current_wal"]), segment_number(stats["last_archived_wal"])
    stats["segments_waiting"] = None if current is None or archived is None else max(current - archived - 1, 0)
    return stats


def last_backup(info: dict) -> dict | None:
    if not info.get("backup"):
        return None
    newest = info["backup"][-1]
    return {
        "label": newest["label"],
        "type": newest["type"],
        "stopped": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest["timestamp"]["stop"])),
        "age_seconds": int(time.time() - newest["timestamp"]["stop"]),
        "seconds": newest["timestamp"]["stop"] - newest["timestamp"]["start"],
        "database_bytes": newest["info"]["size"],
        "repository_bytes": newest["info"]["repository"]["delta"],
    }


# File systems whose storage is not the host's own disk.
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.sshfs", "fuse.s3fs", "9p", "virtiofs"}


def mount_type(path: str, mounts: str) -> str:
    """The file system type of the longest mount point that holds `path` (lines of /proc/mounts)."""
    best, kind = "", "unknown"
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def off_host(cfg: dict) -> bool:
    """Whether the repository outlives the host: S3, or a directory on a network file system."""
    if cfg.get("repository_type") == "s3":
        return True
    return mount_type(cfg.get("repository_path", cfg["repository"]), Path("/proc/mounts").read_text()) in NETWORK_FS


def cmd_status(cfg: dict, _args) -> int:
    info = json.loads(pgbackrest(cfg, "--output=json", "info"))[0]
    archive = info.get("archive") or [{}]
    report = {
        "stanza": cfg["stanza"],
        "repository": cfg["repository"],
        "repository_status": info["status"]["message"],
        "repository_off_host": off_host(cfg),
        "backups": len(info.get("backup") or []),
        "last_backup": last_backup(info),
        "newest_wal_in_repository": archive[-1].get("max"),
        "archiver": archiver(cfg),
    }
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


# --- restore ------------------------------------------------------------------


def target_options(args) -> list[str]:
    """pgBackRest's restore options for the target that was asked for."""
    if args.time:
        options = ["--type=time", "--target=" + args.time]
    elif args.xid:
        options = ["--type=xid", "--target=" + args.xid]
    elif args.name:
        options = ["--type=name", "--target=" + args.name]
    elif args.immediate:
        options = ["--type=immediate"]
    else:
        options = []
    if options:
        options.append("--target-action=promote")
    return options + (["--set=" + args.set] if args.set else [])


def check_args(cfg: dict, args) -> None:
    if args.live and args.confirm != cfg["database"]:
        raise Failure(
            "--live replaces the whole live cluster %s/%s (every database, %s included): pass --confirm %s"
            % (cfg["version"], cfg["cluster"], cfg["database"], cfg["database"])
        )
    if args.set and not LABEL.match(args.set):
        raise Failure("--set must be a backup label such as 20261202-013000F, got %r" % args.set)
    if args.xid and not args.xid.isdigit():
        raise Failure("--xid must be a transaction id (digits), got %r" % args.xid)
    if args.name and not POINT.match(args.name):
        raise Failure("--name must be a restore point name (letters, digits, _.:-), got %r" % args.name)


def recreate_scratch(cfg: dict) -> Path:
    """The scratch cluster, new and empty: Debian's configuration, localhost only, never started at boot."""
    version, scratch = cfg["version"], cfg["scratch_cluster"]
    if (Path("/etc/postgresql") / version / scratch).is_dir():
        run(["pg_dropcluster", "--stop", version, scratch], "pg_dropcluster", user=None)
    run(
        ["pg_createcluster", "--port", cfg["scratch_port"], "--start-conf", "manual", version, scratch],
        "pg_createcluster",
        user=None,
    )
    data = data_dir(cfg, scratch)
    for child in data.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return data


def set_aside_live(cfg: dict) -> Path:
    """Archive what the live cluster still holds, stop it and keep its data directory beside an empty one."""
    try:
        pgbackrest(cfg, "check")
    except Failure as exc:
        sys.stderr.write("chatflow-pitr: the live cluster's last WAL could not be archived: %s\n" % exc)
    unit = "postgresql@%s-%s" % (cfg["version"], cfg["cluster"])
    run(["systemctl", "stop", unit], "systemctl stop " + unit, user=None)
    data = data_dir(cfg, cfg["cluster"])
    kept = data.with_name("%s.before-restore-%s" % (cfg["cluster"], time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())))
    data.rename(kept)
    data.mkdir(mode=0o700)
    shutil.chown(data, "postgres", "postgres")
    return kept


def start_and_wait(cfg: dict, cluster: str, port: str, timeout: int = 600) -> float:
    """Start the cluster and wait until recovery reached its target and the server was promoted."""
    started = time.monotonic()
    run(["pg_ctlcluster", cfg["version"], cluster, "start"], "pg_ctlcluster start", user=None)
    while time.monotonic() - started < timeout:
        try:
            if psql(port, "SELECT pg_is_in_recovery()") == "f":
                return time.monotonic() - started
        except Failure:
            pass
        status = ["pg_ctlcluster", cfg["version"], cluster, "status"]
        if subprocess.run(status, capture_output=True, check=False).returncode == 3:
            raise Failure(
                "the restored cluster %s stopped during recovery (a target that the archive does not reach?):"
                " see /var/log/postgresql/postgresql-%s-%s.log" % (cluster, cfg["version"], cluster)
            )
        time.sleep(1)
    raise Failure("the restored cluster %s was not promoted within %d s" % (cluster, timeout))


def cmd_restore(cfg: dict, args) -> int:
    check_args(cfg, args)
    started = time.monotonic()
    kept = None
    if args.live:
        cluster, port, extra = cfg["cluster"], cfg["port"], []
        kept = set_aside_live(cfg)
        data = data_dir(cfg, cluster)
    else:
        cluster, port, extra = cfg["scratch_cluster"], cfg["scratch_port"], ["--archive-mode=off"]
        data = recreate_scratch(cfg)
    pgbackrest(cfg, "--pg1-path=%s" % data, *target_options(args), *extra, "--log-level-console=warn", "restore")
    copied = time.monotonic() - started
    replayed = start_and_wait(cfg, cluster, port)
    timeline = psql(port, "SELECT timeline_id FROM pg_control_checkpoint()")
    report = {
        "restored_into": "%s/%s" % (cfg["version"], cluster),
        "port": int(port),
        "target": target_options(args) or ["latest"],
        "kept_previous": str(kept) if kept else None,
        "copy_seconds": round(copied, 1),
        "recovery_seconds": round(replayed, 1),
        "timeline": int(timeline),
    }
    print(json.dumps(report, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status")
    restore = sub.add_parser("restore")
    restore.add_argument("--set")
    target = restore.add_mutually_exclusive_group()
    target.add_argument("--time")
    target.add_argument("--xid")
    target.add_argument("--name")
    target.add_argument("--immediate", action="store_true")
    restore.add_argument("--live", action="store_true")
    restore.add_argument("--confirm")
    args = parser.parse_args()
    commands = {"status": cmd_status, "restore": cmd_restore}
    try:
        return commands[args.command](load_config(), args)
    except Failure as exc:
        sys.stderr.write("chatflow-pitr: %s\n" % exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
