"""The ChatFlow mix driven by pgbench (a C client), so the server, not the client, sets the pace.

One pgbench script per hot operation, weighted as workload.WEIGHTS (the single place the mix's
weights live), each running the operation's SQL from workload.QUERIES (the SQL the plan tests
check) as one autocommit statement, after drawing its parameters from a table filled from the
data (PARAMS_TABLE, `rows` per operation; users that may see what the parameters name).
A transaction is therefore the parameter lookup (an index lookup, a few hundredths of a ms) and
the operation.  Channel history always reads the first page (pgbench keeps no keyset cursor).

Reported: the mix's throughput, per operation the transactions, p50/p95/p99 of the whole
transaction (from pgbench's --log) and the operation statement's mean latency (-r), and the CPU
the client used against what the machine (the container's cgroup) used in all: a run is called
server-bound when the client used under CLIENT_SHARE_LIMIT of it.

Runs where the database is (stdlib only, psycopg2 for the parameter table):

    python3 pgbench_mix.py fill --dsn DSN [--rows 500]
    python3 pgbench_mix.py run  --dsn DSN [--clients 2] [--seconds 30] [--protocol extended]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from tools.bench import workload
except ImportError:  # in the sandbox, beside workload.py
    import workload  # type: ignore[no-redef]

PARAMS_TABLE = "bench_params"
# Every parameter any query of the workload takes (a column of the parameter table each).
PARAMETERS = ("user", "channel", "content", "before", "before_id", "root", "query", "pattern", "message", "emoji")
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
PROTOCOLS = ("simple", "extended", "prepared")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
CLIENT_SHARE_LIMIT = 0.25
# A line of -r's report: the mean latency, the failures (PostgreSQL 15), the statement.
STATEMENT_LINE = re.compile(r"^\s+([0-9.]+)\s+(?:[0-9]+\s+)?(\S.*)$")
CGROUP_CPU = Path("/sys/fs/cgroup/cpu.stat")


def to_pgbench(sql: str) -> str:
    """A workload statement with pgbench's variables (:p_name) for its %(name)s parameters."""
    return PLACEHOLDER.sub(lambda m: f":p_{m.group(1)}", sql).replace("%%", "%")


def lookup(op: str, sql: str, rows: int, quoted: bool = False) -> str:
    """The two lines that draw a parameter row of op for the statement sql (pgbench variables p_*).
    quoted: as SQL literals, for the simple protocol (pgbench then pastes a variable's text into
    the statement, as a client library interpolating its parameters does)."""
    used = sorted(set(PLACEHOLDER.findall(sql)))
    column = 'quote_nullable("{0}") AS p_{0}' if quoted else '"{0}" AS p_{0}'
    columns = ", ".join(column.format(name) for name in used)
    return f"\\set k random(1, {rows})\nSELECT {columns} FROM {PARAMS_TABLE} WHERE op = '{op}' AND k = :k \\gset\n"


def script(op: str, rows: int, queries: dict[str, str] | None = None, protocol: str = "extended", **kw) -> str:
    """One transaction of the mix: draw the parameters, run the operation (autocommit); with
    set_user, in a transaction that sets app.user_id first (a request under row-level security)."""
    sql = (queries or workload.QUERIES)[op]
    if not kw.get("set_user"):
        return lookup(op, sql, rows, quoted=protocol == "simple") + to_pgbench(sql) + ";\n"
    draw = lookup(op, workload.SET_USER + sql, rows, quoted=protocol == "simple")
    return f"{draw}BEGIN;\n{to_pgbench(workload.SET_USER)};\n{to_pgbench(sql)};\nCOMMIT;\n"


def fill_parameters(cur, catalog: workload.Catalog, rows: int) -> None:
    """The parameter table (readable by every role): rows per operation, users allowed to see
    the thread or message they name, so the same table serves a request under row-level security."""
    cur.execute(f"DROP TABLE IF EXISTS {PARAMS_TABLE}")
    columns = ", ".join(f'"{name}" text' for name in PARAMETERS)
    cur.execute(f"CREATE TABLE {PARAMS_TABLE} (op text, k integer, {columns}, PRIMARY KEY (op, k))")
    cur.execute(f"GRANT SELECT ON {PARAMS_TABLE} TO PUBLIC")
    insert = f"INSERT INTO {PARAMS_TABLE} VALUES (%s, %s{', %s' * len(PARAMETERS)})"
    for op in workload.QUERIES:
        for k in range(1, rows + 1):
            params = workload.visible_params(cur, catalog, op)
            cur.execute(insert, (op, k, *(None if params.get(n) is None else str(params[n]) for n in PARAMETERS)))
    cur.execute(f"ANALYZE {PARAMS_TABLE}")


def drop_parameters(cur) -> None:
    cur.execute(f"DROP TABLE IF EXISTS {PARAMS_TABLE}")


def machine_cpu_s() -> float:
    """CPU seconds the container's cgroup has used (every process in it: server, client,
    exporters); outside a container, the whole machine's busy time (/proc/stat)."""
    if CGROUP_CPU.exists():
        for line in CGROUP_CPU.read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def pgbench(args: list[str], cwd: str) -> tuple[str, float]:
    """Run pgbench; its output and the CPU seconds it used (an error says why it failed)."""
    before = os.times()
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=cwd)
    after = os.times()
    if done.returncode != 0 or "aborted" in done.stderr:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return done.stdout, cpu


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def transaction_latencies(log_dir: Path, ops: list[str]) -> dict[str, list[float]]:
    """Per operation, each transaction's latency in ms from pgbench's --log files
    (fields: client, transaction, latency in us, script number, epoch, us)."""
    out: dict[str, list[float]] = {op: [] for op in ops}
    for path in log_dir.glob("mix.*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            out[ops[int(fields[3])]].append(int(fields[2]) / 1000)
    return out


def statement_means(output: str, ops: list[str], queries: dict[str, str]) -> dict[str, float]:
    """The mean latency in ms pgbench reports (-r) for each operation's own statement."""
    means: dict[str, float] = {}
    for block in re.split(r"^SQL script \d+: ", output, flags=re.M)[1:]:
        name = Path(block.splitlines()[0].strip()).stem
        head = to_pgbench(queries[name])[:40]
        for line in block.splitlines():
            match = STATEMENT_LINE.match(line)
            if match and match.group(2).startswith(head):
                means[name] = float(match.group(1))
    missing = set(ops) - set(means)
    if missing:
        raise RuntimeError(f"pgbench reported no statement latency for {sorted(missing)}:\n{output[-1500:]}")
    return means


def run_mix(dsn: str, *, clients: int, seconds: float, protocol: str, rows: int, **kw) -> dict:
    """The weighted mix for `seconds` with `clients` connections: throughput, latencies, CPU shares."""
    queries = kw.get("queries") or workload.QUERIES
    weights = kw.get("weights") or workload.WEIGHTS
    ops = sorted(weights)
    with tempfile.TemporaryDirectory(prefix="chatflow-pgbench-") as tmp:
        args = [kw.get("pgbench", PGBENCH), "-n", "-r", "-M", protocol, "-c", str(clients)]
        args += ["-j", str(min(clients, kw.get("threads", 1))), "-T", str(int(seconds))]
        args += ["--random-seed", str(kw.get("random_seed", 7)), "--log", "--log-prefix", f"{tmp}/mix"]
        for op in ops:
            path = Path(tmp) / f"{op}.sql"
            path.write_text(script(op, rows, queries, protocol, set_user=kw.get("set_user", False)))
            args += ["-f", f"{path}@{weights[op]}"]
        machine_before = machine_cpu_s()
        started = time.monotonic()
        output, client_cpu = pgbench([*args, dsn], tmp)
        wall = time.monotonic() - started
        machine = machine_cpu_s() - machine_before
        latencies = transaction_latencies(Path(tmp), ops)
    return summarize(latencies, statement_means(output, ops, queries), wall, client_cpu, machine) | {
        "clients": clients,
        "protocol": protocol,
        "seconds": seconds,
    }


def summarize(latencies: dict, means: dict, wall: float, client_cpu: float, machine_cpu: float) -> dict:
    total = sum(len(v) for v in latencies.values())
    per_op = {
        op: {
            "n": len(v),
            "per_s": round(len(v) / wall, 1),
            "p50": round(percentile(v, 0.50), 3),
            "p95": round(percentile(v, 0.95), 3),
            "p99": round(percentile(v, 0.99), 3),
            "statement_mean": means[op],
        }
        for op, v in latencies.items()
    }
    server = max(machine_cpu - client_cpu, 0.0)
    share = client_cpu / machine_cpu if machine_cpu > 0 else 1.0
    cpu = {
        "client_s": round(client_cpu, 2),
        "machine_s": round(machine_cpu, 2),
        "wall_s": round(wall, 2),
        "client_share": round(share, 3),
        "server_ms_per_tx": round(server * 1000 / total, 3) if total else None,
        "server_bound": share < CLIENT_SHARE_LIMIT,
    }
    return {"tps": round(total / wall, 1), "transactions": total, "ops": per_op, "cpu": cpu}


def explain_p95(cur, op: str) -> str:
    """Run the operation once for each of its parameter rows (in a transaction rolled back), then show
    the plan, with its buffers, of the row at the 95th percentile of those times: the case the p95 is."""
    cur.execute(f"SELECT * FROM {PARAMS_TABLE} WHERE op = %s ORDER BY k", (op,))
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if not rows:
        raise SystemExit(f"no parameter rows for {op}: run the fill mode first")
    timed = []
    for row in rows:
        cur.execute("BEGIN")
        started = time.perf_counter()
        cur.execute(workload.QUERIES[op], row)
        timed.append(((time.perf_counter() - started) * 1000, row))
        cur.execute("ROLLBACK")
    timed.sort(key=lambda t: t[0])
    ms, row = timed[min(len(timed) - 1, int(0.95 * len(timed)))]
    cur.execute("BEGIN")
    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + workload.QUERIES[op], row)
    plan = [r[0] for r in cur.fetchall()]
    cur.execute("ROLLBACK")
    used = {k: v for k, v in row.items() if v is not None and k not in ("op", "k")}
    median = timed[len(timed) // 2][0]
    head = f"the parameter row at the 95th percentile of {len(timed)} ({ms:.2f} ms, median {median:.2f} ms): {used}"
    return "\n".join([head, *plan])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("fill", "run", "drop", "explain"))
    parser.add_argument("--op", help="explain: the operation")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="extended")
    parser.add_argument("--pgbench", default=PGBENCH)
    parser.add_argument("--request", action="store_true", help="the request's SQL, app.user_id set per transaction")
    parser.add_argument("--set-user", action="store_true", help="set app.user_id per transaction (the same SQL)")
    args = parser.parse_args(argv)
    if args.mode == "run":
        result = run_mix(
            args.dsn,
            clients=args.clients,
            seconds=args.seconds,
            protocol=args.protocol,
            rows=args.rows,
            threads=args.threads,
            pgbench=args.pgbench,
            queries=workload.REQUEST_QUERIES if args.request else workload.QUERIES,
            set_user=args.request or args.set_user,
        )
        print(json.dumps(result))
        return 0
    import psycopg2  # noqa: PLC0415  (only filling needs a driver)

    conn = psycopg2.connect(args.dsn)
    conn.autocommit = True
    cur = conn.cursor()
    if args.mode == "fill":
        fill_parameters(cur, workload.Catalog.from_messages(cur, random.Random(7)), args.rows)
    elif args.mode == "explain":
        print(explain_p95(cur, args.op))
    else:
        drop_parameters(cur)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
