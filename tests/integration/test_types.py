"""The delivered TypeScript types (roles/chatflow_database/files/chatflow_mvp.ts) compile under
`tsc --strict`, cover every table the migrations build, and type the insert and update shapes.

Their freshness against the migrations is make docs-check's (tools/gen_types.py --check).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pgtest import ROOT, fresh_database, psql, psql_file

TYPES = ROOT / "roles/chatflow_database/files/chatflow_mvp.ts"
TSC = ROOT / ".state/node/node_modules/.bin/tsc"
GOOD = """
import type { Users, UsersInput, UsersUpdate, Messages, MessagesInput } from './chatflow_mvp';
const newUser: UsersInput = { email: 'a@example.com', username: 'a', password_hash: 'x' };
const rename: UsersUpdate = { display_name: 'A' };
const text: MessagesInput = { channel_id: 'c', user_id: 'u', content: 'hello' };
export function show(u: Users, m: Messages): string {
  return `${u.username} ${m.created_at.toISOString()} ${newUser.email} ${rename.display_name} ${text.content}`;
}
"""
# Each must fail to compile: a required column left out, a wrong type, a column that does not exist.
IMPORT = "import type { Messages, UsersInput, UsersUpdate } from './chatflow_mvp';\n"
BAD = {
    "missing required": IMPORT + "export const u: UsersInput = { email: 'a' };\n",
    "wrong type": IMPORT + "export const u: UsersUpdate = { username: 42 };\n",
    "unknown column": IMPORT + "export const f = (m: Messages) => m.body;\n",
}


def tsc(workdir: Path, source: str) -> subprocess.CompletedProcess:
    assert TSC.exists(), f"{TSC} is missing: run make node-deps"
    (workdir / "chatflow_mvp.ts").write_text(TYPES.read_text())
    (workdir / "use.ts").write_text(source)
    argv = [str(TSC), "--strict", "--noEmit", "--target", "es2020", "--module", "es2020", "use.ts", "chatflow_mvp.ts"]
    return subprocess.run(argv, cwd=workdir, capture_output=True, text=True, check=False, timeout=120)


def test_the_types_compile_strictly_and_serve_rows_inserts_and_updates(tmp_path):
    result = tsc(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_misuse_does_not_compile(tmp_path, case):
    result = tsc(tmp_path, BAD[case])
    assert result.returncode != 0 and "use.ts" in result.stdout, result.stdout


def test_every_table_has_its_row_insert_and_update_types(cluster):
    fresh_database(cluster)
    psql_file(cluster, ROOT / "roles/chatflow_database/files/schema.sql")
    tables = psql(
        cluster, "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
    )
    text = TYPES.read_text()
    for table in tables.split():
        name = "".join(part.capitalize() for part in table.split("_"))
        for suffix in ("", "Input"):
            assert re.search(rf"^export interface {name}{suffix} \{{", text, re.M), (table, suffix)
        assert f"export type {name}Update = Partial<{name}Input>;" in text, table
