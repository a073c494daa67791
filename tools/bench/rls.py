"""What row-level security costs: each hot query as a request for a user, against the same query unrestricted.

The request side connects as a role subject to row-level security, sets app.user_id in each
transaction and runs workload.REQUEST_QUERIES (search through the SECURITY DEFINER functions);
the other side connects as a role that bypasses it and runs workload.QUERIES with the same
set_config (so both make the same round trips).  Rounds alternate between the two, with the same
parameters, each transaction rolled back (writes included), and both must return the same rows:
a user reading its own channels sees through the policies exactly what the unrestricted query
returns.  Each protocol the backend may use is measured: "simple" (psycopg2: every statement
parsed and planned, as through PgBouncer's transaction pool) and "prepared" (psycopg 3 named
prepared statements, as on a direct connection: the policies are planned once).  Prints one JSON
document: per protocol and operation p50/p95 in ms for each side and the p50 ratio.

    python3 -m tools.bench.rls --bypass-dsn DSN --request-dsn DSN [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import psycopg
import psycopg2

from tools.bench import workload

# Reads whose rows must match on both sides (writes return new ids).
READS = ("channel_history", "open_thread", "unread_counts", "notifications", "search_fulltext", "search_fuzzy")
PROTOCOLS = ("simple", "prepared")


class Client:
    """One autocommit connection speaking a protocol: "simple" (psycopg2 interpolates the
    parameters: each statement is parsed and planned) or "prepared" (psycopg 3 prepares each
    parametrised statement on its first use and then only binds and executes it)."""

    def __init__(self, dsn: str, protocol: str):
        self.prepared = protocol == "prepared"
        self.conn = psycopg.connect(dsn) if self.prepared else psycopg2.connect(dsn)
        self.conn.autocommit = True
        self.cur = self.conn.cursor()

    def execute(self, sql: str, params: dict | None = None):
        if self.prepared:
            return self.cur.execute(sql, params, prepare=params is not None)
        return self.cur.execute(sql, params)

    def close(self) -> None:
        self.conn.close()


def timed(client: Client, sql: str, params: dict) -> tuple[float, list]:
    """One transaction for the user in params: set app.user_id, run the query; ms and its rows."""
    client.execute("BEGIN")
    client.execute(workload.SET_USER, params)
    started = time.perf_counter()
    client.execute(sql, params)
    rows = client.cur.fetchall() if client.cur.description else []
    elapsed = (time.perf_counter() - started) * 1000
    client.execute("ROLLBACK")
    return elapsed, rows


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered), 3), "p95": round(ordered[int(len(ordered) * 0.95) - 1], 3)}


def compare(lookup, bypass: Client, request: Client, catalog: workload.Catalog, rounds: int) -> dict:
    """Per operation: p50/p95 of both sides, the p50 ratio, and whether every read matched
    (lookup: a cursor that finds who may see a message)."""
    report = {}
    for op in sorted(workload.QUERIES):
        times: dict[str, list[float]] = {"bypass": [], "request": []}
        mismatches = 0
        for n in range(rounds):
            params = workload.visible_params(lookup, catalog, op)
            sides = [("bypass", bypass, workload.QUERIES[op]), ("request", request, workload.REQUEST_QUERIES[op])]
            rows = {}
            for name, cur, sql in sides if n % 2 else sides[::-1]:
                elapsed, rows[name] = timed(cur, sql, params)
                times[name].append(elapsed)
            if op in READS and sorted(map(str, rows["bypass"])) != sorted(map(str, rows["request"])):
                mismatches += 1
        entry = {side: summary(samples) for side, samples in times.items()}
        entry["ratio_p50"] = round(entry["request"]["p50"] / entry["bypass"]["p50"], 2)
        entry["mismatches"] = mismatches
        report[op] = entry
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bypass-dsn", required=True)
    parser.add_argument("--request-dsn", required=True)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    lookup_conn = psycopg2.connect(args.bypass_dsn)
    lookup_conn.autocommit = True
    lookup = lookup_conn.cursor()
    report = {}
    for protocol in PROTOCOLS:
        catalog = workload.Catalog.from_messages(lookup, random.Random(7))
        bypass, request = Client(args.bypass_dsn, protocol), Client(args.request_dsn, protocol)
        report[protocol] = compare(lookup, bypass, request, catalog, args.rounds)
        bypass.close()
        request.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
