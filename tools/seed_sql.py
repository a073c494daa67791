#!/usr/bin/env python3
"""The schema SQL of seed 000 (../shared/seeds), as written and "fixed only enough to run".

Used by the tests that adopt a database built by hand from the seed (baseline)
and by the benchmark's seed-schema side.  The seed is read at run time and
never copied into the project.

    python3 tools/seed_sql.py [--fixed]   # print the SQL
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seeds" / "000_915982d7d73b6dd6.txt"
MARKER = "CHATFLOW MVP - PostgreSQL Schema"


def seed_schema(seed: Path = SEED) -> str:
    """The ```sql block of the seed that holds its complete schema, verbatim."""
    text = seed.read_text(encoding="utf-8")
    for block in re.findall(r"```sql\n(.*?)```", text, flags=re.S):
        if MARKER in block:
            return block
    raise ValueError(f"{seed}: no sql block with {MARKER!r}")


def seed_schema_fixed(seed: Path = SEED) -> str:
    """The seed's schema with the two faults that stop it from running fixed, nothing else.

    - pg_trgm is created (the trigram index needs it);
    - UNIQUE(workspace_id, LOWER(name)) inside CREATE TABLE channels (a syntax
      error) becomes a unique index after the table;
    - the GRANTs to chatflow_app are left out (the role is the provisioning's).
    """
    sql = seed_schema(seed)
    sql = "CREATE EXTENSION IF NOT EXISTS pg_trgm;\n" + sql
    sql, count = re.subn(r",\s*\n\s*UNIQUE\(workspace_id, LOWER\(name\)\)\n\);", "\n);", sql)
    if count != 1:
        raise ValueError("the channels UNIQUE(workspace_id, LOWER(name)) clause was not found")
    sql = sql.replace(
        "CREATE INDEX idx_channels_workspace_id ON channels(workspace_id);",
        "CREATE UNIQUE INDEX channels_workspace_id_lower_name ON channels(workspace_id, LOWER(name));\n"
        "CREATE INDEX idx_channels_workspace_id ON channels(workspace_id);",
    )
    return re.sub(r"(?m)^GRANT .* TO chatflow_app;\n", "", sql)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", action="store_true", help="fixed only enough to run")
    args = parser.parse_args()
    sys.stdout.write(seed_schema_fixed() if args.fixed else seed_schema())
    return 0


if __name__ == "__main__":
    sys.exit(main())
