"""`make bench-pitr`: pgBackRest's cost at the seed's size and with 1M messages, in one run.

On the sandbox (or --host, a local test container provisioned by site.yml), twice: first with a copy of
chatflow_mvp (the seed data) in the dump restores' scratch database, `chatflow_mvp_restore`; then with the
generated data set (tools/bench/datagen.py, --messages, default 1M) loaded into it; the live database is
not touched.  Each round: a full backup through its unit, 10,000 messages written, a differential backup,
and the latest state restored into the scratch cluster (chatflow-pitr restore), whose message count must
match the live one.  Prints the backup and restore times and sizes, and the ratios between the rounds.
Drops the bench database and the scratch cluster afterwards; the backups stay in the repository until its
retention expires them.

    python3 -m tools.bench.pitr [--host NAME] [--messages N] [--keep] [--replace-scratch]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tools.bench.run import Box, load_into, log, prepare_data, upload
from tools.inputs import defaults

# The inputs the sandbox was provisioned with (the roles' defaults).
INPUTS = defaults("chatflow_pgbackrest")
DB = INPUTS["chatflow_database_name"]
PORT = int(INPUTS["chatflow_postgresql_port"])
SCRATCH = INPUTS["chatflow_pgbackrest_scratch_cluster"]
SCRATCH_PORT = int(INPUTS["chatflow_pgbackrest_scratch_port"])
VERSION = INPUTS["chatflow_postgresql_version"]
# The scratch database of dump restores (playbooks/restore.yml): pg_hba lets postgres into it and no other
# database of ours.  A bench never replaces one that exists (--replace-scratch does).
BENCH_DB = DB + "_restore"
WRITE = (
    "INSERT INTO messages (channel_id, user_id, content) SELECT c.id, u.id, 'pitr bench ' || g "
    "FROM (SELECT id FROM channels ORDER BY id LIMIT 1) c, (SELECT id FROM users ORDER BY id LIMIT 1) u, "
    "generate_series(1, 10000) g"
)


def status(box: Box) -> dict:
    return json.loads(box.sh("/usr/local/sbin/chatflow-pitr status"))


def backup(box: Box, kind: str) -> dict:
    started = time.monotonic()
    box.sh(f"systemctl start chatflow-pgbackrest@{kind}.service")
    wall = time.monotonic() - started
    last = status(box)["last_backup"]
    if last["type"] != kind:
        raise RuntimeError(f"the newest backup is a {last['type']}, not the {kind} just taken")
    sizes = {"database_mb": mb(last["database_bytes"]), "repository_mb": mb(last["repository_bytes"])}
    return {"wall_s": round(wall, 1), **sizes}


def mb(n: int) -> float:
    return round(n / 1048576, 1)


def count(box: Box, port: int, db: str) -> int:
    return int(box.psql(port, "SELECT count(*) FROM messages", db=db))


def round_of(box: Box, db: str) -> dict:
    """A full backup, writes, a differential, the latest state into the scratch cluster."""
    result = {"cluster_mb": mb(int(box.psql(PORT, "SELECT sum(pg_database_size(oid)) FROM pg_database")))}
    result["full"] = backup(box, "full")
    box.psql(PORT, WRITE, db=db)
    result["diff"] = backup(box, "diff")
    started = time.monotonic()
    restored = json.loads(box.sh("/usr/local/sbin/chatflow-pitr restore"))
    result["restore"] = {
        "wall_s": round(time.monotonic() - started, 1),
        "copy_s": restored["copy_seconds"],
        "recovery_s": restored["recovery_seconds"],
    }
    live, scratch = count(box, PORT, db), count(box, SCRATCH_PORT, db)
    if live != scratch:
        raise RuntimeError(f"the scratch cluster has {scratch} messages in {db}, the live one {live}")
    result["messages"] = live
    return result


def create_bench_db(box: Box, replace: bool) -> None:
    """A copy of chatflow_mvp, its seed data included (a dump: CREATE DATABASE ... TEMPLATE would need
    chatflow_mvp without connections)."""
    exists = box.psql(PORT, f"SELECT 1 FROM pg_database WHERE datname = '{BENCH_DB}'").strip()
    if exists and not replace:
        raise SystemExit(f"{BENCH_DB} exists (a dump restore's scratch database?): drop it or pass --replace-scratch")
    box.psql(PORT, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    box.psql(PORT, f"CREATE DATABASE {BENCH_DB} OWNER {INPUTS['chatflow_database_owner_role']}")
    box.sh(f"pg_dump --no-owner {DB} | psql -X -q -v ON_ERROR_STOP=1 -d {BENCH_DB}", user="postgres")


def ratio(big: float, small: float) -> float | None:
    return round(big / small, 1) if small else None


def report(seed: dict, big: dict) -> str:
    rows = [
        ("cluster size (MB)", seed["cluster_mb"], big["cluster_mb"]),
        ("messages (bench database)", seed["messages"], big["messages"]),
        ("full backup (s)", seed["full"]["wall_s"], big["full"]["wall_s"]),
        ("full backup in the repository (MB)", seed["full"]["repository_mb"], big["full"]["repository_mb"]),
        ("differential after 10k messages (s)", seed["diff"]["wall_s"], big["diff"]["wall_s"]),
        ("differential in the repository (MB)", seed["diff"]["repository_mb"], big["diff"]["repository_mb"]),
        ("restore to the latest state (s)", seed["restore"]["wall_s"], big["restore"]["wall_s"]),
        ("  copy (s)", seed["restore"]["copy_s"], big["restore"]["copy_s"]),
        ("  WAL replay and promotion (s)", seed["restore"]["recovery_s"], big["restore"]["recovery_s"]),
    ]
    lines = [f"{'':38} {'seed size':>12} {'with data':>12} {'ratio':>7}"]
    lines += [f"{name:38} {a:>12} {b:>12} {ratio(b, a) or '-':>7}" for name, a, b in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="chatflow-sandbox", help="a local test container (never a real host)")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--keep", action="store_true", help="keep the bench database and the scratch cluster")
    parser.add_argument("--replace-scratch", action="store_true", help=f"replace an existing {BENCH_DB}")
    args = parser.parse_args(argv)
    box = Box(args.host)
    data, _summary = prepare_data(args.messages, args.seed)
    remote = upload(box, data)
    create_bench_db(box, args.replace_scratch)
    try:
        log("round 1: the cluster as provisioned")
        seed = round_of(box, BENCH_DB)
        log(f"loading {args.messages} messages into {BENCH_DB}")
        load_s = load_into(box, PORT, remote, db=BENCH_DB)
        log("round 2: with the data set")
        big = round_of(box, BENCH_DB)
    finally:
        if not args.keep:
            box.psql(PORT, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            box.sh(f"pg_dropcluster --stop {VERSION} {SCRATCH} || true")
    result = {"messages": args.messages, "load_s": round(load_s, 1), "seed_size": seed, "with_data": big}
    print(json.dumps(result, indent=2))
    print(report(seed, big))
    return 0


if __name__ == "__main__":
    sys.exit(main())
