"""The seed's schema as written, fixed only enough to run: the benchmark's baseline.

It is read at run time from ../shared/seeds/000_*.txt (the first ```sql block
that creates the users table) and changed by the smallest edits that make it
run and carry the benchmark's data; each edit is listed in FIXES with why.
Nothing else (types, indexes, the matview, the GRANT ALL) is touched; the
benchmark creates the chatflow_app role first, so the seed's GRANTs run.

    python3 -m tools.bench.seed_schema [--seeds DIR]   # prints the SQL
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT.parent / "shared" / "seeds"

# (what, why, pattern, replacement): applied in order, each must match.
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
        r",\s*UNIQUE\(workspace_id, LOWER\(name\)\)\s*\n\);",
        "\n);\nCREATE UNIQUE INDEX channels_workspace_lower_name_key ON channels (workspace_id, LOWER(name));",
    ),
    (
        "add channel_members.last_read_at",
        "the unread-count operation of the workload needs it and the seed has no equivalent",
        r"(CREATE TABLE IF NOT EXISTS channel_members \([^;]*?joined_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,)",
        r"\1\n    last_read_at TIMESTAMP,",
    ),
)


def seed_file(seeds: Path = SEEDS) -> Path:
    found = sorted(seeds.glob("000_*.txt"))
    if not found:
        raise FileNotFoundError(f"no 000_*.txt seed document in {seeds}")
    return found[0]


def extract(text: str) -> str:
    """The ```sql block of the seed document that creates the tables."""
    for block in re.findall(r"```sql\n(.*?)```", text, flags=re.S):
        if "CREATE TABLE IF NOT EXISTS users" in block:
            return block
    raise ValueError("the seed document has no ```sql block creating the users table")


def fixed_schema(seeds: Path = SEEDS) -> str:
    sql = extract(seed_file(seeds).read_text(encoding="utf-8"))
    for what, _why, pattern, repl in FIXES:
        sql, n = re.subn(pattern, repl, sql, flags=re.S)
        if not n:
            raise ValueError(f"seed schema fix '{what}' no longer matches the seed document")
    return sql


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=Path, default=SEEDS)
    args = p.parse_args(argv)
    sys.stdout.write(fixed_schema(args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
