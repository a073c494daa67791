"""Every snippet of docs/connection_guide.md, run as it is written.

Each runnable block of the guide follows a marker `<!-- snippet: <name> <local|remote> -->`:
- `local` programs (node, python) run on this machine inside the database host's network namespace
  (`nsenter --net`), so `localhost` in `.env.database` is the host's loopback, exactly as for a backend on
  the VM; `local` shell blocks run on the host itself as the app's OS user.
- `remote` blocks run inside the network namespace of the client container of scenario `security`
  (another network, another address), with a copy of `.env.database` edited as the guide says.
The Node.js packages are the pinned ones of tests/node (make node-deps); Python's come from the venv.
The `dotenv` block must list the keys of the real env file, the `yaml` block real role variables.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import yaml

from conftest import APP_USER, HOST_NAME, PROJECT, REPO

GUIDE = REPO / "docs" / "connection_guide.md"
NODE_DIR = REPO / ".state" / "node"
CLIENT_IN = os.environ.get("CHATFLOW_TEST_CLIENT_IN")
SNIPPET = re.compile(r"<!-- snippet: (\S+) (local|remote) -->\n```(\w+)\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
TEXT = GUIDE.read_text(encoding="utf-8")
SNIPPETS = {name: (where, lang, code) for name, where, lang, code in SNIPPET.findall(TEXT)}


def fences() -> list[tuple[str, str]]:
    return FENCE.findall(TEXT)


# The snippets the tests below run, by name: a new snippet needs a test here.
TESTED = {
    *("node-pg", "python-psycopg", "shell", "node-redis", "python-redis"),
    *("shell-remote", "node-remote", "python-remote"),
}


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


def container_pid(name: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_in_netns(container: str, argv: list[str], cwd: Path) -> str:
    proc = subprocess.run(
        ["nsenter", "--target", container_pid(container), "--net", "--", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{argv[-1]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def run_program(name: str, container: str, workdir: Path) -> str:
    _, lang, code = SNIPPETS[name]
    if lang == "js":
        # ES modules find node_modules from the script's own directory.
        script = NODE_DIR / "snippets" / f"{name}.mjs"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(code)
        return run_in_netns(container, ["node", str(script)], workdir)
    if lang == "python":
        script = workdir / f"{name}.py"
        script.write_text(code)
        return run_in_netns(container, [sys.executable, str(script)], workdir)
    assert lang == "bash", lang
    return run_in_netns(container, ["bash", "-euo", "pipefail", "-c", code], workdir)


@pytest.fixture(scope="module")
def node_deps():
    subprocess.run(["make", "-s", "-C", str(REPO), "node-deps"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def local_dir(host, tmp_path_factory):
    """What the backend has on the VM: its .env.database in the working directory."""
    workdir = tmp_path_factory.mktemp("guide-local")
    (workdir / ".env.database").write_text(host.file(f"{PROJECT}/backend/.env.database").content_string)
    return workdir


def test_node_pg_pool_of_20(node_deps, local_dir):
    out = json.loads(run_program("node-pg", HOST_NAME, local_dir).splitlines()[-1])
    assert out["history"] >= 1 and out["fulltext"] >= 1 and out["fuzzy"] >= 1, out
    assert out["poolMax"] == 20
    assert 1 <= out["poolConnections"] <= 20, out


def test_python_psycopg_pool(local_dir):
    out = json.loads(run_program("python-psycopg", HOST_NAME, local_dir).splitlines()[-1])
    assert out["history"] >= 1 and out["unread_channels"] >= 1, out
    assert out["pool_max"] == 20


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


# -- from another host (scenario security) --------------------------------------------


@pytest.fixture(scope="module")
def remote_dir(host, local_dir, tmp_path_factory):
    if not CLIENT_IN:
        pytest.skip("needs the client container of scenario `security`")
    from test_remote import addresses  # the server's address on the client's network

    client = testinfra.get_host(f"docker://{CLIENT_IN}")
    networks = {a.network for a in addresses(client)}
    (server,) = [str(a.ip) for a in addresses(host) if a.network in networks]
    workdir = tmp_path_factory.mktemp("guide-remote")
    (workdir / "ca.crt").write_text(host.file("/etc/chatflow/tls/ca.crt").content_string)
    env = (local_dir / ".env.database").read_text()
    edits = {"DB_HOST": server, "REDIS_HOST": server, "DB_SSLROOTCERT": str(workdir / "ca.crt")}
    for key, value in edits.items():
        env = re.sub(rf"^{key}=.*$", f"{key}={value}", env, flags=re.M)
    (workdir / ".env.database").write_text(env)
    return workdir


def test_shell_from_another_host(remote_dir):
    out = run_program("shell-remote", CLIENT_IN, remote_dir)
    assert re.search(r"^\s*t\s*\|\s*TLSv1\.[23]", out, re.M), out
    assert "PONG" in out


def test_node_from_another_host(node_deps, remote_dir):
    out = json.loads(run_program("node-remote", CLIENT_IN, remote_dir).splitlines()[-1])
    assert out["postgresql"]["ssl"] is True and out["postgresql"]["version"].startswith("TLSv1.")
    assert out["redis"] == "PONG"


def test_python_from_another_host(remote_dir):
    out = json.loads(run_program("python-remote", CLIENT_IN, remote_dir).splitlines()[-1])
    assert out["postgresql"]["ssl"] is True
    assert out["redis"] is True
