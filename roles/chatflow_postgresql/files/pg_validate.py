#!/usr/bin/python3
"""Validate a candidate postgresql.conf or pg_hba.conf before it is installed.

Used as Ansible's `validate:` command by the chatflow_postgresql role.

  pg_validate.py conf --bindir /usr/lib/postgresql/15/bin FILE
      parses FILE with the server itself (`postgres -C`, as the postgres user):
      unknown parameters, bad values and syntax errors fail.
  pg_validate.py hba [--allow-any] FILE
      checks every line against the host's policy: known connection types,
      scram-sha-256 / peer / reject only (never trust, password, md5, ident),
      peer on local lines only, each line naming its database(s) and role(s)
      (never `all`), valid CIDR addresses, TLS-only (hostssl) lines for every
      address that is not loopback, and no 0.0.0.0/0 or ::/0 unless --allow-any.
  pg_validate.py loaded --port 5432 FILE...
      (as postgres) prints JSON: which of the FILEs changed after the server
      last loaded its configuration, and which settings wait for a restart.
      A run killed between writing a file and its handler leaves exactly
      that behind; the next run sees it here and reloads/restarts.
"""

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile

TYPES = {"local", "host", "hostssl", "hostnossl"}
METHODS = {"scram-sha-256", "peer", "reject"}


def check_conf(path, bindir):
    workdir = tempfile.mkdtemp(prefix="pg-validate-")
    try:
        copy = os.path.join(workdir, "postgresql.conf")
        shutil.copyfile(path, copy)
        shutil.chown(workdir, "postgres")
        shutil.chown(copy, "postgres")
        proc = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                os.path.join(bindir, "postgres"),
                "--config-file=" + copy,
                "-C",
                "data_directory",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr.replace(copy, "postgresql.conf"))
            return 1
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def hba_errors(lines, allow_any):
    errors = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            errors.extend("line %d: %s" % (number, e) for e in hba_line_errors(line.split(), allow_any))
    return errors


def hba_line_errors(fields, allow_any):
    """What is wrong with one pg_hba line (its fields)."""
    kind = fields[0]
    if kind not in TYPES:
        return ["connection type %r is not one of %s" % (kind, sorted(TYPES))]
    need = 4 if kind == "local" else 5
    if len(fields) < need:
        return ["expected TYPE DATABASE USER%s METHOD" % ("" if kind == "local" else " ADDRESS")]
    method = fields[need - 1]
    errors = []
    if method not in METHODS:
        errors.append("method %r is not allowed (use %s)" % (method, ", ".join(sorted(METHODS))))
    if method == "peer" and kind != "local":
        errors.append("peer authentication is for local (socket) lines only")
    if method != "reject":
        for field, value in (("database", fields[1]), ("user", fields[2])):
            if "all" in value.split(","):
                errors.append("%s 'all': name the %s(s) the line is for" % (field, field))
    if kind != "local":
        errors.extend(hba_address_errors(kind, fields[3], method, allow_any))
    return errors


def hba_address_errors(kind, address, method, allow_any):
    try:
        network = ipaddress.ip_network(address, strict=True)
    except ValueError:
        return ["%r is not a network in CIDR form" % address]
    errors = []
    if network.prefixlen == 0 and not allow_any:
        errors.append("%s admits every address; not allowed without --allow-any" % address)
    if kind != "hostssl" and method != "reject" and not network.is_loopback:
        errors.append("%s is not loopback: use hostssl (TLS only)" % address)
    return errors


def check_hba(path, allow_any):
    with open(path, encoding="utf-8") as handle:
        errors = hba_errors(handle.read().splitlines(), allow_any)
    for error in errors:
        sys.stderr.write("pg_hba.conf %s\n" % error)
    return 1 if errors else 0


def check_loaded(port, files):
    query = (
        "SELECT extract(epoch FROM pg_conf_load_time()),"
        " coalesce((SELECT string_agg(name, ',') FROM pg_settings WHERE pending_restart), '')"
    )
    out = subprocess.run(
        [
            "psql",
            "--no-psqlrc",
            "--port",
            str(port),
            "--dbname",
            "postgres",
            "--tuples-only",
            "--no-align",
            "--field-separator",
            "|",
            "--command",
            query,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        return 1
    loaded_at, pending = out.stdout.strip().split("|")
    newer = [path for path in files if os.path.exists(path) and os.stat(path).st_mtime > float(loaded_at)]
    print(
        json.dumps(
            {"loaded_at": float(loaded_at), "newer": newer, "pending_restart": [p for p in pending.split(",") if p]}
        )
    )
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    conf = sub.add_parser("conf")
    conf.add_argument("--bindir", required=True)
    conf.add_argument("file")
    hba = sub.add_parser("hba")
    hba.add_argument("--allow-any", action="store_true")
    hba.add_argument("file")
    loaded = sub.add_parser("loaded")
    loaded.add_argument("--port", type=int, required=True)
    loaded.add_argument("files", nargs="+")
    args = parser.parse_args()
    if args.kind == "loaded":
        return check_loaded(args.port, args.files)
    if args.kind == "conf":
        return check_conf(args.file, args.bindir)
    return check_hba(args.file, args.allow_any)


if __name__ == "__main__":
    sys.exit(main())
