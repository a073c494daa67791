"""`make bench-overhead`: what the monitoring costs the chat workload, on against off in one run.

On the sandbox, the benchmark cluster bench_ours (tools/bench/run.py: the sandbox's settings,
schema and roles, the generated data) runs the pgbench mix (tools/bench/pgbench_mix.py, as the
app role over loopback TCP, the extended protocol) in rounds that alternate ABBA between:

  on   the sandbox's statistics (pg_stat_statements, auto_explain, track_io_timing,
       track_functions, as the role sets them), the monitoring units running, and every exporter
       scraped each --scrape-interval seconds (as Prometheus does), including a PostgreSQL
       exporter of the benchmark cluster itself (its pg_stat_statements queries included);
  off  those settings off (a conf.d file, the cluster restarted) and the monitoring units stopped.

Each round starts with a warm-up (the restart empties shared_buffers).  Printed: each round's
throughput and the server's CPU per transaction, the medians and the ratio on/off; the raw
numbers go to .state/bench/overhead.json.  The units that were running are started again and
the cluster dropped (unless --keep).

    python3 -m tools.bench.overhead [--messages N] [--rounds 2] [--seconds 30] [--clients 2]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

from tools import inputs
from tools.bench import run

SIDE = "ours"
PORT = run.PORTS[SIDE]
STATISTICS_OFF = (
    "# tools/bench/overhead.py: the statistics off (the run's 'off' side)\n"
    "shared_preload_libraries = ''\ntrack_io_timing = off\ntrack_functions = none\n"
)
OFF_CONF = f"/etc/postgresql/15/bench_{SIDE}/conf.d/zz-overhead-off.conf"
# The monitoring units of roles/chatflow_monitoring (vars: __chatflow_monitoring_units) and its timers.
UNITS = (
    "prometheus-node-exporter",
    "prometheus-postgres-exporter",
    "prometheus-redis-exporter",
    "prometheus-pgbouncer-exporter",
    "mtail",
    "prometheus",
    "chatflow-metrics.timer",
    "chatflow-pgbadger.timer",
)
BENCH_EXPORTER_PORT = 9199
SCRAPER = f"{run.REMOTE}/scraper.py"
SCRAPER_SOURCE = """
import ssl, sys, time, urllib.request
interval, urls = float(sys.argv[1]), sys.argv[2:]
context = ssl._create_unverified_context()
failed = 0
while True:
    for url in urls:
        try:
            urllib.request.urlopen(url, timeout=10, context=context).read()
        except OSError as exc:
            failed += 1
            print(f"scrape of {url} failed: {exc}", file=sys.stderr, flush=True)
    time.sleep(interval)
"""


def log(msg: str) -> None:
    print(f"[overhead] {msg}", file=sys.stderr, flush=True)


def scrape_urls() -> list[str]:
    """Every exporter's metrics endpoint, from the sandbox's inputs (never from its configuration)."""
    values = inputs.shared(inputs.sandbox_vars())
    ports = values["chatflow_monitoring_ports"]
    scheme = "https" if values["chatflow_monitoring_cidrs"] else "http"
    urls = [f"{scheme}://127.0.0.1:{ports[name]}/metrics" for name in ("node", "postgres", "redis")]
    urls += [f"http://127.0.0.1:{ports['pgbouncer']}/metrics", f"http://127.0.0.1:{ports['mtail']}/metrics"]
    redis = f"redis://127.0.0.1:{values['chatflow_redis_cache_port']}"
    urls.append(f"{scheme}://127.0.0.1:{ports['redis']}/scrape?target={redis}")
    return [*urls, f"http://127.0.0.1:{BENCH_EXPORTER_PORT}/metrics"]


def active_units(box: run.Box) -> list[str]:
    out = box.sh(f"systemctl is-active {' '.join(UNITS)} || true")
    return [unit for unit, state in zip(UNITS, out.split(), strict=True) if state == "active"]


def start_bench_exporter(box: run.Box) -> None:
    """A PostgreSQL exporter of the benchmark cluster (the host's own queries, as the monitoring role)."""
    box.sh(
        "set -a; . /etc/default/prometheus-postgres-exporter; set +a; "
        f'export DATA_SOURCE_NAME=$(echo "$DATA_SOURCE_NAME" | sed -E \'s/host=[^ ]+/host=127.0.0.1/; '
        f"s/port=[0-9]+/port={PORT}/; s/application_name=[^ ]+/application_name=bench-exporter/'); "
        f'ARGS=$(echo "$ARGS" | sed -E \'s/--web.listen-address=[^ ]+/--web.listen-address=127.0.0.1:'
        f"{BENCH_EXPORTER_PORT}/; s/--web.config.file=[^ ]+//'); "
        f"setsid -f runuser -u prometheus -- prometheus-postgres-exporter $ARGS > {run.REMOTE}/exporter.log 2>&1"
    )


def stop_bench_processes(box: run.Box) -> None:
    # The patterns' first letter in brackets: they must not match this shell's own command line.
    box.sh(
        f"pkill -f '[w]eb.listen-address=127.0.0.1:{BENCH_EXPORTER_PORT}' || true; "
        f"pkill -f '[{SCRAPER[0]}]{SCRAPER[1:]}' || true"
    )


def set_side(box: run.Box, on: bool, units: list[str], scrape_interval: float) -> None:
    """The cluster's statistics and the monitoring units as the side wants them."""
    stop_bench_processes(box)
    if on:
        box.sh(f"rm -f {OFF_CONF}")
        run.start_cluster(box, SIDE)
        box.sh(f"systemctl start {' '.join(units)}")
        start_bench_exporter(box)
        urls = " ".join(shlex.quote(u) for u in scrape_urls())
        box.sh(f"setsid -f python3 {SCRAPER} {scrape_interval} {urls} > {run.REMOTE}/scraper.log 2>&1")
    else:
        box.sh(f"systemctl stop {' '.join(units)}")
        box.sh(f"cat > {OFF_CONF}", stdin=STATISTICS_OFF)
        run.start_cluster(box, SIDE)
    preload = box.psql(PORT, "SHOW shared_preload_libraries").strip()
    if ("pg_stat_statements" in preload) != on:
        side = "on" if on else "off"
        raise RuntimeError(f"bench_{SIDE} has shared_preload_libraries = '{preload}' on the {side} side")


def mix(box: run.Box, env: dict, args: argparse.Namespace, seconds: float) -> dict:
    dsn = f"host=127.0.0.1 port={PORT} dbname={box.db} user=chatflow_app sslmode=disable"
    argv = ["python3", f"{run.REMOTE}/pgbench_mix.py", "run", "--dsn", dsn, "--clients", str(args.clients)]
    argv += ["--seconds", str(seconds), "--rows", str(args.rows)]
    return json.loads(box.sh(shlex.join(argv), user="postgres", env={"PGPASSWORD": env["DB_PASSWORD"]}))


def rounds(box: run.Box, env: dict, args: argparse.Namespace, units: list[str]) -> dict[str, list[dict]]:
    """ABBA rounds (on, off, off, on, ...): each side's results."""
    results: dict[str, list[dict]] = {"on": [], "off": []}
    order = [("on", "off"), ("off", "on")]
    for n in range(args.rounds):
        for side in order[n % 2]:
            set_side(box, side == "on", units, args.scrape_interval)
            mix(box, env, args, args.warmup)
            result = mix(box, env, args, args.seconds)
            results[side].append(result)
            log(f"round {n + 1} {side}: {result['tps']} tps, server {result['cpu']['server_ms_per_tx']} ms CPU/tx")
    return results


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    median = {side: statistics.median(r["tps"] for r in rs) for side, rs in results.items()}
    cpu = {side: statistics.median(r["cpu"]["server_ms_per_tx"] for r in rs) for side, rs in results.items()}
    print(f"\nMonitoring on against off: pgbench mix, {args.messages} messages, {args.clients} clients, extended")
    print(f"  {'round':<8}{'side':<6}{'tps':>10}{'server CPU ms/tx':>18}{'client share':>14}")
    for side, rs in results.items():
        for n, r in enumerate(rs, 1):
            c = r["cpu"]
            print(f"  {n:<8}{side:<6}{r['tps']:>10.1f}{c['server_ms_per_tx']:>18.3f}{c['client_share']:>14.1%}")
    ratio = median["on"] / median["off"]
    print(f"  median: on {median['on']:.1f} tps, off {median['off']:.1f} tps; on/off = {ratio:.3f}")
    print(f"  server CPU per transaction: on {cpu['on']:.3f} ms, off {cpu['off']:.3f} ms")
    print("  per operation, p95 ms (on / off):")
    for op in sorted(results["on"][0]["ops"]):
        p95 = {side: statistics.median(r["ops"][op]["p95"] for r in rs) for side, rs in results.items()}
        print(f"    {op:<20}{p95['on']:>8.2f} /{p95['off']:>8.2f}")
    bound = all(r["cpu"]["server_bound"] for rs in results.values() for r in rs)
    print(f"  server-bound (client under 25% of the CPU) in every round: {'yes' if bound else 'no'}")
    return {"median_tps": median, "server_ms_per_tx": cpu, "ratio": median["on"] / median["off"], "rounds": results}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = run.sandbox_parser(__doc__)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=2, help="one per core: the server's cost, not queueing")
    p.add_argument("--rounds", type=int, default=2, help="ABBA pairs: 2 gives two runs of each side")
    p.add_argument("--rows", type=int, default=500, help="parameter rows per operation")
    p.add_argument("--scrape-interval", type=float, default=15)
    p.add_argument("--keep", action="store_true", help="keep the benchmark cluster (and reuse it next time)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    box, env = run.open_sandbox(args)
    data, _summary = run.prepare_data(args.messages, args.seed)
    remote = run.upload(box, data)
    box.sh(f"cat > {SCRAPER}", stdin=SCRAPER_SOURCE)
    run.prepare_clusters(box, args, env["DB_PASSWORD"], remote, {"load_s": {}}, sides=(SIDE,))
    units = active_units(box)
    log(f"monitoring units running: {', '.join(units) or 'none'}")
    admin = f"host=/var/run/postgresql port={PORT} dbname={box.db}"
    box.sh(f"python3 {run.REMOTE}/pgbench_mix.py fill --dsn {shlex.quote(admin)} --rows {args.rows}", user="postgres")
    try:
        results = rounds(box, env, args, units)
    finally:
        stop_bench_processes(box)
        box.sh(f"rm -f {OFF_CONF}")
        if units:
            box.sh(f"systemctl start {' '.join(units)}", check=False)
        if args.keep:
            run.start_cluster(box, SIDE)
        else:
            box.sh(f"pg_dropcluster --stop 15 bench_{SIDE}", check=False)
    summary = report(results, args)
    out = Path(run.STATE) / "overhead.json"
    out.write_text(json.dumps(summary) + "\n")
    print(f"\nRaw numbers: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
