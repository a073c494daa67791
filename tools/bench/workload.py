"""The ChatFlow workload: the app's hot queries, and a client that runs their mix.

Runs where the database is (inside the sandbox container), with only the
standard library and psycopg2.  The SQL below is the single definition of the
hot queries: the benchmark runs it, and tests/integration/test_query_plans.py
checks each one's plan.

    python3 workload.py mix   --dsn DSN --clients 8 --seconds 30 [--refresh-dsn DSN]
    python3 workload.py pool  --dsn DSN --clients 200 --seconds 20
Prints one JSON document (latencies in ms per operation) on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import sys
import threading
import time

import psycopg2

# name -> SQL.  Parameters come from Catalog.params().
QUERIES: dict[str, str] = {
    "post_message": (
        "INSERT INTO messages (channel_id, user_id, content) VALUES (%(channel)s, %(user)s, %(content)s) "
        "RETURNING id, created_at"
    ),
    "channel_history": (
        "SELECT id, user_id, content, thread_id, created_at FROM messages "
        "WHERE channel_id = %(channel)s AND deleted_at IS NULL AND (created_at, id) < (%(before)s, %(before_id)s) "
        "ORDER BY created_at DESC, id DESC LIMIT 50"
    ),
    "open_thread": (
        "SELECT id, user_id, content, created_at FROM messages WHERE thread_id = %(root)s AND deleted_at IS NULL "
        "ORDER BY created_at LIMIT 100"
    ),
    "unread_counts": (
        "SELECT cm.channel_id, (SELECT count(*) FROM messages m WHERE m.channel_id = cm.channel_id "
        "AND m.created_at > COALESCE(cm.last_read_at, '-infinity') AND m.deleted_at IS NULL) AS unread "
        "FROM channel_members cm WHERE cm.user_id = %(user)s"
    ),
    "notifications": (
        "SELECT id, type, actor_id, related_message_id, created_at FROM notifications "
        "WHERE user_id = %(user)s AND NOT is_read ORDER BY created_at DESC LIMIT 20"
    ),
    "search_fulltext": (
        "SELECT id, channel_id, created_at FROM messages "
        "WHERE to_tsvector('english', content) @@ websearch_to_tsquery('english', %(query)s) "
        "AND channel_id = ANY (ARRAY(SELECT channel_id FROM channel_members WHERE user_id = %(user)s)) "
        "AND deleted_at IS NULL ORDER BY created_at DESC LIMIT 20"
    ),
    "search_fuzzy": (
        "SELECT id, channel_id, created_at FROM messages WHERE content ILIKE %(pattern)s "
        "AND channel_id = ANY (ARRAY(SELECT channel_id FROM channel_members WHERE user_id = %(user)s)) "
        "AND deleted_at IS NULL ORDER BY created_at DESC LIMIT 20"
    ),
    "add_reaction": (
        "INSERT INTO reactions (message_id, user_id, emoji) VALUES (%(message)s, %(user)s, %(emoji)s) "
        "ON CONFLICT DO NOTHING"
    ),
}
# The same operations as a request acting for a user (DATABASE_REQUEST_URL, row-level
# security on app.user_id): the same SQL, except search and the unread counts, which go
# through SECURITY DEFINER functions that keep their plans (migration R__05).
REQUEST_QUERIES: dict[str, str] = {
    **QUERIES,
    "search_fulltext": "SELECT id, channel_id, created_at FROM search_messages(%(query)s, 20)",
    "search_fuzzy": "SELECT id, channel_id, created_at FROM search_messages_fuzzy(%(pattern)s, 20)",
    "unread_counts": "SELECT channel_id, unread FROM my_unread_counts()",
}
SET_USER = "SELECT set_config('app.user_id', %(user)s, true)"
# How often each runs in the mix (a chat client reads far more than it writes).
WEIGHTS: dict[str, int] = {
    "channel_history": 30,
    "post_message": 12,
    "open_thread": 10,
    "unread_counts": 10,
    "notifications": 12,
    "search_fulltext": 8,
    "search_fuzzy": 6,
    "add_reaction": 12,
}
# The stats view is refreshed by one client on a timer, as a job would.
REFRESH = {"ours": "SELECT refresh_channel_stats()", "seed": "REFRESH MATERIALIZED VIEW channel_stats"}
EMOJI = ("👍", "❤️", "🚀", "🎉", "👀")
WORDS_SQL = "SELECT w FROM unnest(%s::text[]) AS w WHERE numnode(plainto_tsquery('english', w)) > 0"


class Catalog:
    """Real keys to draw parameters from, read once from the database."""

    def __init__(self, cur, words: list[str], fragments: list[str], rng: random.Random) -> None:
        cur.execute(
            "SELECT user_id, array_agg(channel_id::text) FROM channel_members "
            "GROUP BY user_id ORDER BY user_id LIMIT 2000"
        )
        self.members = [(str(u), chs) for u, chs in cur.fetchall()]
        cur.execute(
            "SELECT thread_id::text FROM messages WHERE thread_id IS NOT NULL GROUP BY thread_id "
            "ORDER BY thread_id LIMIT 5000"
        )
        self.roots = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT id::text, channel_id::text FROM messages ORDER BY created_at DESC LIMIT 5000")
        self.recent = cur.fetchall()
        cur.execute("SELECT max(created_at) FROM messages")
        self.latest = cur.fetchone()[0]
        cur.execute(WORDS_SQL, (words,))
        self.words = [r[0] for r in cur.fetchall()]
        self.fragments = fragments
        self.rng = rng

    @classmethod
    def from_messages(cls, cur, rng: random.Random) -> Catalog:
        """A catalog whose search words and fuzzy fragments come from the first 500 messages."""
        cur.execute(
            "SELECT array_agg(DISTINCT w) FROM unnest(tsvector_to_array(to_tsvector('english', "
            "(SELECT string_agg(content, ' ') FROM (SELECT content FROM messages LIMIT 500) s)))) w"
        )
        words = cur.fetchone()[0] or []
        return cls(cur, words, [w[:4] for w in words if len(w) >= 4][:50], rng)

    def params(self, op: str) -> dict:
        rng = self.rng
        user, channels = rng.choice(self.members)
        p: dict = {"user": user}
        if op == "post_message":
            p.update(channel=rng.choice(channels), content=" ".join(rng.choices(self.words, k=rng.randint(3, 20))))
        elif op == "channel_history":
            # The first page (before the newest message) or a later one.
            p.update(channel=rng.choice(channels), before=self.latest, before_id="ffffffff-ffff-ffff-ffff-ffffffffffff")
        elif op == "open_thread":
            p.update(root=rng.choice(self.roots))
        elif op == "search_fulltext":
            p.update(query=" ".join(rng.sample(self.words, rng.choice((1, 2, 2)))))
        elif op == "search_fuzzy":
            p.update(pattern=f"%{rng.choice(self.fragments)}%")
        elif op == "add_reaction":
            msg, _channel = rng.choice(self.recent)
            p.update(message=msg, emoji=rng.choice(EMOJI))
        return p


# A user who may see the message a parameter names: a member of its channel.
MEMBER_OF_MESSAGE = (
    "SELECT cm.user_id::text FROM channel_members cm JOIN messages m ON m.channel_id = cm.channel_id "
    "WHERE m.id = %s ORDER BY cm.user_id LIMIT 1"
)


def visible_params(cur, catalog: Catalog, op: str) -> dict:
    """Parameters for op whose user may see what they name (a thread root, a message to react to)."""
    params = catalog.params(op)
    message = params.get("root") or params.get("message")
    if message:
        cur.execute(MEMBER_OF_MESSAGE, (message,))
        params["user"] = cur.fetchone()[0]
    return params


def _connect(dsn: str):
    conn = psycopg2.connect(dsn, application_name="chatflow-bench")
    conn.autocommit = True
    return conn


def _mix_client(args: tuple) -> dict:
    """One client process: run the weighted mix until the deadline; latencies in ms per op."""
    dsn, seconds, seed, words, fragments, start_at = args
    rng = random.Random(seed)
    conn = _connect(dsn)
    cur = conn.cursor()
    cat = Catalog(cur, words, fragments, rng)
    ops, weights = zip(*WEIGHTS.items(), strict=True)
    lat: dict[str, list[float]] = {op: [] for op in ops}
    errors: dict[str, int] = {}
    cursors: dict[str, tuple] = {}
    while time.time() < start_at:
        time.sleep(0.01)
    deadline = start_at + seconds
    while time.time() < deadline:
        op = rng.choices(ops, weights)[0]
        p = cat.params(op)
        if op == "channel_history" and p["channel"] in cursors and rng.random() < 0.5:
            p["before"], p["before_id"] = cursors.pop(p["channel"])  # the next page (keyset)
        t0 = time.perf_counter()
        try:
            cur.execute(QUERIES[op], p)
            rows = cur.fetchall() if cur.description else []
        except psycopg2.Error as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        lat[op].append((time.perf_counter() - t0) * 1000)
        if op == "channel_history" and len(rows) == 50:
            cursors[p["channel"]] = (rows[-1][4], rows[-1][0])
    conn.close()
    return {"latencies": lat, "errors": errors}


def _refresher(dsn: str, sql: str, every: float, deadline: float, out: list[float]) -> None:
    conn = _connect(dsn)
    cur = conn.cursor()
    while time.time() + every < deadline:
        time.sleep(every)
        t0 = time.perf_counter()
        cur.execute(sql)
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()


def run_mix(dsn: str, clients: int, seconds: float, words: list[str], fragments: list[str], **kw) -> dict:
    """The mix with `clients` processes (one connection each), plus the timed refresh of the stats view."""
    start_at = time.time() + 3.0  # every client has read its catalog
    jobs = [(dsn, seconds, 1000 + i, words, fragments, start_at) for i in range(clients)]
    refresh: list[float] = []
    t = None
    if kw.get("refresh_sql"):
        t = threading.Thread(
            target=_refresher,
            args=(
                kw.get("refresh_dsn") or dsn,
                kw["refresh_sql"],
                kw.get("refresh_every", 5.0),
                start_at + seconds,
                refresh,
            ),
        )
        t.start()
    with mp.get_context("fork").Pool(clients) as pool:
        results = pool.map(_mix_client, jobs)
    if t:
        t.join()
    merged: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for r in results:
        for op, values in r["latencies"].items():
            merged.setdefault(op, []).extend(values)
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    if refresh:
        merged["refresh_channel_stats"] = refresh
    return {"seconds": seconds, "clients": clients, "latencies": merged, "errors": errors}


def _pool_thread(dsn: str, deadline: float, rng: random.Random, cat: Catalog, out: dict) -> None:
    """One of many app connections: connect, run short transactions, count what fails."""
    conn = None
    while time.time() < deadline:
        if conn is None:
            t0 = time.perf_counter()
            try:
                conn = _connect(dsn)
                cur = conn.cursor()
            except psycopg2.OperationalError as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                out["connect_errors"][msg] = out["connect_errors"].get(msg, 0) + 1
                time.sleep(0.1)
                continue
            out["connect"].append((time.perf_counter() - t0) * 1000)
        op = rng.choice(("channel_history", "unread_counts", "notifications", "post_message"))
        t0 = time.perf_counter()
        try:
            cur.execute(QUERIES[op], cat.params(op))
            if cur.description:
                cur.fetchall()
        except psycopg2.Error as exc:
            out["errors"][type(exc).__name__] = out["errors"].get(type(exc).__name__, 0) + 1
            conn.close()
            conn = None
            continue
        out["latencies"].append((time.perf_counter() - t0) * 1000)
        time.sleep(rng.uniform(0, 0.02))  # the app does work between queries
    if conn is not None:
        conn.close()


def _pool_process(args: tuple) -> dict:
    dsn, catalog_dsn, threads, seconds, seed, words, fragments, start_at = args
    rng = random.Random(seed)
    with _connect(catalog_dsn) as c:
        cat = Catalog(c.cursor(), words, fragments, rng)
    out: dict = {"latencies": [], "connect": [], "errors": {}, "connect_errors": {}}
    while time.time() < start_at:
        time.sleep(0.01)
    ts = [
        threading.Thread(target=_pool_thread, args=(dsn, start_at + seconds, random.Random(seed * 1000 + i), cat, out))
        for i in range(threads)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def run_pool(
    dsn: str, catalog_dsn: str, *, clients: int, seconds: float, words: list[str], fragments: list[str]
) -> dict:
    """`clients` connections at once (threads in 4 processes), each running short queries."""
    procs = 4
    start_at = time.time() + 3.0
    jobs = [
        (
            dsn,
            catalog_dsn,
            clients // procs + (1 if i < clients % procs else 0),
            seconds,
            7 + i,
            words,
            fragments,
            start_at,
        )
        for i in range(procs)
    ]
    with mp.get_context("fork").Pool(procs) as pool:
        results = pool.map(_pool_process, jobs)
    merged: dict = {"seconds": seconds, "clients": clients, "latencies": {"query": []}, "connect_ms": []}
    merged["errors"], merged["connect_errors"] = {}, {}
    for r in results:
        merged["latencies"]["query"].extend(r["latencies"])
        merged["connect_ms"].extend(r["connect"])
        for key in ("errors", "connect_errors"):
            for k, v in r[key].items():
                merged[key][k] = merged[key].get(k, 0) + v
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("mix", "pool"))
    p.add_argument("--dsn", required=True)
    p.add_argument("--catalog-dsn", help="pool mode: where to read the keys (a direct connection)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--words", default="[]", help="JSON list of search words")
    p.add_argument("--fragments", default="[]", help="JSON list of fuzzy-search fragments")
    p.add_argument("--refresh-sql", default="")
    p.add_argument("--refresh-dsn", default="")
    args = p.parse_args(argv)
    words, fragments = json.loads(args.words), json.loads(args.fragments)
    if args.mode == "mix":
        result = run_mix(
            args.dsn,
            args.clients,
            args.seconds,
            words,
            fragments,
            refresh_sql=args.refresh_sql,
            refresh_dsn=args.refresh_dsn,
        )
    else:
        result = run_pool(
            args.dsn,
            args.catalog_dsn or args.dsn,
            clients=args.clients,
            seconds=args.seconds,
            words=words,
            fragments=fragments,
        )
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
