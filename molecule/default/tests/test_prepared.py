"""Prepared statements on every PostgreSQL URL of .env.database, with the three clients the backend uses.

PgBouncer 1.18 (Debian 12) does not carry prepared statements across transactions in transaction
mode, so `DATABASE_POOL_URL` works only with the settings the env file and the connection guide
give for it; `DATABASE_URL` (one server connection per pooled client connection) takes them as they
are. Each workload runs concurrently, as a backend under load would:
- node `pg`: 200 queries at once through a Pool of 20, named (`{name, text, values}`) or unnamed;
- psycopg 3: 8 connections x 20 executes, with its default `prepare_threshold` (5) or with `None`;
- pgbench: 8 clients x 25 transactions, `--protocol=prepared` or `--protocol=extended`.
The documented way must succeed every time; what the guide tells pool users not to do is measured and
printed, not asserted (its failures depend on which server connection each transaction gets).
"""

from __future__ import annotations

import json
import re
import shlex
import sys

import pytest

from guide import GUIDE, NODE_DIR, run_in_netns
from hostlib import HOST_NAME, PROJECT

QUERY = (
    "SELECT count(*) FROM messages"
    " WHERE channel_id = (SELECT id FROM channels ORDER BY created_at LIMIT 1) AND $1::int > 0"
)

NODE = f"""
import pg from 'pg';
const [url, mode] = process.argv.slice(2);
const pool = new pg.Pool({{ connectionString: url, max: 20 }});
const text = {json.dumps(QUERY)};
const runs = await Promise.allSettled(Array.from({{ length: 200 }}, (_, i) =>
  pool.query(mode === 'named' ? {{ name: 'history_count', text, values: [i + 1] }} : {{ text, values: [i + 1] }})));
const errors = {{}};
for (const r of runs) if (r.status === 'rejected') errors[r.reason.code] = (errors[r.reason.code] || 0) + 1;
console.log(JSON.stringify({{ ok: runs.filter((r) => r.status === 'fulfilled').length, total: runs.length, errors }}));
await pool.end();
"""

PSYCOPG = f"""
import json, sys, threading
import psycopg

url, mode = sys.argv[1:]
kwargs = {{"prepare_threshold": None}} if mode == "none" else {{}}
results = []

def worker():
    with psycopg.connect(url, autocommit=True, **kwargs) as conn:
        for i in range(20):
            try:
                conn.execute({json.dumps(QUERY.replace("$1", "%s"))}, (i + 1,)).fetchone()
                results.append("ok")
            except psycopg.Error as exc:
                results.append(exc.sqlstate or type(exc).__name__)

threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
errors = {{code: results.count(code) for code in set(results) - {{"ok"}}}}
print(json.dumps({{"ok": results.count("ok"), "total": len(results), "errors": errors}}))
"""

PGBENCH = QUERY.replace("$1", ":n").replace("SELECT", "\\set n random(1, 1000)\nSELECT", 1)

# (URL, workload, how) -> whether the connection guide offers it.
DOCUMENTED = {
    ("DATABASE_URL", "node", "named"),
    ("DATABASE_URL", "psycopg", "default"),
    ("DATABASE_URL", "pgbench", "prepared"),
    ("DATABASE_POOL_URL", "node", "unnamed"),
    ("DATABASE_POOL_URL", "psycopg", "none"),
    ("DATABASE_POOL_URL", "pgbench", "extended"),
}
UNDOCUMENTED = {
    ("DATABASE_POOL_URL", "node", "named"),
    ("DATABASE_POOL_URL", "psycopg", "default"),
    ("DATABASE_POOL_URL", "pgbench", "prepared"),
}


@pytest.fixture(scope="module")
def env(host) -> dict[str, str]:
    text = host.file(f"{PROJECT}/backend/.env.database").content_string
    return dict(re.findall(r"^([A-Z_]+)=(.*)$", text, re.M))


@pytest.fixture(scope="module")
def run(sh, node_deps, local_dir, env):
    """run((url, workload, how)) -> {"ok": successes, "total": attempts, "errors": {code: count}}."""

    def one(case: tuple[str, str, str]) -> dict:
        url, workload, how = case
        if workload == "pgbench":
            return pgbench(sh, url, how)
        if workload == "node":
            script = NODE_DIR / "snippets" / "prepared-workload.mjs"
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(NODE)
            argv = ["node", str(script)]
        else:
            script = local_dir / "prepared_workload.py"
            script.write_text(PSYCOPG)
            argv = [sys.executable, str(script)]
        return json.loads(run_in_netns(HOST_NAME, [*argv, env[url], how], local_dir).splitlines()[-1])

    return one


def pgbench(sh, url: str, how: str) -> dict:
    script = f"printf %s {shlex.quote(PGBENCH)} > /tmp/prepared.sql && "
    res = sh.app(f'{script}pgbench -n -c 8 -j 2 -t 25 --protocol={how} -f /tmp/prepared.sql "${url}" 2>&1')
    done = re.search(r"number of transactions actually processed: (\d+)", res.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", res.stdout)
    ok = int(done.group(1)) if done and res.rc == 0 else 0
    aborted = re.findall(r"client \d+ script \d+ aborted", res.stdout)
    return {"ok": ok, "total": 200, "errors": {"aborted clients": len(aborted), "failed": failed and failed.group(1)}}


def test_the_guide_documents_the_pool_settings():
    """The guide gives each client's setting for the transaction pool, and the env file points there."""
    text = GUIDE.read_text(encoding="utf-8")
    assert 'kwargs={"prepare_threshold": None}' in text
    assert "--protocol=extended" in text
    assert "`name`" in text


def test_the_env_file_says_how_to_use_the_pool(env, host):
    text = host.file(f"{PROJECT}/backend/.env.database").content_string
    assert "prepare_threshold=None" in text and "DATABASE_URL" in text


@pytest.mark.parametrize("case", sorted(DOCUMENTED), ids="-".join)
def test_the_documented_way_always_succeeds(run, case):
    result = run(case)
    print(*case, result)
    assert result["ok"] == result["total"], result


def test_what_the_guide_forbids_on_the_pool_still_fails(run, capsys):
    """Each of these may or may not fail on its own (that depends on which server connection each
    transaction gets), so each is printed; together they fail unless the pooler learnt to carry
    prepared statements, and then the guide's warnings are stale: this test says so."""
    results = {}
    with capsys.disabled():
        for case in sorted(UNDOCUMENTED):
            results[case] = result = run(case)
            print(f"\n  undocumented: {' '.join(case)}: {result['ok']}/{result['total']} {result['errors']}")
    assert any(r["ok"] < r["total"] for r in results.values()), f"the pool now carries prepared statements: {results}"
