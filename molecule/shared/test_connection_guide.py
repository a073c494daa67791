"""Every snippet of docs/connection_guide.md, run as it is written.

Each runnable block of the guide follows a marker `<!-- snippet: <name> <local|remote> -->`:
- `local` programs (node, python) run on this machine inside the database host's network namespace
  (`nsenter --net`), so `localhost` in `.env.database` is the host's loopback, exactly as for a backend on
  the VM; `local` shell blocks run on the host itself as the app's OS user.
- `remote` blocks run in scenario `security` (molecule/security/tests/test_remote_guide.py), inside the
  network namespace of its client container (another network, another address), with a copy of
  `.env.database` edited as the guide says.
The Node.js packages are the pinned ones of tests/node (make node-deps); Python's come from the venv.
The `dotenv` block must list the keys of the real env file, the `yaml` block real role variables.
"""

from __future__ import annotations

import json
import re
import shlex

import yaml

from guide import SNIPPETS, TESTED, fences, run_program
from hostlib import APP_USER, HOST_NAME, PROJECT, REPO


def test_every_block_of_the_guide_is_run_or_checked():
    assert set(SNIPPETS) == TESTED
    runnable = {code for _, _, code in SNIPPETS.values()}
    for lang, code in fences():
        assert code in runnable or lang in ("dotenv", "yaml"), f"a {lang or 'plain'} block is neither run nor checked"
    assert {where for where, _, _ in SNIPPETS.values()} == {"local", "remote"}


def test_the_env_block_lists_the_keys_of_the_real_file(host):
    (block,) = [code for lang, code in fences() if lang == "dotenv"]
    documented = {line.split("=", 1)[0] for line in block.splitlines() if "=" in line}
    real = host.file(f"{PROJECT}/backend/.env.database").content_string
    keys = {line.split("=", 1)[0] for line in real.splitlines() if re.match(r"^[A-Z_]+=", line)}
    assert documented == keys


def test_the_inventory_block_names_real_role_variables():
    (block,) = [code for lang, code in fences() if lang == "yaml"]
    known = set()
    for spec in (REPO / "roles").glob("*/meta/argument_specs.yml"):
        known |= set(yaml.safe_load(spec.read_text())["argument_specs"]["main"]["options"])
    assert set(yaml.safe_load(block)) <= known


def test_node_pg_pool_of_20(node_deps, local_dir):
    out = json.loads(run_program("node-pg", HOST_NAME, local_dir).splitlines()[-1])
    assert out["history"] >= 1 and out["fulltext"] >= 1 and out["fuzzy"] >= 1, out
    assert out["poolMax"] == 20
    assert 1 <= out["poolConnections"] <= 20, out


def test_python_psycopg_pool(local_dir):
    out = json.loads(run_program("python-psycopg", HOST_NAME, local_dir).splitlines()[-1])
    assert out["history"] >= 1 and out["unread_channels"] >= 1, out
    assert out["pool_max"] == 20


def test_python_psycopg_on_both_urls(local_dir, sh):
    out = json.loads(run_program("python-psycopg-pooler", HOST_NAME, local_dir).splitlines()[-1])
    users = int(sh.admin_sql("SELECT count(*) FROM users WHERE created_at < now()"))
    assert out["direct"]["users"] == out["pooler"]["users"] == users, out
    assert out["direct"]["prepared"] >= 1, "psycopg's default prepared nothing on DATABASE_URL"


def test_node_pg_named_direct_unnamed_through_the_pooler(node_deps, local_dir, sh):
    out = json.loads(run_program("node-pg-pooler", HOST_NAME, local_dir).splitlines()[-1])
    users = int(sh.admin_sql("SELECT count(*) FROM users WHERE created_at < now()"))
    assert out == {"direct": users, "pooler": users}


def test_shell_on_the_host(host):
    _, lang, code = SNIPPETS["shell"]
    assert lang == "bash"
    result = host.run(f"runuser -u {APP_USER} -- bash -euo pipefail -c {shlex.quote(code)}")
    assert result.rc == 0, result.stderr
    assert "through_pgbouncer" in result.stdout and "PONG" in result.stdout
    assert "chatflow_app" in result.stdout


def test_node_redis_keys_ttls_and_pubsub(node_deps, local_dir):
    out = json.loads(run_program("node-redis", HOST_NAME, local_dir).splitlines()[-1])
    limits = {"session:": 86400, "refresh:": 604800, "presence:": 60, "room:": 120, "typing:": 5, "socket:": 86400}
    for key, ttl in out["ttls"].items():
        (limit,) = [v for prefix, v in limits.items() if key.startswith(prefix)]
        assert 0 < ttl <= limit, (key, ttl)
    assert len(out["ttls"]) == 6
    assert out["message"] == {"type": "message", "text": "hello"}


def test_python_redis(local_dir):
    out = json.loads(run_program("python-redis", HOST_NAME, local_dir).splitlines()[-1])
    assert all(ttl > 0 for ttl in out["ttls"].values()), out
    assert out["members"] == ["u-43"]
