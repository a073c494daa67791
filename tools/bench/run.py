"""`make bench`: the ChatFlow workload on the sandbox, ours against the seed's design, side by side.

On the provisioned sandbox container, two PostgreSQL 15 clusters are created
for the benchmark (the sandbox's own `chatflow_mvp` is only read, for its
schema, roles and settings):

  ours  (port 5441): the sandbox's schema, roles and grants (pg_dump -s,
        pg_dumpall -g) and the settings its postgresql.conf sets;
  seed  (port 5442): the seed document's schema as written, fixed only enough
        to run (tools/seed_sql.py), on Debian's default configuration.

Both get the same generated data (tools/bench/datagen.py), loaded the same way.
The mix runs through the app role (`chatflow_app`, over TCP on loopback) on
one side, then the other; then 200 clients against PgBouncer's 20-connection
pool and directly; then the app's Redis operations through its ACL user.
Tables, ratios and a PNG of the latency distributions are written; the raw
numbers go to .state/bench/results.json.

    python3 -m tools.bench.run [--messages N] [--seconds S] [--clients C] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from tools import inputs, seed_sql
from tools.bench import datagen

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".state" / "bench"
DOCS = ROOT / "docs" / "performance"
REMOTE = "/var/tmp/chatflow-bench"
PORTS = {"ours": 5441, "seed": 5442}
POOLER_PORT = 6441
# Settings of the sandbox's cluster that describe that cluster, not its tuning.
NOT_COPIED = {
    "port",
    "data_directory",
    "hba_file",
    "ident_file",
    "external_pid_file",
    "cluster_name",
    "listen_addresses",
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_min_protocol_version",
    "ssl_ciphers",
    "unix_socket_directories",
    "stats_temp_directory",
    # The sandbox's WAL archive (pgBackRest's stanza names the sandbox's data directory): a benchmark
    # cluster archives nothing.
    "archive_mode",
    "archive_command",
    "archive_timeout",
    "restore_command",
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def stamp() -> str:
    """When, on which commit and on what machine a run was taken, for the printout's first line."""
    argv = ["git", "rev-parse", "--short", "HEAD"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    changed = ["git", "status", "--porcelain", "--", "tools"]
    dirty = subprocess.run(changed, capture_output=True, text=True, cwd=ROOT, check=False)
    commit = (done.stdout.strip() or "unknown") + (" (with uncommitted changes to tools/)" if dirty.stdout else "")
    cores = len(os.sched_getaffinity(0))
    return f"{datetime.now(UTC):%Y-%m-%d}, commit {commit}, {platform.node()} ({platform.machine()}, {cores} cores)"


class Box:
    """docker exec into the sandbox."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.db = "chatflow_mvp"

    def sh(self, script: str, user: str = "root", env: dict | None = None, check: bool = True, stdin=None) -> str:
        cmd = ["docker", "exec", "-i", "-u", user, "-w", "/tmp"]
        for k, v in (env or {}).items():
            cmd += ["-e", f"{k}={v}"]
        cmd += [self.name, "bash", "-eo", "pipefail", "-c", script]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False, input=stdin)
        if check and p.returncode:
            raise RuntimeError(f"in {self.name}: {script[:200]}\n{p.stderr.strip()[-2000:]}")
        return p.stdout

    def psql(self, port: int, sql: str, db: str = "postgres") -> str:
        return self.sh(f"psql -X -q -At -v ON_ERROR_STOP=1 -p {port} -d {shlex.quote(db)}", user="postgres", stdin=sql)

    def cp(self, src: Path, dest: str) -> None:
        subprocess.run(["docker", "cp", "-q", str(src), f"{self.name}:{dest}"], check=True)


def env_file(box: Box) -> dict[str, str]:
    out = box.sh("cat /home/agenti/my-mvp-slack/.env.database")
    env = {}
    for line in out.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


def prepare_data(messages: int, seed: int) -> tuple[Path, dict]:
    out = STATE / f"data-{messages}-{seed}"
    summary = out / "summary.json"
    if not summary.exists():
        log(f"generating {messages} messages into {out}")
        datagen.generate(out, datagen.Scale.for_messages(messages), seed)
    return out, json.loads(summary.read_text())


def upload(box: Box, data: Path) -> str:
    remote = f"{REMOTE}/{data.name}"
    if box.sh(f"test -f {remote}/summary.json && echo yes || true").strip() != "yes":
        log(f"copying {data.name} into the sandbox")
        box.sh(f"mkdir -p {REMOTE} && rm -rf {remote}.part")
        box.cp(data, f"{REMOTE}/{data.name}.part")
        box.sh(f"mv {remote}.part {remote} && chown -R postgres: {REMOTE}")
    # The clients: workload, redisbench, and redis-py (psycopg2 is on the host already).
    lib = Path(sys.modules["redis"].__file__).parent if "redis" in sys.modules else None
    if lib is None:
        import redis  # noqa: PLC0415  (only the orchestrator needs it, to find the package)

        lib = Path(redis.__file__).parent
    box.sh(f"mkdir -p {REMOTE}/lib && rm -rf {REMOTE}/lib/redis {REMOTE}/lib/async_timeout")
    box.cp(lib, f"{REMOTE}/lib/redis")
    # redis-py needs async-timeout on Debian 12's Python 3.11.2 (the host's may not).
    wheels = STATE / "wheels"
    if not list(wheels.glob("async_timeout-*.whl")):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), "async-timeout==5.0.1"],
            check=True,
        )
    with zipfile.ZipFile(next(wheels.glob("async_timeout-*.whl"))) as whl:
        whl.extractall(STATE / "async_timeout_pkg")
    box.cp(STATE / "async_timeout_pkg" / "async_timeout", f"{REMOTE}/lib/async_timeout")
    for f in ("workload.py", "redisbench.py", "pgbench_mix.py"):
        box.cp(Path(__file__).parent / f, f"{REMOTE}/{f}")
    box.sh(f"chown -R postgres: {REMOTE}")
    return remote


def cluster_exists(box: Box, name: str) -> bool:
    return box.sh(f"test -d /etc/postgresql/15/{name} && echo yes || true").strip() == "yes"


def create_clusters(box: Box, app_password: str, sides: tuple[str, ...] = tuple(PORTS)) -> None:
    """ours: the sandbox's settings, schema, roles and grants; seed: Debian's defaults and the seed schema."""
    tuned = box.psql(
        5432,
        "SELECT name || ' = ' || quote_literal(current_setting(name)) FROM pg_settings "
        "WHERE source = 'configuration file' ORDER BY name",
    )
    lines = [ln for ln in tuned.splitlines() if ln.split(" = ")[0] not in NOT_COPIED]
    for side in sides:
        if cluster_exists(box, f"bench_{side}"):
            box.sh(f"pg_dropcluster --stop 15 bench_{side}")
        box.sh(f"pg_createcluster -p {PORTS[side]} 15 bench_{side} >/dev/null")
    conf = "# The sandbox's tuning, copied by tools/bench/run.py\n" + "\n".join(lines) + "\n"
    box.sh("cat > /etc/postgresql/15/bench_ours/conf.d/chatflow-tuned.conf", stdin=conf)
    for side in sides:
        start_cluster(box, side)
    log(f"ours: {len(lines)} settings copied from the sandbox's cluster; seed: Debian's defaults")

    # ours: roles (with their SCRAM secrets) and the schema with its grants.
    box.sh(
        f"pg_dumpall -p 5432 --globals-only | psql -X -q -p {PORTS['ours']} -d postgres >/dev/null 2>&1 || true; "
        f"pg_dump -p 5432 --schema-only --create chatflow_mvp "
        f"| psql -X -q -v ON_ERROR_STOP=1 -p {PORTS['ours']} -d postgres >/dev/null",
        user="postgres",
    )
    if "seed" not in sides:
        return
    # seed: the app role first (the seed's GRANTs name it), then the schema as written (fixed to run).
    box.psql(
        PORTS["seed"],
        "SET password_encryption = 'scram-sha-256';\n"  # pragma: allowlist secret
        f"CREATE ROLE chatflow_app LOGIN PASSWORD {sql_literal(app_password)};\n"  # pragma: allowlist secret
        "CREATE DATABASE chatflow_mvp ENCODING 'UTF8' TEMPLATE template0;\n",
    )
    box.psql(PORTS["seed"], seed_design_sql(), db="chatflow_mvp")


def start_cluster(box: Box, side: str) -> None:
    """Start a benchmark cluster (restart if running); an error with its log's tail when it does not come up."""
    # The host's start limit (roles/chatflow_common) covers every postgresql@ unit: a benchmark that
    # restarts its cluster on purpose clears the count first (a unit not loaded yet, such as a kept
    # cluster's after the sandbox restarted, has no count: that is not an error).
    done = box.sh(
        f"systemctl reset-failed postgresql@15-bench_{side} 2>/dev/null || true; "
        f"pg_ctlcluster 15 bench_{side} restart 2>&1 && pg_isready -q -t 30 -p {PORTS[side]}; echo rc=$?",
        check=False,
    )
    if not done.rstrip().endswith("rc=0"):
        log_tail = box.sh(f"tail -n 20 /var/log/postgresql/postgresql-15-bench_{side}.log", check=False)
        raise RuntimeError(f"the benchmark cluster bench_{side} did not start:\n{done.strip()}\n{log_tail}")


def seed_design_sql() -> str:
    """The seed's schema fixed only enough to run, with its GRANTs and the unread-count column."""
    return seed_sql.seed_schema_fixed(keep_grants=True, unread_counts=True)


def sql_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def load(box: Box, side: str, remote: str, phases: dict | None = None) -> float:
    """Same for both sides: drop the secondary indexes, COPY, build them again, VACUUM ANALYZE."""
    return load_into(box, PORTS[side], remote, phases=phases)


def load_into(box: Box, port: int, remote: str, db: str = "chatflow_mvp", phases: dict | None = None) -> float:
    """Load the generated data into database `db` on `port` (its schema in place); the seconds it took
    (and, into `phases`, those of the COPY, the index builds and the VACUUM ANALYZE)."""
    t0 = time.monotonic()
    phases = {} if phases is None else phases
    indexes = box.psql(
        port,
        "SELECT pg_get_indexdef(i.indexrelid) || ';' FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE n.nspname = 'public' AND t.relkind = 'r' "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
        db=db,
    ).splitlines()
    names = box.psql(
        port,
        "SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ') FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE n.nspname = 'public' AND t.relkind = 'r' "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
        db=db,
    ).strip()
    copies = "".join(f"COPY {t} ({', '.join(cols)}) FROM '{remote}/{t}.tsv';\n" for t, cols in datagen.COLUMNS.items())
    tables = ", ".join(datagen.COLUMNS)
    box.psql(
        port,
        f"BEGIN;\nTRUNCATE {tables} CASCADE;\n" + (f"DROP INDEX {names};\n" if names else "") + copies + "COMMIT;\n",
        db=db,
    )
    t1 = time.monotonic()
    box.psql(port, "SET maintenance_work_mem = '1GB';\n" + "\n".join(indexes) + "\n", db=db)
    t2 = time.monotonic()
    # Not in parallel: a parallel VACUUM keeps its dead tuples in /dev/shm, 64 MB in a container.
    box.psql(
        port,
        "SET max_parallel_maintenance_workers = 0;\nVACUUM ANALYZE;\nREFRESH MATERIALIZED VIEW channel_stats;\n"
        "CHECKPOINT;",
        db=db,
    )
    t3 = time.monotonic()
    phases.update(copy_s=round(t1 - t0, 1), index_s=round(t2 - t1, 1), vacuum_s=round(t3 - t2, 1))
    return t3 - t0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def summarize(result: dict) -> dict:
    out = {}
    for op, v in sorted(result["latencies"].items()):
        out[op] = {
            "n": len(v),
            "per_s": len(v) / result["seconds"],
            "p50": pct(v, 0.50),
            "p95": pct(v, 0.95),
            "p99": pct(v, 0.99),
        }
    return out


def table(title: str, rows: dict) -> str:
    lines = [title, f"  {'operation':<24}{'ops/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"]
    for op, r in rows.items():
        lines.append(f"  {op:<24}{r['per_s']:>9.1f}{r['p50']:>9.2f}{r['p95']:>9.2f}{r['p99']:>9.2f}")
    return "\n".join(lines)


def workload(box: Box, env: dict, summary: dict, mode: str, *args: str) -> dict:
    """Run tools/bench/workload.py in the sandbox as postgres (the app's password in the environment)."""
    argv = [
        "python3",
        f"{REMOTE}/workload.py",
        mode,
        *args,
        "--words",
        json.dumps(summary["search_words"]),
        "--fragments",
        json.dumps(summary["fuzzy_fragments"]),
    ]
    return json.loads(box.sh(shlex.join(argv), user="postgres", env={"PGPASSWORD": env["DB_PASSWORD"]}))


def run_mix(box: Box, side: str, env: dict, summary: dict, *, clients: int, seconds: float) -> dict:
    dsn = f"host=127.0.0.1 port={PORTS[side]} dbname=chatflow_mvp user=chatflow_app sslmode=disable"
    refresh_sql = "SELECT refresh_channel_stats()" if side == "ours" else "REFRESH MATERIALIZED VIEW channel_stats"
    # The seed's app role does not own the view (only its owner may refresh it): a job as postgres does.
    refresh_dsn = "" if side == "ours" else f"host=/var/run/postgresql port={PORTS[side]} dbname=chatflow_mvp"
    return workload(
        box,
        env,
        summary,
        "mix",
        *("--dsn", dsn, "--clients", str(clients), "--seconds", str(seconds)),
        *("--refresh-sql", refresh_sql, "--refresh-dsn", refresh_dsn),
    )


def start_bench_pgbouncer(box: Box) -> bool:
    """A second PgBouncer with the sandbox's settings and auth file, in front of the ours cluster."""
    ini = box.sh("cat /etc/pgbouncer/pgbouncer.ini 2>/dev/null || true")
    if "[pgbouncer]" not in ini:
        return False
    out = []
    for original in ini.splitlines():
        key = original.split("=")[0].strip()
        if original.startswith("%include") or key in {"logfile", "pidfile"}:
            continue
        line = f"{box.db} = host=127.0.0.1 port={PORTS['ours']} dbname={box.db}" if key == box.db else original
        out.append(line)
        if line.strip() == "[pgbouncer]":
            out += [
                "listen_addr = 127.0.0.1",
                f"listen_port = {POOLER_PORT}",
                "unix_socket_dir =",
                f"pidfile = {REMOTE}/pgbouncer.pid",
                f"logfile = {REMOTE}/pgbouncer.log",
            ]
    box.sh(f"cat > {REMOTE}/pgbouncer.ini", user="postgres", stdin="\n".join(out) + "\n")
    box.sh(f"pgbouncer -d -q {REMOTE}/pgbouncer.ini", user="postgres")
    return True


def stop_bench_pgbouncer(box: Box) -> None:
    box.sh(f"test -f {REMOTE}/pgbouncer.pid && kill $(cat {REMOTE}/pgbouncer.pid) || true", check=False)


def run_pool(box: Box, env: dict, summary: dict, *, clients: int, seconds: float, port: int) -> dict:
    direct = f"host=127.0.0.1 port={PORTS['ours']} dbname={box.db} user=chatflow_app sslmode=disable"
    dsn = f"host=127.0.0.1 port={port} dbname={box.db} user=chatflow_app sslmode=disable"
    return workload(
        box,
        env,
        summary,
        "pool",
        *("--dsn", dsn, "--catalog-dsn", direct, "--clients", str(clients), "--seconds", str(seconds)),
    )


def run_redis(box: Box, env: dict, clients: int, seconds: float) -> dict:
    out = box.sh(
        f"python3 {REMOTE}/redisbench.py --clients {clients} --seconds {seconds}",
        user="postgres",
        env={"REDIS_URL": env["REDIS_URL"], "PYTHONPATH": f"{REMOTE}/lib"},
    )
    return json.loads(out)


# redis-benchmark (C) on the app's key prefixes, as the app's ACL user: one command a run.
REDIS_BENCHMARK = (
    "SET session:bench:__rand_int__ x",
    "GET session:bench:__rand_int__",
    "INCR rate:bench:__rand_int__",
    "SADD room:bench:presence __rand_int__",
    "PUBLISH room:bench:events x",
)


def redis_benchmark(box: Box, env: dict, clients: int, requests: int = 100_000) -> dict:
    """Each command of REDIS_BENCHMARK by redis-benchmark: requests/s and latency percentiles (ms);
    the keys it wrote are deleted after (by the admin user: SCAN)."""
    out = {}
    for command in REDIS_BENCHMARK:
        csv = box.sh(
            f'redis-benchmark -h 127.0.0.1 -p {env["REDIS_PORT"]} --user "$REDIS_USERNAME" -a "$REDIS_PASSWORD" '
            f"-c {clients} -n {requests} -r 10000 --csv {command}",
            env={"REDIS_USERNAME": env["REDIS_USERNAME"], "REDIS_PASSWORD": env["REDIS_PASSWORD"]},
        )
        rows = [line.replace('"', "").split(",") for line in csv.splitlines() if line.strip()]
        head, values = rows[0], rows[-1]
        out[command.split()[0] + " " + command.split()[1]] = dict(zip(head[1:], map(float, values[1:]), strict=True))
    admin = inputs.shared()["chatflow_redis_admin_user"]
    cli = f"redis-cli --user {admin} --no-auth-warning -p {env['REDIS_PORT']}"
    box.sh(
        f"for p in 'session:bench:*' 'rate:bench:*' 'room:bench:*'; do "
        f'{cli} --scan --pattern "$p" | xargs -r -n 500 {cli} DEL >/dev/null; done',
        env={"REDISCLI_AUTH": redis_admin_password(box, admin)},
    )
    return out


def redis_admin_password(box: Box, admin: str) -> str:
    """The admin user's password, from the control node's secrets of the sandbox."""
    return (ROOT / ".secrets" / box.name / f"redis_{admin}").read_text(encoding="utf-8").split()[0]


def sandbox_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark on the sandbox takes: the container, the data's seed, the run's length."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--container", default="chatflow-sandbox")
    p.add_argument("--seed", type=int, default=20261121)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--warmup", type=float, default=10)
    return p


def open_sandbox(args: argparse.Namespace) -> tuple[Box, dict]:
    """The sandbox to benchmark and its env file (the app's credentials)."""
    box = Box(args.container)
    STATE.mkdir(parents=True, exist_ok=True)
    return box, env_file(box)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = sandbox_parser(__doc__)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--latency-clients", type=int, default=2, help="the latency pass: one client per core")
    p.add_argument("--latency-seconds", type=float, default=20)
    p.add_argument("--pool-clients", type=int, default=200)
    p.add_argument("--pool-seconds", type=float, default=20)
    p.add_argument("--keep", action="store_true", help="keep the two benchmark clusters (and reuse them next time)")
    p.add_argument("--docs", action="store_true", help="write docs/performance/bench-latest.txt and latency.png")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    first = f"Run of {stamp()}, {args.messages} messages"
    box, env = open_sandbox(args)
    data, summary = prepare_data(args.messages, args.seed)
    remote = upload(box, data)
    results: dict = {"messages": args.messages, "clients": args.clients, "seconds": args.seconds, "load_s": {}}

    prepare_clusters(box, args, env["DB_PASSWORD"], remote, results)

    try:
        for side in PORTS:
            log(f"{side}: warm-up {args.warmup} s")
            run_mix(box, side, env, summary, clients=args.clients, seconds=args.warmup)
            log(f"{side}: mix, {args.clients} clients, {args.seconds} s")
            results[side] = run_mix(box, side, env, summary, clients=args.clients, seconds=args.seconds)
            # Latency without queueing for the CPU: one client per core.
            log(f"{side}: latency, {args.latency_clients} clients, {args.latency_seconds} s")
            results[f"{side}_latency"] = run_mix(
                box, side, env, summary, clients=args.latency_clients, seconds=args.latency_seconds
            )
        box.sh("pg_ctlcluster 15 bench_seed stop")
        if start_bench_pgbouncer(box):
            for mode, port in (("pooled", POOLER_PORT), ("direct", PORTS["ours"])):
                log(f"pool: {args.pool_clients} clients {mode}, {args.pool_seconds} s")
                results[f"pool_{mode}"] = run_pool(
                    box, env, summary, clients=args.pool_clients, seconds=args.pool_seconds, port=port
                )
        else:
            log("pool: the sandbox has no PgBouncer (chatflow_pgbouncer_enabled: false): skipped")
        log(f"redis: {args.clients} clients, {args.pool_seconds} s")
        results["redis"] = run_redis(box, env, args.clients, args.pool_seconds)
        log(f"redis-benchmark: {args.clients} clients")
        results["redis_benchmark"] = redis_benchmark(box, env, args.clients)
    finally:
        stop_bench_pgbouncer(box)
        if not args.keep:
            for side in PORTS:
                box.sh(f"pg_dropcluster --stop 15 bench_{side}", check=False)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report(results)
    print(f"{first}\n{printed.getvalue()}", end="")
    if args.docs:
        (DOCS / "bench-latest.txt").write_text(f"{first}\n{printed.getvalue()}")
        shutil.copy(STATE / "latency.png", DOCS / "latency.png")
    return 0


def prepare_clusters(
    box: Box,
    args: argparse.Namespace,
    password: str,
    remote: str,
    results: dict,
    *,
    sides: tuple[str, ...] = tuple(PORTS),
) -> None:
    """Reuse kept clusters only when the data and the way they were built are the same and they
    start; else (a leftover of another run, or one that does not start) build and load them again."""
    recipe = hashlib.sha256((seed_design_sql() + Path(__file__).read_text()).encode()).hexdigest()[:12]
    marker = f"{args.messages}-{args.seed}-{recipe}"
    reuse = all(cluster_exists(box, f"bench_{s}") for s in sides) and all(
        box.sh(f"cat /etc/postgresql/15/bench_{s}/chatflow-bench-data 2>/dev/null || true").strip() == marker
        for s in sides
    )
    if reuse:
        try:
            for s in sides:
                start_cluster(box, s)
            log("reusing the benchmark clusters (same data)")
            return
        except RuntimeError as exc:
            log(f"a kept cluster does not start, building again: {exc}")
    create_clusters(box, password, sides)
    for side in sides:
        phases = results.setdefault("load_phases", {}).setdefault(side, {})
        results["load_s"][side] = round(load(box, side, remote, phases), 1)
        box.sh(f"echo {marker} > /etc/postgresql/15/bench_{side}/chatflow-bench-data")
        log(f"{side}: loaded in {results['load_s'][side]} s")


def report(results: dict) -> None:
    """Print the tables and ratios; write results.json and the chart."""
    ours, seed = summarize(results["ours"]), summarize(results["seed"])
    print(
        table(
            f"\nOurs: tuned configuration, our schema ({results['messages']} messages, {results['clients']} clients)",
            ours,
        )
    )
    print(table("\nSeed: Debian's default configuration, the seed's schema as written (fixed to run)", seed))
    tput = {s: sum(len(v) for v in results[s]["latencies"].values()) / results[s]["seconds"] for s in ("ours", "seed")}
    print("\nRatios, ours against seed (higher is better for us)")
    print(f"  {'operation':<24}{'throughput x':>14}{'p95 seed/ours':>15}")
    for op in ours:
        if op in seed:
            print(f"  {op:<24}{ours[op]['per_s'] / seed[op]['per_s']:>14.2f}{seed[op]['p95'] / ours[op]['p95']:>15.2f}")
    print(f"  {'whole mix':<24}{tput['ours'] / tput['seed']:>14.2f}")
    print(f"  throughput: ours {tput['ours']:.0f} ops/s, seed {tput['seed']:.0f} ops/s")
    print(f"  errors: ours {results['ours']['errors'] or 'none'}, seed {results['seed']['errors'] or 'none'}")
    if "ours_latency" in results:
        lo, ls = summarize(results["ours_latency"]), summarize(results["seed_latency"])
        print(
            f"\nLatency with {results['ours_latency']['clients']} clients (one per core, no queueing for the CPU), ms"
        )
        heads = [f"{side} {q}" for side in ("ours", "seed") for q in ("p50", "p95", "p99")]
        print(f"  {'operation':<24}" + "".join(f"{h:>9}" for h in heads))
        nan = {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
        for op, r in lo.items():
            t = ls.get(op, nan)
            print(f"  {op:<24}" + "".join(f"{v[q]:>9.2f}" for v in (r, t) for q in ("p50", "p95", "p99")))
    for mode in ("pooled", "direct"):
        r = results.get(f"pool_{mode}")
        if not r:
            continue
        q = r["latencies"]["query"]
        print(
            f"\n{r['clients']} clients {'through PgBouncer' if mode == 'pooled' else 'straight to PostgreSQL'}: "
            f"{len(q) / r['seconds']:.0f} queries/s, p50 {pct(q, 0.5):.2f} ms, p95 {pct(q, 0.95):.2f} ms, "
            f"p99 {pct(q, 0.99):.2f} ms; connect p95 {pct(r['connect_ms'], 0.95):.2f} ms; "
            f"failed connections {sum(r['connect_errors'].values())} {r['connect_errors'] or ''}; "
            f"query errors {r['errors'] or 'none'}"
        )
    if "redis" in results:
        red = summarize(results["redis"])
        total = sum(v["n"] for v in red.values()) / results["redis"]["seconds"]
        print(
            table(f"\nRedis through the app's ACL user ({results['redis']['clients']} clients): {total:.0f} ops/s", red)
        )
        print(f"  errors: {results['redis']['errors'] or 'none'}; bench keys deleted: {results['redis']['deleted']}")
    if "redis_benchmark" in results:
        print(f"\nredis-benchmark (C client) as the app's ACL user, {results['clients']} clients:")
        for command, r in results["redis_benchmark"].items():
            print(f"  {command:<28}{r['rps']:>12.0f} req/s  p50 {r['p50_latency_ms']} ms  p99 {r['p99_latency_ms']} ms")
    (STATE / "results.json").write_text(json.dumps(results) + "\n")
    chart(results, STATE / "latency.png")
    print(f"\nRaw numbers: {STATE / 'results.json'}; chart: {STATE / 'latency.png'}")


def chart(results: dict, path: Path) -> None:
    """Latency distributions per operation, ours against seed (log scale)."""
    try:
        import matplotlib  # noqa: PLC0415  (only make bench needs it: requirements-bench.txt)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log("matplotlib is not installed: no chart (pip install -r requirements-bench.txt)")
        return
    ops = [
        op
        for op in results["ours"]["latencies"]
        if op in results["seed"]["latencies"] and op != "refresh_channel_stats"
    ]
    fig, ax = plt.subplots(figsize=(12, 6))
    data, labels, colors = [], [], []
    for op in ops:
        for side, color in (("ours", "#2a7ab9"), ("seed", "#d9822b")):
            data.append(results[side]["latencies"][op] or [float("nan")])
            labels.append(f"{op}\n{side}")
            colors.append(color)
    parts = ax.boxplot(data, whis=(1, 99), showfliers=False, patch_artist=True)
    for patch, color in zip(parts["boxes"], colors, strict=True):
        patch.set_facecolor(color)
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (box: p25-p75, whiskers: p1-p99)")
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=60, fontsize=7)
    ax.set_title(
        f"ChatFlow mix, {results['messages']} messages, {results['clients']} clients: ours (blue) vs seed (orange)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
