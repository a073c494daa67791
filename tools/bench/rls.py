"""What row-level security costs: each hot query as a request for a user, against the same query unrestricted.

The request side connects as a role subject to row-level security, sets app.user_id in each
transaction and runs workload.REQUEST_QUERIES (search through the SECURITY DEFINER functions);
the other side connects as a role that bypasses it and runs workload.QUERIES with the same
set_config (so both make the same round trips).  Rounds alternate between the two, with the same
parameters, each transaction rolled back (writes included), and both must return the same rows:
a user reading its own channels sees through the policies exactly what the unrestricted query
returns.  Prints one JSON document: per operation p50/p95 in ms for each side and the p50 ratio.

    python3 -m tools.bench.rls --bypass-dsn DSN --request-dsn DSN [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import psycopg2

from tools.bench import workload

# Reads whose rows must match on both sides (writes return new ids).
READS = ("channel_history", "open_thread", "unread_counts", "notifications", "search_fulltext", "search_fuzzy")
# A user who may see the message a parameter names: a member of its channel.
MEMBER_OF_MESSAGE = (
    "SELECT cm.user_id::text FROM channel_members cm JOIN messages m ON m.channel_id = cm.channel_id "
    "WHERE m.id = %s ORDER BY cm.user_id LIMIT 1"
)


def visible_params(cur, catalog: workload.Catalog, op: str) -> dict:
    """Parameters for op whose user may see what they name (a thread root, a message to react to)."""
    params = catalog.params(op)
    message = params.get("root") or params.get("message")
    if message:
        cur.execute(MEMBER_OF_MESSAGE, (message,))
        params["user"] = cur.fetchone()[0]
    return params


def timed(cur, sql: str, params: dict) -> tuple[float, list]:
    """One transaction for the user in params: set app.user_id, run the query; ms and its rows."""
    cur.execute("BEGIN")
    cur.execute(workload.SET_USER, params)
    started = time.perf_counter()
    cur.execute(sql, params)
    rows = cur.fetchall() if cur.description else []
    elapsed = (time.perf_counter() - started) * 1000
    cur.execute("ROLLBACK")
    return elapsed, rows


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50": round(statistics.median(ordered), 3), "p95": round(ordered[int(len(ordered) * 0.95) - 1], 3)}


def compare(bypass, request, catalog: workload.Catalog, rounds: int) -> dict:
    """Per operation: p50/p95 of both sides, the p50 ratio, and whether every read matched."""
    report = {}
    for op in sorted(workload.QUERIES):
        times: dict[str, list[float]] = {"bypass": [], "request": []}
        mismatches = 0
        for n in range(rounds):
            params = visible_params(bypass, catalog, op)
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
    bypass_conn, request_conn = psycopg2.connect(args.bypass_dsn), psycopg2.connect(args.request_dsn)
    for conn in (bypass_conn, request_conn):
        conn.autocommit = True
    bypass = bypass_conn.cursor()
    bypass.execute(
        "SELECT array_agg(DISTINCT w) FROM unnest(tsvector_to_array(to_tsvector('english', "
        "(SELECT string_agg(content, ' ') FROM (SELECT content FROM messages LIMIT 500) s)))) w"
    )
    words = bypass.fetchone()[0] or []
    catalog = workload.Catalog(bypass, words, [w[:4] for w in words if len(w) >= 4][:50], random.Random(7))
    print(json.dumps(compare(bypass, request_conn.cursor(), catalog, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
