"""The app's real Redis operations through its ACL user: throughput and latency per operation.

Runs inside the sandbox (standard library + redis-py).  Every key it writes is
named `...:bench-...`, has a TTL of at most an hour and is deleted at the end.

    REDIS_URL=redis://chatflow_app:...@localhost:6379/0 python3 redisbench.py --clients 8 --seconds 20
Prints one JSON document (latencies in ms per operation) on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import threading
import time

import redis

WEIGHTS = {
    "session_get": 35,
    "session_set": 10,
    "presence_heartbeat": 20,
    "room_presence_read": 10,
    "typing": 15,
    "publish": 10,
}


def _op(r: redis.Redis, op: str, rng: random.Random, pid: int) -> None:
    user = f"bench-{pid}-{rng.randrange(2000)}"
    room = f"bench-{rng.randrange(200)}"
    if op == "session_get":
        r.get(f"session:{user}")
    elif op == "session_set":
        r.set(f"session:{user}", json.dumps({"userId": user, "device": "web", "ts": time.time()}), ex=3600)
    elif op == "presence_heartbeat":
        # presence:{userId} with a short TTL, and the room's presence set.
        with r.pipeline(transaction=False) as p:
            p.set(f"presence:{user}", "online", ex=60)
            p.sadd(f"room:{room}:presence", user)
            p.expire(f"room:{room}:presence", 120)
            p.execute()
    elif op == "room_presence_read":
        r.smembers(f"room:{room}:presence")
    elif op == "typing":
        r.set(f"typing:{room}:{user}", "1", ex=5)
    elif op == "publish":
        r.publish(f"room:{room}", json.dumps({"type": "message", "room": room, "from": user}))


def _thread(url: str, deadline: float, seed: int, pid: int, out: tuple[dict, dict]) -> None:
    lat, errors = out
    rng = random.Random(seed)
    r = redis.Redis.from_url(url, socket_timeout=5)
    ops, weights = zip(*WEIGHTS.items(), strict=True)
    while time.time() < deadline:
        op = rng.choices(ops, weights)[0]
        t0 = time.perf_counter()
        try:
            _op(r, op, rng, pid)
        except redis.RedisError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        lat[op].append((time.perf_counter() - t0) * 1000)
    r.close()


def _process(args: tuple) -> dict:
    url, threads, seconds, pid, start_at = args
    lat: dict[str, list[float]] = {op: [] for op in WEIGHTS}
    errors: dict[str, int] = {}
    while time.time() < start_at:
        time.sleep(0.01)
    ts = [
        threading.Thread(target=_thread, args=(url, start_at + seconds, pid * 100 + i, pid, (lat, errors)))
        for i in range(threads)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"latencies": lat, "errors": errors}


def cleanup(url: str) -> int:
    """Delete the keys the benchmark wrote (SCAN, not KEYS, which the app user may not run)."""
    r = redis.Redis.from_url(url)
    n = 0
    for pattern in ("session:bench-*", "presence:bench-*", "room:bench-*", "typing:bench-*"):
        batch = list(r.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            n += r.delete(*batch[i : i + 500])
    r.close()
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--url",
        default=os.environ.get("REDIS_URL"),
        help="default $REDIS_URL (keeps the password off the command line)",
    )
    p.add_argument("--clients", type=int, default=8, help="connections (threads in 2 processes)")
    p.add_argument("--seconds", type=float, default=20)
    args = p.parse_args(argv)
    procs = 2
    start_at = time.time() + 1.0
    jobs = [
        (args.url, args.clients // procs + (1 if i < args.clients % procs else 0), args.seconds, i, start_at)
        for i in range(procs)
    ]
    with mp.get_context("fork").Pool(procs) as pool:
        results = pool.map(_process, jobs)
    merged: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for r in results:
        for op, v in r["latencies"].items():
            merged.setdefault(op, []).extend(v)
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    deleted = cleanup(args.url)
    json.dump(
        {"seconds": args.seconds, "clients": args.clients, "latencies": merged, "errors": errors, "deleted": deleted},
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
