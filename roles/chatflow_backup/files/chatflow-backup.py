#!/usr/bin/python3
"""Back up, list, verify and restore the ChatFlow database host's data.

Installed by the chatflow_backup role as /usr/local/sbin/chatflow-backup and
run as root (by chatflow-backup.service, its timer, or playbooks/backup.yml and
playbooks/restore.yml).  Settings come from /etc/chatflow/backup.conf (0600).

  chatflow-backup run
      one backup set in <dir>/<UTC stamp>/: <db>.dump (pg_dump, custom format),
      globals.sql (pg_dumpall --globals-only: roles and their attributes),
      redis.rdb (a snapshot fetched from Redis, when enabled), manifest.json
      (sha256 and size of every file, the server version, and the row count
      and content checksum of every table).  Written as <stamp>.partial and
      renamed when complete; the archive is checked with pg_restore --list;
      then only the newest <keep> complete sets are kept.
  chatflow-backup list
      the complete sets, newest first, as JSON.
  chatflow-backup fingerprint DB [--port PORT]
      row count and content checksum (md5 of every row's text, in order) of
      every table of DB, as JSON.
  chatflow-backup restore [--from STAMP] [--target DB] [--confirm DB]
      restores a set (default the newest) into DB (default <db>_restore, a
      scratch database that is replaced).  Restoring into the live database
      needs --confirm <its name>: the set is restored into a new database
      first, then the live one is renamed <db>_before_restore_<stamp> (kept)
      and the new one takes its name.  Checks every file's sha256 first and
      compares the restored tables with the manifest; prints JSON.
"""

import argparse
import configparser
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path("/etc/chatflow/backup.conf")
STAMP = re.compile(r"^\d{8}T\d{6}Z$")
IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Failure(Exception):
    pass


def load_config():
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(CONFIG, encoding="utf-8"):
        raise Failure("cannot read %s (written by the chatflow_backup role)" % CONFIG)
    cfg = dict(parser["backup"])
    cfg["redis"] = parser["backup"].getboolean("redis")
    return cfg


def as_postgres(argv, **kwargs):
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=False, **kwargs)


def psql(cfg, db, sql):
    res = as_postgres(
        [
            "psql",
            "--no-psqlrc",
            "--port",
            str(cfg["pg_port"]),
            "--dbname",
            db,
            "--tuples-only",
            "--no-align",
            "--set",
            "ON_ERROR_STOP=1",
            "--command",
            sql,
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise Failure("psql on %s failed: %s" % (db, res.stderr.strip()))
    return res.stdout.strip()


def fingerprint(cfg, db):
    tables = psql(
        cfg,
        db,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
    ).splitlines()
    result = {}
    for table in tables:
        rows, digest = psql(
            cfg,
            db,
            "SELECT count(*) || '|' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), md5(''))"
            " FROM %s AS t" % table,
        ).split("|")
        result[table] = {"rows": int(rows), "md5": digest}
    return result


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dump_to(argv, path):
    with open(path, "wb") as out:
        res = as_postgres(argv, stdout=out, stderr=subprocess.PIPE)
    if res.returncode != 0:
        raise Failure("%s failed: %s" % (argv[0], res.stderr.decode(errors="replace").strip()))


def redis_snapshot(cfg, path):
    env = dict(os.environ, REDISCLI_AUTH=cfg["redis_password"])
    res = subprocess.run(
        [
            "redis-cli",
            "-p",
            str(cfg["redis_port"]),
            "--user",
            cfg["redis_user"],
            "--no-auth-warning",
            "--rdb",
            str(path),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    if res.returncode != 0 or not path.exists():
        raise Failure("redis-cli --rdb failed: %s" % (res.stderr.strip() or res.stdout.strip()))


def complete_sets(root):
    return sorted((p for p in root.iterdir() if p.is_dir() and STAMP.match(p.name)), reverse=True)


def cmd_run(cfg, _args):
    root = Path(cfg["dir"])
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    # A set that a killed run left unfinished is never a backup.
    for stale in root.glob("*.partial"):
        shutil.rmtree(stale)
    started = time.monotonic()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    work = root / (stamp + ".partial")
    work.mkdir(mode=0o700)
    db, port = cfg["database"], str(cfg["pg_port"])
    tables = fingerprint(cfg, db)
    dump = work / (db + ".dump")
    dump_to(["pg_dump", "--port", port, "--format", "custom", "--compress", "6", "--dbname", db], dump)
    dump_to(["pg_dumpall", "--port", port, "--globals-only"], work / "globals.sql")
    # As root: the set is root's alone (pg_restore --list connects to nothing).
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise Failure("pg_restore --list cannot read the new archive: %s" % listing.stderr.strip())
    if cfg.get("redis"):
        redis_snapshot(cfg, work / "redis.rdb")
    files = {}
    for path in sorted(work.iterdir()):
        os.chmod(path, 0o600)
        files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256(path)}
    manifest = {
        "stamp": stamp,
        "database": db,
        "server_version": psql(cfg, db, "SHOW server_version"),
        "files": files,
        "tables": tables,
        "archive_entries": len([line for line in listing.stdout.splitlines() if line and not line.startswith(";")]),
        "seconds": round(time.monotonic() - started, 2),
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.chmod(work / "manifest.json", 0o600)
    final = root / stamp
    work.rename(final)
    removed = [p.name for p in complete_sets(root)[int(cfg["keep"]) :]]
    for name in removed:
        shutil.rmtree(root / name)
    print(
        json.dumps(
            {
                "backup": str(final),
                "files": files,
                "tables": len(tables),
                "removed": removed,
                "seconds": manifest["seconds"],
            }
        )
    )
    return 0


def cmd_list(cfg, _args):
    root = Path(cfg["dir"])
    sets = []
    for path in complete_sets(root) if root.exists() else []:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        sets.append(
            {
                "stamp": path.name,
                "path": str(path),
                "files": manifest["files"],
                "rows": sum(t["rows"] for t in manifest["tables"].values()),
            }
        )
    print(json.dumps(sets, indent=2))
    return 0


def cmd_fingerprint(cfg, args):
    if args.port:
        cfg = dict(cfg, pg_port=args.port)
    print(json.dumps(fingerprint(cfg, args.database), indent=2, sort_keys=True))
    return 0


def restore_into(cfg, dump, db):
    port = str(cfg["pg_port"])
    psql(cfg, "postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    psql(cfg, "postgres", "CREATE DATABASE %s OWNER %s TEMPLATE template0 ENCODING 'UTF8'" % (db, cfg["owner"]))
    psql(cfg, "postgres", "REVOKE ALL ON DATABASE %s FROM PUBLIC" % db)
    # The archive is root's alone: pg_restore (as postgres) reads it on stdin.
    with open(dump, "rb") as archive:
        res = as_postgres(
            ["pg_restore", "--port", port, "--dbname", db, "--exit-on-error", "--single-transaction"],
            stdin=archive,
            capture_output=True,
        )
    if res.returncode != 0:
        psql(cfg, "postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
        stderr = res.stderr.decode(errors="replace").strip()
        raise Failure("pg_restore into %s failed (the database was dropped again): %s" % (db, stderr))


def cmd_restore(cfg, args):
    root, live = Path(cfg["dir"]), cfg["database"]
    sets = complete_sets(root) if root.exists() else []
    if not sets:
        raise Failure("no complete backup set in %s: run chatflow-backup run (or playbooks/backup.yml) first" % root)
    chosen = root / args.from_stamp if args.from_stamp else sets[0]
    if chosen not in sets:
        raise Failure("no complete backup set %s in %s; sets: %s" % (args.from_stamp, root, [p.name for p in sets]))
    target = args.target or cfg["database"] + "_restore"
    if not IDENT.match(target):
        raise Failure("--target must be a lowercase identifier (a-z, 0-9, _), got %r" % target)
    if target == live and args.confirm != live:
        raise Failure("restoring into the live database %s replaces it: pass --confirm %s" % (live, live))
    if target in ("postgres", "template0", "template1"):
        raise Failure("--target %s is a system database" % target)
    manifest = json.loads((chosen / "manifest.json").read_text(encoding="utf-8"))
    for name, meta in manifest["files"].items():
        if sha256(chosen / name) != meta["sha256"]:
            raise Failure("%s is damaged: its sha256 differs from the manifest" % (chosen / name))
    dump = chosen / (manifest["database"] + ".dump")
    started = time.monotonic()
    kept = None
    if target == live:
        staging = live + "_restore_incoming"
        restore_into(cfg, dump, staging)
        kept = "%s_before_restore_%s" % (live, time.strftime("%Y%m%d%H%M%S", time.gmtime()))
        psql(cfg, "postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'" % live)
        psql(cfg, "postgres", "ALTER DATABASE %s RENAME TO %s" % (live, kept))
        psql(cfg, "postgres", "ALTER DATABASE %s RENAME TO %s" % (staging, live))
    else:
        restore_into(cfg, dump, target)
    restored = fingerprint(cfg, target)
    expected = manifest["tables"]
    mismatched = sorted(t for t in set(expected) | set(restored) if expected.get(t) != restored.get(t))
    print(
        json.dumps(
            {
                "restored": target,
                "from": str(chosen),
                "kept_previous": kept,
                "tables": len(restored),
                "rows": sum(t["rows"] for t in restored.values()),
                "mismatched": mismatched,
                "seconds": round(time.monotonic() - started, 2),
            }
        )
    )
    return 1 if mismatched else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run")
    sub.add_parser("list")
    fp = sub.add_parser("fingerprint")
    fp.add_argument("database")
    fp.add_argument("--port", type=int, help="another cluster's port (a scratch cluster restored by chatflow-pitr)")
    restore = sub.add_parser("restore")
    restore.add_argument("--from", dest="from_stamp")
    restore.add_argument("--target")
    restore.add_argument("--confirm")
    args = parser.parse_args()
    commands = {"run": cmd_run, "list": cmd_list, "fingerprint": cmd_fingerprint, "restore": cmd_restore}
    try:
        return commands[args.command](load_config(), args)
    except Failure as exc:
        sys.stderr.write("chatflow-backup: %s\n" % exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
