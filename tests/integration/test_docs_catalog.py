"""The schema documents against the live catalog: every table and index is described.

A database built from roles/chatflow_database/files/schema.sql (the migrations' whole) is read back
from pg_catalog; docs/tables_description.md must describe every table and the
materialized view, docs/indexes_explained.md every index with the query it
serves, under its table's heading, and the counts they state must be true.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pgtest import ROOT, psql, psql_file

DB = "chatflow_docs"
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def catalog(cluster) -> dict:
    psql(cluster, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    psql(cluster, f"CREATE DATABASE {DB} TEMPLATE template0", db="postgres")
    out = psql_file(cluster, ROOT / "roles/chatflow_database/files/schema.sql", db=DB)
    assert out.returncode == 0, out.stderr
    tables = psql(
        cluster,
        "SELECT string_agg(relname || ':' || relkind::text, ' ' ORDER BY relname) FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'm')",
        db=DB,
    ).split()
    indexes = psql(
        cluster,
        "SELECT string_agg(indexname || ':' || tablename, ' ' ORDER BY indexname) FROM pg_indexes "
        "WHERE schemaname = 'public'",
        db=DB,
    ).split()
    return {
        "tables": dict(t.split(":") for t in tables),
        "indexes": dict(i.split(":") for i in indexes),
    }


def sections(text: str) -> dict[str, str]:
    """{first word of a '## ' heading: its body}."""
    parts = re.split(r"^## +", text, flags=re.M)
    return {part.split()[0]: part for part in parts[1:]}


def test_every_table_is_described(catalog):
    text = (DOCS / "tables_description.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| \d+ \| `(\w+)` \|", text, flags=re.M))
    tables = {name for name, kind in catalog["tables"].items() if kind == "r"}
    assert rows == tables, f"tables without a row: {tables - rows}; rows of no table: {rows - tables}"
    assert f"exactly the\n{len(tables)} tables" in text or f"exactly the {len(tables)} tables" in text
    for name, kind in catalog["tables"].items():
        if kind == "m":
            assert f"`{name}` (materialized view)" in text


def test_every_index_is_explained_under_its_table(catalog):
    text = (DOCS / "indexes_explained.md").read_text(encoding="utf-8")
    by_table = sections(text)
    documented = {}
    for table, body in by_table.items():
        for name, serves in re.findall(r"^\| `(\w+)` \| [^|]+ \|(.*)\|\s*$", body, flags=re.M):
            documented[name] = (table, serves.strip())
    missing = set(catalog["indexes"]) - set(documented)
    assert not missing, f"indexes not in indexes_explained.md: {sorted(missing)}"
    for name, table in catalog["indexes"].items():
        where, serves = documented[name]
        assert where == table, f"{name} is on {table} but explained under '## {where}'"
        assert serves, f"{name}: the query it serves is not said"
    # Indexes the catalog does not have are only allowed in the section about the seed's dropped ones.
    stale = {n for n, (t, _) in documented.items() if n not in catalog["indexes"] and t != "Seed"}
    assert not stale, f"documented indexes the schema does not have: {sorted(stale)}"


def test_index_counts_are_true(catalog):
    text = (DOCS / "indexes_explained.md").read_text(encoding="utf-8")
    names = list(catalog["indexes"])
    primary = sum(n.endswith("_pkey") for n in names)
    match = re.search(r"(\d+) indexes in schema `public`.*?(\d+) primary\s+keys, (\d+) other unique", text, re.S)
    assert match, "the count sentence of indexes_explained.md is missing"
    assert int(match.group(1)) == len(names)
    assert int(match.group(2)) == primary


def test_seed_001_tables_are_mapped():
    """Seed 001's tables (rooms, room_users, message_read_status) each have a row in the mapping."""
    text = (DOCS / "tables_description.md").read_text(encoding="utf-8")
    mapping = sections(text).get("Seed", "")
    for seed_table in ("rooms", "room_users", "message_read_status", "users", "messages"):
        assert re.search(rf"^\| `{seed_table}[ .(`]", mapping, flags=re.M), f"seed 001's {seed_table} is not mapped"


def test_the_er_diagram_is_linked_from_the_docs():
    text = (DOCS / "tables_description.md").read_text(encoding="utf-8")
    assert "schema/chatflow_mvp.svg" in text
    assert Path(DOCS / "schema" / "chatflow_mvp.svg").exists()
