#!/usr/bin/env python3
"""The schema SQL of seed 000 (../shared/seeds), as written and "fixed only enough to run".

The one place that knows the seed's faults.  Used by the tests that adopt a
database built by hand from the seed (baseline) and by the benchmark's
seed-design side.  The seed is read at run time and never copied into the
project; each edit is listed in FIXES with why, and each must still match.

    python3 tools/seed_sql.py [--fixed]   # print the SQL
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT.parent / "shared" / "seeds"
MARKER = "CHATFLOW MVP - PostgreSQL Schema"

# (what, why, pattern, replacement): applied in order, each must match once.
FIXES: tuple[tuple[str, str, str, str], ...] = (
    (
        "create pg_trgm first",
        "the gin_trgm_ops index fails without the extension, which the seed never creates",
        r"\A",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;\n",
    ),
    (
        "move UNIQUE(workspace_id, LOWER(name)) out of CREATE TABLE channels into a unique index",
        "an expression inside a table constraint is a syntax error: channels and 30 statements after it fail",
        r",\s*\n\s*UNIQUE\(workspace_id, LOWER\(name\)\)\n\);",
        "\n);\nCREATE UNIQUE INDEX channels_workspace_id_lower_name ON channels(workspace_id, LOWER(name));",
    ),
)
# The benchmark's workload counts unread messages per channel: the seed has no column for it.
UNREAD_FIX = (
    "add channel_members.last_read_at",
    "the unread-count operation of the workload needs it and the seed has no equivalent",
    r"(CREATE TABLE IF NOT EXISTS channel_members \([^;]*?joined_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,)",
    r"\1\n    last_read_at TIMESTAMP,",
)
# The GRANTs to chatflow_app fail where the role does not exist yet (the provisioning's own role).
GRANTS = r"(?m)^GRANT .* TO chatflow_app;\n"


def seed_file(seeds: Path = SEEDS) -> Path:
    found = sorted(seeds.glob("000_*.txt"))
    if not found:
        raise FileNotFoundError(f"no 000_*.txt seed document in {seeds}")
    return found[0]


SEED = seed_file() if SEEDS.is_dir() and any(SEEDS.glob("000_*.txt")) else SEEDS / "000_missing.txt"


def seed_schema(seed: Path = SEED) -> str:
    """The ```sql block of the seed that holds its complete schema, verbatim."""
    text = seed.read_text(encoding="utf-8")
    for block in re.findall(r"```sql\n(.*?)```", text, flags=re.S):
        if MARKER in block:
            return block
    raise ValueError(f"{seed}: no sql block with {MARKER!r}")


def seed_schema_fixed(seed: Path = SEED, *, keep_grants: bool = False, unread_counts: bool = False) -> str:
    """The seed's schema with the faults that stop it from running fixed, nothing else
    (and, for the benchmark, the GRANTs kept and the unread-count column added)."""
    sql = seed_schema(seed)
    for what, _why, pattern, repl in FIXES + ((UNREAD_FIX,) if unread_counts else ()):
        sql, count = re.subn(pattern, repl, sql, flags=re.S)
        if count != 1:
            raise ValueError(f"seed schema fix '{what}' no longer matches the seed document")
    return sql if keep_grants else re.sub(GRANTS, "", sql)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", action="store_true", help="fixed only enough to run")
    args = parser.parse_args()
    sys.stdout.write(seed_schema_fixed() if args.fixed else seed_schema())
    return 0


if __name__ == "__main__":
    sys.exit(main())
