"""`make bench-scale`: cost growth with data size, ours against the seed's design, driven by pgbench.

For each size (default 1M, 3M and 10M messages; tools/bench/datagen.py, deterministic, the
other tables in proportion: more workspaces, channels and users, as a growing service gets),
the sandbox gets the two benchmark clusters of tools/bench/run.py (ours: the sandbox's
settings, schema and roles; seed: the seed's design on Debian's defaults) loaded with the same
data, and runs the pgbench mix (tools/bench/pgbench_mix.py: the workload's SQL and weights) on
each side, in the extended protocol (what the backend gets through PgBouncer's transaction
pool), as the app role over loopback TCP:

  throughput  --clients connections (default 4, two per core), one pass;
  latency     --latency-clients (default 2, one per core: no queueing for the CPU),
              --latency-passes (default 3) per side, the sides taking turns; medians.

Reported per size and side: load time (COPY, index builds, VACUUM ANALYZE) and database size,
throughput, per operation p50/p95/p99, the client's share of the CPU (a run is server-bound
when under 25%); then each operation's p95 growth from the smallest to the largest size, the
targets, and for each operation that missed one, the plan with its buffers of its p95 case and
the next step to take.  The free disk is checked before each size (what the size needs is
estimated from the data files); the clusters are dropped after each size unless --keep.  The
results are saved in .state/bench/scale.json; --from-json prints (and with --docs publishes)
a saved run again.

    python3 -m tools.bench.scale [--sizes 1000000,3000000,10000000] [--seconds 30] [--docs]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

from tools.bench import pgbench_mix, run

DOCS = run.DOCS
# The targets the printout checks (never asserted): see docs/performance/scale.md.
TARGET_MIX_RATIO = 2.0
TARGET_P95_MS = {"channel_history": 1.0, "search_fulltext": 10.0}
TARGET_GROWTH = 1.5
# What to do about an operation that misses a target, from the analysis of its plans in
# docs/performance/scale.md (the printout shows the plan of the run beside it).
NEXT_STEP: dict[str, str] = {
    "mix": (
        "the two searches take most of the server's time at 10M (their lines below): make them follow the user's "
        "channels instead of the whole table, then measure the mix again."
    ),
    "channel_history": (
        "none in the schema: the query reads 50 rows through idx_messages_channel_live (about 55 buffers, 0.1 ms "
        "at its p95 row) and stays flat from 1M to 10M; a pgbench transaction adds the parameter lookup's round "
        "trip and the wait for a core shared with pgbench, so compare the statement's mean (the -r report) too."
    ),
    "search_fulltext": (
        "the bitmap scan runs once per channel of the user, and each walks the whole posting list of every "
        "search term in idx_messages_channel_fts: its cost is channels x the terms' frequency in the whole "
        "table. A key per (channel, term) alone did not pay at 3M (docs/performance/scale.md: the index part "
        "5x cheaper, but every candidate's text parsed again); next, measure messages partitioned per "
        "workspace (each index holding one tenant's messages), or that key with a stored search vector."
    ),
    "search_fuzzy": (
        "the trigram index returns every message in the table that has the fragment before the BitmapAnd with "
        "the user's channels: its cost grows with the table. Filtering the user's channels' messages instead "
        "was slower at 3M (docs/performance/scale.md); next, measure messages partitioned per workspace "
        "(each trigram index holding one tenant's messages)."
    ),
}
# Disk per byte of generated data: the copy in the sandbox and two clusters with their indexes (measured at 1M: 3.4x).
DISK_FACTOR = 5.0
# Generated data per million messages before any has been generated here (the 1M set's files; the
# sets already generated give the real figure).
DEFAULT_BYTES_PER_MILLION = 450 * 2**20


def log(msg: str) -> None:
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def data_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.tsv"))


def check_disk(messages: int, per_million_bytes: int) -> None:
    """Refuse a size the disk cannot hold (generated files and two loaded clusters), saying what it needs."""
    need = int(per_million_bytes * messages / 1_000_000 * DISK_FACTOR)
    free = shutil.disk_usage(run.STATE).free
    log(f"{messages} messages need about {need / 2**30:.1f} GiB; {free / 2**30:.1f} GiB free")
    if need > free:
        raise SystemExit(f"not enough disk for {messages} messages: about {need / 2**30:.1f} GiB needed")


def bytes_per_million(seed: int) -> int:
    """Generated data per million messages: from the largest set already generated, else the default."""
    sets = sorted(run.STATE.glob(f"data-*-{seed}"), key=lambda p: int(p.name.split("-")[1]))
    sets = [p for p in sets if (p / "summary.json").exists()]
    if not sets:
        return DEFAULT_BYTES_PER_MILLION
    return int(data_bytes(sets[-1]) / int(sets[-1].name.split("-")[1]) * 1_000_000)


def say_disk_needs(sizes: list[int], per_million: int) -> None:
    for messages in sizes:
        need = per_million * messages / 1_000_000 * DISK_FACTOR
        log(f"disk: {messages} messages need about {need / 2**30:.1f} GiB while they are measured")


def fill(box: run.Box, side: str, rows: int) -> None:
    admin = f"host=/var/run/postgresql port={run.PORTS[side]} dbname={box.db}"
    box.sh(f"python3 {run.REMOTE}/pgbench_mix.py fill --dsn {shlex.quote(admin)} --rows {rows}", user="postgres")


def mix(box: run.Box, env: dict, side: str, clients: int, args: argparse.Namespace, **kw) -> dict:
    """The pgbench mix on a side's cluster (or kw port: PgBouncer's), as the app role (or kw user/password)."""
    port = kw.get("port", run.PORTS[side])
    user, password = kw.get("user", "chatflow_app"), kw.get("password", env["DB_PASSWORD"])
    dsn = f"host=127.0.0.1 port={port} dbname={box.db} user={user} sslmode=disable"
    argv = ["python3", f"{run.REMOTE}/pgbench_mix.py", "run", "--dsn", dsn, "--clients", str(clients)]
    argv += ["--threads", str(min(clients, 2)), "--seconds", str(args.seconds), "--rows", str(args.rows)]
    argv += ["--protocol", kw.get("protocol", "extended"), *kw.get("extra", ())]
    return json.loads(box.sh(shlex.join(argv), user="postgres", env={"PGPASSWORD": password}))


def variants(box: run.Box, env: dict, args: argparse.Namespace) -> dict:
    """On ours at one client per core: each protocol direct and through a PgBouncer with the sandbox's
    settings (PgBouncer 1.18's transaction pool has no prepared statements: the error is reported), and
    the mix as a request under row-level security against the app role, both setting app.user_id.
    Each runs --latency-passes times, the order reversed every other pass (a single pass of one
    variant against another moved by 10-40% between runs)."""
    pooled = run.start_bench_pgbouncer(box)
    request = {"user": env["DB_REQUEST_USER"], "password": env["DB_REQUEST_PASSWORD"], "extra": ["--request"]}
    plan: dict[str, dict] = {}
    for where, port in (("direct", run.PORTS["ours"]), ("pooled", run.POOLER_PORT)):
        for protocol in pgbench_mix.PROTOCOLS if where == "direct" or pooled else ():
            plan[f"{where} {protocol}"] = {"port": port, "protocol": protocol}
    plan |= {"rls off (app)": {"extra": ["--set-user"]}, "rls on (request)": request}
    runs: dict[str, list[dict]] = {name: [] for name in plan}
    failed: dict[str, dict] = {}
    try:
        for n in range(args.latency_passes):
            for name in in_turn(list(plan), n):
                if name in failed:
                    continue
                log(f"variants: {name}, pass {n + 1}/{args.latency_passes}")
                try:
                    runs[name].append(mix(box, env, "ours", args.latency_clients, args, **plan[name]))
                except RuntimeError as exc:
                    failed[name] = {"error": str(exc).strip().splitlines()[-1][:300]}
    finally:
        run.stop_bench_pgbouncer(box)
    return {name: failed.get(name) or combine(runs[name]) for name in plan}


def database_mb(box: run.Box, side: str) -> int:
    return int(box.psql(run.PORTS[side], f"SELECT pg_database_size('{box.db}') / 1048576").strip())


def one_size(box: run.Box, env: dict, messages: int, args: argparse.Namespace) -> dict:
    """Generate, load and measure one size on both sides."""
    data, _summary = run.prepare_data(messages, args.seed)
    remote = run.upload(box, data)
    result: dict = {"messages": messages, "load_s": {}}
    sized = argparse.Namespace(messages=messages, seed=args.seed)
    run.prepare_clusters(box, sized, env["DB_PASSWORD"], remote, result)
    for side in run.PORTS:
        fill(box, side, args.rows)
        result.setdefault("db_mb", {})[side] = database_mb(box, side)
    warm = argparse.Namespace(seconds=args.warmup, rows=args.rows)
    for name, clients, passes in (
        ("throughput", args.clients, 1),
        ("latency", args.latency_clients, args.latency_passes),
    ):
        runs: dict[str, list[dict]] = {side: [] for side in run.PORTS}
        for n in range(passes):
            # The latency passes start with the seed's side (as the throughput pass ended on it).
            for side in in_turn(list(run.PORTS), n + (name == "latency")):
                log(f"{messages}: {side}, {name} pass {n + 1}/{passes}, {clients} clients, {args.seconds} s")
                if n == 0:
                    mix(box, env, side, clients, warm)
                runs[side].append(mix(box, env, side, clients, args))
        result[name] = {side: combine(found) for side, found in runs.items()}
    return result


def in_turn(names: list[str], n: int) -> list[str]:
    """The order of pass n: reversed every other pass, so that a slow minute of the machine does not
    land on the same side or variant every time."""
    return names if n % 2 == 0 else names[::-1]


def combine(passes: list[dict]) -> dict:
    """Several passes of one mix as one: the pass of median throughput, with each operation's p50, p95
    and p99 the median over the passes (and its p95 in each pass, to show the spread)."""
    if len(passes) == 1:
        return passes[0]
    ranked = sorted(passes, key=lambda r: r["tps"])
    middle = ranked[len(ranked) // 2]
    out = {**middle, "passes": [r["tps"] for r in passes], "ops": {}}
    for op, base in middle["ops"].items():
        merged = dict(base)
        for q in ("p50", "p95", "p99", "statement_mean"):
            if q in base:
                merged[q] = round(statistics.median(r["ops"][op][q] for r in passes), 3)
        merged["p95_passes"] = [r["ops"][op]["p95"] for r in passes]
        out["ops"][op] = merged
    return out


def explain(box: run.Box, side: str, op: str) -> str:
    """The plan, with its buffers, of the operation's parameter row at the 95th percentile."""
    admin = f"host=/var/run/postgresql port={run.PORTS[side]} dbname={box.db}"
    argv = ["python3", f"{run.REMOTE}/pgbench_mix.py", "explain", "--dsn", admin, "--op", op]
    return box.sh(shlex.join(argv), user="postgres", check=False)


def growth(results: list[dict], side: str) -> dict[str, float]:
    """Each operation's latency p95 at the largest size over the smallest."""
    first, last = results[0]["latency"][side]["ops"], results[-1]["latency"][side]["ops"]
    return {op: round(last[op]["p95"] / first[op]["p95"], 2) for op in first if first[op]["p95"] > 0}


def misses(results: list[dict]) -> list[tuple[str, str]]:
    """The targets missed: (operation or 'mix', why)."""
    last = results[-1]
    out = []
    ratio = last["throughput"]["ours"]["tps"] / last["throughput"]["seed"]["tps"]
    if ratio < TARGET_MIX_RATIO:
        out.append(
            ("mix", f"throughput {ratio:.2f}x the seed's at {last['messages']} messages (target {TARGET_MIX_RATIO}x)")
        )
    if not last["throughput"]["ours"]["cpu"]["server_bound"]:
        out.append(
            ("mix", f"not server-bound: the client used {last['throughput']['ours']['cpu']['client_share']:.0%}")
        )
    for op, limit in TARGET_P95_MS.items():
        p95 = last["latency"]["ours"]["ops"][op]["p95"]
        if p95 > limit:
            out.append((op, f"p95 {p95:.2f} ms at one client per core (target {limit} ms)"))
    for op, g in growth(results, "ours").items():
        if g > TARGET_GROWTH:
            out.append((op, f"p95 grew {g}x from {results[0]['messages']} to {last['messages']} messages"))
    return out


def table(results: list[dict], name: str) -> list[str]:
    lines = [f"\n{name.capitalize()} (pgbench, extended protocol): tps and p50/p95/p99 ms per operation"]
    for r in results:
        for side in run.PORTS:
            res = r[name][side]
            cpu = res["cpu"]
            lines.append(
                f"  {r['messages']:>9} {side:<5} {res['tps']:>8.1f} tps  client {cpu['client_share']:.0%} of the CPU, "
                f"server {cpu['server_ms_per_tx']} ms CPU/tx{'' if cpu['server_bound'] else '  (NOT server-bound)'}"
            )
            if "passes" in res:
                lines.append(f"      (median of {len(res['passes'])} passes, {res['passes']} tps; p95 per pass last)")
            for op, o in sorted(res["ops"].items()):
                spread = f"   {o['p95_passes']}" if "p95_passes" in o else ""
                lines.append(f"      {op:<18}{o['p50']:>8.2f}{o['p95']:>8.2f}{o['p99']:>8.2f}{spread}")
    return lines


def report(results: list[dict], found: dict | None = None, plans: dict[str, str] | None = None) -> str:
    lines = ["Sizes, load time and database size:"]
    for r in results:
        loads = ", ".join(f"{s} {r['load_s'].get(s, 'kept')} s / {r['db_mb'][s]} MB" for s in run.PORTS)
        lines.append(f"  {r['messages']:>9} messages: {loads}")
        for side, p in r.get("load_phases", {}).items():
            phases = f"COPY {p['copy_s']} s, indexes {p['index_s']} s, VACUUM ANALYZE {p['vacuum_s']} s"
            lines.append(f"      {side}: {phases}")
    lines += table(results, "throughput") + table(results, "latency")
    lines.append("\nWhole mix, ours / seed (throughput run):")
    for r in results:
        ratio = r["throughput"]["ours"]["tps"] / r["throughput"]["seed"]["tps"]
        lines.append(f"  {r['messages']:>9} messages: {ratio:.2f}x")
    for side in run.PORTS:
        lines.append(f"p95 growth, {side}, smallest to largest size: {growth(results, side)}")
    if found:
        lines += variants_report(found, results[0]["messages"])
    return "\n".join(lines + targets_report(misses(results), plans or {}))


def targets_report(missed: list[tuple[str, str]], plans: dict[str, str]) -> list[str]:
    """Each missed target; then, per operation, its p95 case's plan and the next step to take."""
    lines = ["\nTargets: " + ("all met" if not missed else f"{len(missed)} missed")]
    lines += [f"  MISSED {op}: {why}" for op, why in missed]
    for op in dict.fromkeys(op for op, _why in missed):
        lines.append(f"\n  {op}:")
        if op in plans:
            lines += ["    " + line for line in plans[op].splitlines()]
        lines.append("    Next step: " + NEXT_STEP.get(op, "not analysed yet: read the plan above."))
    return lines


def missed_plans(box: run.Box, results: list[dict]) -> dict[str, str]:
    """The p95 case's plan of each operation that missed a target (the last size's clusters still up)."""
    ops = dict.fromkeys(op for op, _why in misses(results) if op != "mix")
    if not ops or not run.cluster_exists(box, "bench_ours"):
        return {}
    return {op: explain(box, "ours", op) for op in ops}


def variants_report(found: dict, messages: int) -> list[str]:
    lines = [f"\nProtocols and row-level security ({messages} messages, ours, one client per core):"]
    for name, res in found.items():
        if "error" in res:
            lines.append(f"  {name:<22} failed: {res['error']}")
            continue
        cpu = res["cpu"]
        means = {op: o["statement_mean"] for op, o in sorted(res["ops"].items())}
        lines.append(
            f"  {name:<22}{res['tps']:>9.1f} tps  server {cpu['server_ms_per_tx']} ms CPU/tx  statement ms {means}"
        )
        if "passes" in res:
            lines.append(f"  {'':<22}(median of the passes: {res['passes']} tps)")
    ok = {k: v for k, v in found.items() if "error" not in v}
    for a, b in (
        ("direct prepared", "direct extended"),
        ("pooled extended", "direct extended"),
        ("rls on (request)", "rls off (app)"),
    ):
        if a in ok and b in ok:
            lines.append(f"  {a} / {b}: {ok[a]['tps'] / ok[b]['tps']:.3f} (throughput)")
    return lines


def chart(results: list[dict], path: Path) -> None:
    """p95 against data size per operation, ours (solid) and seed (dashed)."""
    import matplotlib  # noqa: PLC0415  (requirements-bench.txt)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(11, 6))
    sizes = [r["messages"] for r in results]
    for i, op in enumerate(sorted(results[0]["latency"]["ours"]["ops"])):
        color = f"C{i}"
        for side, style in (("ours", "-"), ("seed", "--")):
            p95 = [r["latency"][side]["ops"][op]["p95"] for r in results]
            ax.plot(sizes, p95, style, color=color, marker="o", label=f"{op} ({side})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("messages")
    ax.set_ylabel("p95 latency, ms (one client per core)")
    ax.set_title("ChatFlow hot queries: p95 against data size, ours (solid) vs seed (dashed)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = run.sandbox_parser(__doc__)
    p.add_argument("--sizes", default="1000000,3000000,10000000")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--latency-clients", type=int, default=2)
    p.add_argument(
        "--latency-passes",
        type=int,
        default=3,
        choices=range(1, 10),
        metavar="1-9",
        help="latency passes per size and side (median p50/p95/p99)",
    )
    p.add_argument("--rows", type=int, default=500, help="parameter rows per operation")
    p.add_argument("--keep", action="store_true", help="keep the clusters of the last size")
    p.add_argument("--no-variants", action="store_true", help="skip the protocols and row-level security runs")
    p.add_argument("--docs", action="store_true", help="write docs/performance/scale-latest.txt and the chart")
    p.add_argument("--from-json", metavar="PATH", help="no run: print (and with --docs write) a saved run's report")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        saved["printed_again"] = run.stamp()
        return publish(saved, args.docs)
    box, env = run.open_sandbox(args)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    saved: dict = {"stamp": run.stamp(), "sizes": [], "variants": {}, "plans": {}}
    per_million = bytes_per_million(args.seed)
    say_disk_needs(sizes, per_million)
    try:
        for n, messages in enumerate(sizes):
            check_disk(messages, per_million)
            started = time.monotonic()
            saved["sizes"].append(one_size(box, env, messages, args))
            if n == 0 and not args.no_variants:
                saved["variants"] = variants(box, env, args)
            saved["sizes"][-1]["wall_s"] = round(time.monotonic() - started)
            data = run.STATE / f"data-{messages}-{args.seed}"
            per_million = int(data_bytes(data) / messages * 1_000_000)
            # The last size's clusters stay until the plans of what missed a target are taken.
            if n < len(sizes) - 1:
                for side in run.PORTS:
                    box.sh(f"pg_dropcluster --stop 15 bench_{side}", check=False)
                # The copy in the sandbox (the generated set stays in .state/bench for the next run).
                box.sh(f"rm -rf {run.REMOTE}/{data.name}", check=False)
        saved["plans"] = missed_plans(box, saved["sizes"])
    finally:
        (run.STATE / "scale.json").write_text(json.dumps(saved) + "\n")
    if not args.keep:
        for side in run.PORTS:
            box.sh(f"pg_dropcluster --stop 15 bench_{side}", check=False)
        box.sh(f"rm -rf {run.REMOTE}/data-{sizes[-1]}-{args.seed}", check=False)
    return publish(saved, args.docs)


def publish(saved: dict, docs: bool) -> int:
    """Print the report of a run (and with docs, write it and its chart into docs/performance)."""
    again = f"(printed again from its saved results on {saved['printed_again']})\n" if "printed_again" in saved else ""
    text = f"Run of {saved['stamp']}\n{again}" + report(saved["sizes"], saved["variants"], saved["plans"])
    print(f"\n{text}")
    chart(saved["sizes"], run.STATE / "scale.png")
    if docs:
        (DOCS / "scale-latest.txt").write_text(text + "\n")
        shutil.copy(run.STATE / "scale.png", DOCS / "scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
