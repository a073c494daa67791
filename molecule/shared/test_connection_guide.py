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

import pytest
import yaml

from guide import SNIPPETS, TESTED, fences, run_program
from hostlib import APP_USER, HOST_NAME, INPUTS, PROJECT, REPO, secret


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


@pytest.fixture(scope="module")
def snippet(node_deps, local_dir):
    """The last line of a snippet's output as JSON, each snippet run once per module."""
    outputs: dict[str, dict] = {}

    def run(name: str) -> dict:
        if name not in outputs:
            outputs[name] = json.loads(run_program(name, HOST_NAME, local_dir).splitlines()[-1])
        return outputs[name]

    return run


def test_node_redis_keys_ttls_and_pubsub(snippet):
    out = snippet("node-redis")
    limits = {"session:": 86400, "refresh:": 604800, "presence:": 60, "room:": 120, "typing:": 5, "socket:": 86400}
    for key, ttl in out["ttls"].items():
        (limit,) = [v for prefix, v in limits.items() if key.startswith(prefix)]
        assert 0 < ttl <= limit, (key, ttl)
    assert len(out["ttls"]) == 6
    assert out["message"] == {"type": "message", "text": "hello"}


def test_python_redis_and_its_rate_limiter(snippet):
    out = snippet("python-redis")
    assert all(ttl > 0 for ttl in out["ttls"].values()), out
    assert out["members"] == ["u-43"]
    # limit=3 in a fresh window: three attempts pass, the fourth and fifth are refused.
    assert out["attempts"] == [True, True, True, False, False]
    assert 0 < out["ttls"]["rate:login:198.51.100.7"] <= 60


def test_node_cache_aside_invalidation_and_rate_limiter(snippet, sh):
    out = snippet("node-cache")
    flipped = "online" if out["before"] == "away" else "away"
    # Cold read from the database, warm read from the cache, and after the
    # update (which deleted the entry) the new value from the database again;
    # the same after the change back.
    before = out["before"]
    assert out["reads"] == [["database", before], ["cache", before], ["database", flipped], ["database", before]]
    assert sh.admin_sql("SELECT status FROM users WHERE username = 'bob'") == out["before"]
    assert out["posts"] == [True] * 5 + [False] * 2
    assert 0 < out["ttls"]["rate"] <= 60 and 0 < out["ttls"]["cache"] <= 300, out


def test_node_socketio_room_broadcast_between_two_servers(snippet):
    out = snippet("node-socketio")
    assert out["received"] == {"channelId": "c-7", "text": "hello from B"}
    assert out["ports"][0] != out["ports"][1]


def test_node_requests_under_row_level_security(snippet):
    out = snippet("node-request")
    assert out["channels"] == ["general"]
    assert out["found"] >= 1 and out["unread"] == 1
    assert out["withoutUser"] == 0
    assert "row-level security" in out["refused"]


def _keys_and_ttls(sh, port: int) -> dict[str, int]:
    """Every key of the Redis on ``port`` (SCAN as the admin user) with its TTL."""
    scan = sh.admin_redis("--scan", port=port)
    assert scan.rc == 0, scan.stdout + scan.stderr
    keys = scan.stdout.split()
    if not keys:
        return {}
    commands = "".join(f"TTL {key}\n" for key in keys)
    auth = shlex.quote(secret("redis_chatflow_admin"))
    cli = f"REDISCLI_AUTH={auth} redis-cli -p {port} --user chatflow_admin --no-auth-warning"
    out = sh.host.run(f"printf %s {shlex.quote(commands)} | {cli}")
    assert out.rc == 0, out.stderr
    return dict(zip(keys, (int(t) for t in out.stdout.split()), strict=True))


def test_every_key_the_app_writes_has_a_ttl(snippet, sh):
    """The guide's programs write every kind of key of the table (the Socket.IO adapter
    writes none); then both servers are scanned: no key lives without a TTL."""
    for name in ("node-redis", "python-redis", "node-cache", "node-socketio"):
        snippet(name)
    ports = {INPUTS["chatflow_redis_port"], int(sh.app("echo $REDIS_CACHE_PORT").stdout)}
    found = {}
    for port in ports:
        found.update(_keys_and_ttls(sh, port))
    without_ttl = {key: ttl for key, ttl in found.items() if ttl == -1}
    assert not without_ttl, f"keys without a TTL: {without_ttl}"
    bob = sh.admin_sql("SELECT id FROM users WHERE username = 'bob'")
    written = {"session:u-42", "refresh:rt-1234", "socket:s-9", "session:u-43", "rate:login:198.51.100.7"}
    written |= {f"rate:post:{bob}", f"cache:user:{bob}"}
    assert written <= set(found), f"the scan missed keys the guide just wrote: {written - set(found)}"
