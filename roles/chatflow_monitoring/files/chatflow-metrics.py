#!/usr/bin/python3
"""Write the ChatFlow host's slow-moving facts as node_exporter textfile metrics.

What no exporter reads: the newest pgBackRest backup of each type (pgbackrest
info, as postgres) and the expiry of the certificates.  Written atomically
(a temporary file renamed over the .prom file), so node_exporter never reads
half a file.  Run by chatflow-metrics.timer.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime


def backup_lines(stanza):
    """Metric lines of the newest backup of each type, and whether pgbackrest info answered."""
    try:
        out = subprocess.run(
            ["runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=" + stanza, "--output=json", "info"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        backups = json.loads(out)[0].get("backup", [])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        print("pgbackrest info failed: %s" % exc, file=sys.stderr)
        return ["chatflow_pgbackrest_info_ok 0"]
    newest = {}
    for backup in backups:
        if backup.get("error"):
            continue
        kind, stop = backup["type"], backup["timestamp"]["stop"]
        newest[kind] = max(newest.get(kind, 0), stop)
    lines = ["chatflow_pgbackrest_info_ok 1"]
    lines += ['chatflow_pgbackrest_last_backup_timestamp_seconds{type="%s"} %d' % kv for kv in sorted(newest.items())]
    return lines


def certificate_lines(paths):
    """Metric lines of each certificate's notAfter."""
    lines = []
    for path in paths:
        try:
            out = subprocess.run(
                ["openssl", "x509", "-noout", "-enddate", "-in", path], capture_output=True, text=True, check=True
            ).stdout
        except (subprocess.SubprocessError, OSError) as exc:
            print("cannot read %s: %s" % (path, exc), file=sys.stderr)
            continue
        not_after = out.strip().split("=", 1)[1]
        when = datetime.strptime(not_after, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
        lines.append('chatflow_tls_certificate_not_after_timestamp_seconds{file="%s"} %d' % (path, when.timestamp()))
    return lines


HELP = """# HELP chatflow_pgbackrest_info_ok Whether pgbackrest info answered at the last run.
# TYPE chatflow_pgbackrest_info_ok gauge
# HELP chatflow_pgbackrest_last_backup_timestamp_seconds When the newest good backup of each type finished.
# TYPE chatflow_pgbackrest_last_backup_timestamp_seconds gauge
# HELP chatflow_tls_certificate_not_after_timestamp_seconds When each certificate expires.
# TYPE chatflow_tls_certificate_not_after_timestamp_seconds gauge
# HELP chatflow_metrics_last_run_timestamp_seconds When this file was written.
# TYPE chatflow_metrics_last_run_timestamp_seconds gauge
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the .prom file")
    parser.add_argument("--stanza", help="the pgBackRest stanza (none: no backup metrics)")
    parser.add_argument("--cert", action="append", default=[], help="a certificate file (repeat)")
    args = parser.parse_args()
    lines = (backup_lines(args.stanza) if args.stanza else []) + certificate_lines(args.cert)
    lines.append("chatflow_metrics_last_run_timestamp_seconds %d" % time.time())
    directory = os.path.dirname(args.out)
    with tempfile.NamedTemporaryFile("w", dir=directory, prefix=".chatflow-", delete=False) as tmp:
        tmp.write(HELP + "\n".join(lines) + "\n")
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
