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
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2

from tools.bench import rls, workload

PROTOCOLS = ("extended", "prepared")
PARAMS_TABLE = "bench_rls_params"
# Every parameter any query of the workload takes (a column of the parameter table each).
PARAMETERS = ("user", "channel", "content", "before", "before_id", "root", "query", "pattern", "message", "emoji")
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def to_pgbench(sql: str) -> str:
    """A workload statement with pgbench's variables (:p_name) for its %(name)s parameters."""
    return PLACEHOLDER.sub(lambda m: f":p_{m.group(1)}", sql).replace("%%", "%")


def script(op: str, sql: str, rows: int) -> str:
    """One transaction of op: draw a parameter row, set the user, run the query, roll back."""
    used = sorted(set(PLACEHOLDER.findall(workload.SET_USER + sql)))
    columns = ", ".join(f'"{name}" AS p_{name}' for name in used)
    return "\n".join(
        (
            f"\\set k random(1, {rows})",
            f"SELECT {columns} FROM {PARAMS_TABLE} WHERE op = '{op}' AND k = :k \\gset",
            "BEGIN;",
            to_pgbench(workload.SET_USER) + ";",
            to_pgbench(sql) + ";",
            "ROLLBACK;",
            "",
        )
    )


def fill_parameters(admin, catalog: workload.Catalog, rows: int) -> None:
    """The parameter table (readable by every role): rows per operation, users allowed to see
    the thread or message they name (as tools/bench/rls.py draws them)."""
    admin.execute(f"DROP TABLE IF EXISTS {PARAMS_TABLE}")
    columns = ", ".join(f'"{name}" text' for name in PARAMETERS)
    admin.execute(f"CREATE TABLE {PARAMS_TABLE} (op text, k integer, {columns}, PRIMARY KEY (op, k))")
    admin.execute(f"GRANT SELECT ON {PARAMS_TABLE} TO PUBLIC")
    insert = f"INSERT INTO {PARAMS_TABLE} VALUES (%s, %s{', %s' * len(PARAMETERS)})"
    for op in workload.QUERIES:
        for k in range(1, rows + 1):
            params = rls.visible_params(admin, catalog, op)
            admin.execute(insert, (op, k, *(_text(params.get(name)) for name in PARAMETERS)))
    admin.execute(f"ANALYZE {PARAMS_TABLE}")


def _text(value) -> str | None:
    return None if value is None else str(value)


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
