#!/usr/bin/env python3
"""Draw the ER diagram of `chatflow_mvp` from a live database's catalog.

A throwaway PostgreSQL 15 cluster (the integration tests' helper) gets the
schema the migrations build (roles/chatflow_database/files/schema.sql, their generated whole); the
tables, columns, keys and foreign keys are then read from pg_catalog and
written as a Graphviz graph, which `dot` renders to SVG and PNG:

    docs/schema/chatflow_mvp.dot   the graph (text, reviewable in a diff)
    docs/schema/chatflow_mvp.svg   the picture
    docs/schema/chatflow_mvp.png

The SVG and PNG carry the SHA-256 of the graph they were drawn from, so a
picture that was not redrawn after a schema change is detected too.

    python3 tools/gen_erd.py           # regenerate (make docs)
    python3 tools/gen_erd.py --check   # exit 1 when any of the three is stale (make test)
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import pgtest  # noqa: E402  (the throwaway cluster of the integration tests)

OUT = ROOT / "docs" / "schema"
DOT, SVG, PNG = (OUT / f"chatflow_mvp.{ext}" for ext in ("dot", "svg", "png"))
DIGEST_KEY = "chatflow-erd-source-sha256"
DB = "chatflow_erd"

# One JSON document: every table and materialized view of schema public with
# its columns (in order), primary key, unique single columns and foreign keys.
CATALOG_SQL = r"""
WITH rels AS (
  SELECT c.oid, c.relname, c.relkind, obj_description(c.oid, 'pg_class') AS comment
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm')
),
cols AS (
  SELECT a.attrelid, json_agg(json_build_object(
           'name', a.attname,
           'type', format_type(a.atttypid, a.atttypmod),
           'not_null', a.attnotnull,
           'generated', a.attgenerated <> '',
           'pk', EXISTS (SELECT FROM pg_constraint p WHERE p.conrelid = a.attrelid AND p.contype = 'p'
                         AND a.attnum = ANY (p.conkey)),
           'unique', EXISTS (SELECT FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique
                             AND NOT i.indisprimary AND i.indnatts = 1 AND i.indkey[0] = a.attnum))
         ORDER BY a.attnum) AS columns
  FROM pg_attribute a
  WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attrelid IN (SELECT oid FROM rels)
  GROUP BY a.attrelid
),
fks AS (
  SELECT f.conrelid, json_agg(json_build_object(
           'name', f.conname,
           'columns', (SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(f.conkey) WITH ORDINALITY k(num, ord)
                       JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.num),
           'ref_table', f.confrelid::regclass::text,
           'ref_columns', (SELECT array_agg(a.attname ORDER BY k.ord)
                           FROM unnest(f.confkey) WITH ORDINALITY k(num, ord)
                           JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.num),
           'on_delete', CASE f.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
                          WHEN 'd' THEN 'SET DEFAULT' WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END)
         ORDER BY f.conname) AS fks
  FROM pg_constraint f WHERE f.contype = 'f' GROUP BY f.conrelid
)
SELECT json_agg(json_build_object('name', r.relname, 'kind', r.relkind, 'comment', r.comment,
                                  'columns', cols.columns, 'fks', coalesce(fks.fks, '[]'))
                ORDER BY r.relname)
FROM rels r JOIN cols ON cols.attrelid = r.oid LEFT JOIN fks ON fks.conrelid = r.oid
"""


def read_catalog() -> list[dict]:
    """Build the schema in a throwaway cluster and read it back from pg_catalog."""
    if not pgtest.HAVE_SERVER:
        sys.exit(f"gen_erd: no PostgreSQL 15 server in {pgtest.BINDIR} (run: python3 tools/hostctl.py host-deps)")
    tmp, sock = pgtest.start_cluster()
    try:
        pgtest.fresh_database(sock, name=DB)
        out = pgtest.psql_file(sock, ROOT / "roles/chatflow_database/files/schema.sql", db=DB)
        if out.returncode != 0:
            sys.exit(f"gen_erd: roles/chatflow_database/files/schema.sql failed on PostgreSQL 15:\n{out.stderr}")
        return json.loads(pgtest.psql(sock, CATALOG_SQL, db=DB))
    finally:
        pgtest.stop_cluster(tmp)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _node(rel: dict, fk_columns: set[str]) -> str:
    matview = rel["kind"] == "m"
    head = "#5b6770" if matview else "#2c5d8a"
    title = f"{rel['name']} (materialized view)" if matview else rel["name"]
    rows = [
        f'<TR><TD BGCOLOR="{head}" COLSPAN="3" ALIGN="LEFT"><FONT COLOR="white"><B>{_esc(title)}</B></FONT></TD></TR>'
    ]
    for col in rel["columns"]:
        keys = []
        if col["pk"]:
            keys.append("PK")
        if col["name"] in fk_columns:
            keys.append("FK")
        if col["unique"]:
            keys.append("UQ")
        name = f"<B>{_esc(col['name'])}</B>" if col["pk"] else _esc(col["name"])
        kind = _esc(col["type"]) + ("" if col["not_null"] or col["pk"] else "?")
        if col["generated"]:
            kind += " (generated)"
        rows.append(
            f'<TR><TD ALIGN="LEFT" PORT="{col["name"]}">{name}</TD><TD ALIGN="LEFT"><FONT COLOR="#555555">{kind}'
            f'</FONT></TD><TD ALIGN="LEFT" PORT="{col["name"]}.out">{" ".join(keys)}</TD></TR>'
        )
    table = '<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">' + "".join(rows) + "</TABLE>"
    style = ', style="dashed"' if matview else ""
    return f'  "{rel["name"]}" [label=<{table}>{style}];'


def render_dot(catalog: list[dict]) -> str:
    """The graph: one node per table, one edge per foreign key (parent -> child, crow's foot on the child)."""
    nullable = {(r["name"], c["name"]) for r in catalog for c in r["columns"] if not c["not_null"]}
    lines = [
        "// GENERATED by tools/gen_erd.py from the catalog of a database built by the migrations",
        "// (roles/chatflow_database/files/migrations): do not edit; run `make docs` after changing the schema",
        "// (make test fails while it is stale).",
        "digraph chatflow_mvp {",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=12, nodesep=0.4, ranksep=0.9, '
        'label="chatflow_mvp (schema public): tables, keys and foreign keys. ? = nullable; '
        'edge labels: ON DELETE", labelloc=t];',
        '  node [shape=plaintext, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8, color="#555555", arrowsize=0.8, dir=both];',
    ]
    for rel in catalog:
        fk_columns = {c for fk in rel["fks"] for c in fk["columns"]}
        lines.append(_node(rel, fk_columns))
    for rel in catalog:
        for fk in rel["fks"]:
            optional = any((rel["name"], c) in nullable for c in fk["columns"])
            lines.append(
                f'  "{fk["ref_table"]}":"{fk["ref_columns"][0]}.out":e -> "{rel["name"]}":"{fk["columns"][0]}":w '
                f'[arrowhead=crow, arrowtail={"teeodot" if optional else "teetee"}, label="{fk["on_delete"]}", '
                f'tooltip="{fk["name"]}"];'
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def digest(dot: str) -> str:
    return hashlib.sha256(dot.encode()).hexdigest()


def _dot(fmt: str, source: str) -> bytes:
    return subprocess.run(["dot", f"-T{fmt}"], input=source.encode(), capture_output=True, check=True).stdout


def render_svg(source: str) -> bytes:
    svg = _dot("svg", source)
    mark = f"<!-- {DIGEST_KEY}: {digest(source)} -->\n".encode()
    head, sep, rest = svg.partition(b"?>\n")
    return head + sep + mark + rest if sep else mark + svg


def render_png(source: str) -> bytes:
    """The PNG with a tEXt chunk holding the graph's digest (inserted before IEND)."""
    png = _dot("png", source)
    data = DIGEST_KEY.encode() + b"\0" + digest(source).encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


def recorded_digest(path: Path) -> str | None:
    if not path.exists():
        return None
    blob = path.read_bytes()
    key = DIGEST_KEY.encode()
    at = blob.find(key)
    if at < 0:
        return None
    start = at + len(key) + (2 if path.suffix == ".svg" else 1)  # ": " in the SVG comment, NUL in the PNG chunk
    return blob[start : start + 64].decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/schema is stale; write nothing")
    args = parser.parse_args()
    source = render_dot(read_catalog())
    if args.check:
        problems = []
        current = DOT.read_text(encoding="utf-8") if DOT.exists() else ""
        if current != source:
            diff = difflib.unified_diff(current.splitlines(), source.splitlines(), str(DOT), "catalog", lineterm="")
            problems.append(f"{DOT.relative_to(ROOT)} differs from the live schema:\n" + "\n".join(list(diff)[:60]))
        for picture in (SVG, PNG):
            if recorded_digest(picture) != digest(source):
                problems.append(f"{picture.relative_to(ROOT)} was not drawn from the current graph")
        if problems:
            print("\n".join(problems), file=sys.stderr)
            print("The ER diagram is stale: run `make docs` and commit docs/schema.", file=sys.stderr)
            return 1
        print(f"docs/schema is up to date ({source.count(' -> ')} foreign keys, digest {digest(source)[:12]})")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    DOT.write_text(source, encoding="utf-8")
    SVG.write_bytes(render_svg(source))
    PNG.write_bytes(render_png(source))
    print(f"wrote {DOT.relative_to(ROOT)}, {SVG.name}, {PNG.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
