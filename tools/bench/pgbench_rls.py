"""What row-level security costs, measured with pgbench (a C client) in the extended and prepared protocols.

tools/bench/rls.py measures through Python, whose own overhead is of the order of the queries;
here pgbench runs each hot query of tools/bench/workload.py as a request (a role subject to
row-level security, REQUEST_QUERIES, app.user_id set in the transaction) and unrestricted (a
BYPASSRLS role, QUERIES, the same set_config), with the same parameters (a table of them drawn
from workload.Catalog, the same random seed on both sides), each transaction rolled back.  Two
protocols: "extended" (unnamed statements, planned at every execution: what a client gets through
PgBouncer's transaction pool) and "prepared" (named statements, planned once per session: what a
direct connection can use).  pgbench's per-statement latency of the query itself is reported
(the mean over the transactions), rounds alternating between the sides.

    python3 -m tools.bench.pgbench_rls --admin-dsn DSN --bypass-dsn DSN --request-dsn DSN \\
        [--transactions 2000] [--rounds 3] [--pgbench /usr/lib/postgresql/15/bin/pgbench]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2

from tools.bench import pgbench_mix, workload

PROTOCOLS = ("extended", "prepared")
PGBENCH = pgbench_mix.PGBENCH
PARAMS_TABLE = pgbench_mix.PARAMS_TABLE
fill_parameters = pgbench_mix.fill_parameters
to_pgbench = pgbench_mix.to_pgbench


def script(op: str, sql: str, rows: int) -> str:
    """One transaction of op: draw a parameter row, set the user, run the query, roll back."""
    draw = pgbench_mix.lookup(op, workload.SET_USER + sql, rows)
    return f"{draw}BEGIN;\n{to_pgbench(workload.SET_USER)};\n{to_pgbench(sql)};\nROLLBACK;\n"


def statement_latency(output: str, sql: str) -> float:
    """The mean latency in ms pgbench reports (-r) for the statement that starts like sql."""
    head = to_pgbench(sql)[:40]
    for line in output.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[2].startswith(head):
            return float(fields[0])
    raise RuntimeError(f"pgbench reported no latency for {head!r}:\n{output}")


def run(pgbench: str, dsn: str, protocol: str, path: Path, transactions: int) -> str:
    """One pgbench run of a script; its output (an error says why it failed)."""
    cmd = [pgbench, "-n", "-r", "-M", protocol, "-t", str(transactions), "--random-seed=7", "-f", str(path), dsn]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or "aborted" in done.stderr:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def compare(dsns: dict[str, str], rows: int, transactions: int, rounds: int, pgbench: str = PGBENCH) -> dict:
    """Per protocol and operation: each side's mean query latency (median over the rounds) and the ratio."""
    sides = {"bypass": workload.QUERIES, "request": workload.REQUEST_QUERIES}
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="chatflow-pgbench-") as tmp:
        for protocol in PROTOCOLS:
            for op in sorted(workload.QUERIES):
                times: dict[str, list[float]] = {side: [] for side in sides}
                for n in range(rounds):
                    for side in sides if n % 2 else reversed(list(sides)):
                        path = Path(tmp) / f"{op}-{side}.sql"
                        path.write_text(script(op, sides[side][op], rows))
                        out = run(pgbench, dsns[side], protocol, path, transactions)
                        times[side].append(statement_latency(out, sides[side][op]))
                entry = {side: round(statistics.median(t), 3) for side, t in times.items()}
                entry["ratio"] = round(entry["request"] / entry["bypass"], 2)
                report.setdefault(protocol, {})[op] = entry
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for side in ("admin", "bypass", "request"):
        parser.add_argument(f"--{side}-dsn", required=True)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pgbench", default=PGBENCH)
    args = parser.parse_args(argv)
    conn = psycopg2.connect(args.admin_dsn)
    conn.autocommit = True
    admin = conn.cursor()
    catalog = workload.Catalog.from_messages(admin, random.Random(7))
    fill_parameters(admin, catalog, args.rows)
    dsns = {"bypass": args.bypass_dsn, "request": args.request_dsn}
    print(json.dumps(compare(dsns, args.rows, args.transactions, args.rounds, args.pgbench), indent=2))
    admin.execute(f"DROP TABLE {PARAMS_TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
